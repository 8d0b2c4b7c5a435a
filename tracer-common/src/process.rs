//! The container runtime's processes: exec, fork, failed syscalls, exit,
//! signals and OOM kills.

use crate::{EventHeader, TASK_COMM_LEN};

/// Longest exec filename the kernel side copies (truncated beyond this).
pub const FILENAME_LEN: usize = 128;

/// How much of an exec's argv (NUL-separated) the kernel side copies:
/// containerd's shim runs `runc --root ... --log <bundle>/log.json
/// --log-format json exec --process ... --detach --pid-file ... <id>`,
/// about 500 bytes with the 64-hex container ID last, and CRI-O's conmon
/// a little less; twice that leaves room for long bundle paths. Only
/// runtime execs are copied (every other exec is dropped before this), and
/// the record is built in ring-buffer memory, never on the BPF stack.
pub const ARGS_LEN: usize = 1024;

/// Which syscall a [`SyscallFailedEvent`] is about.
pub mod syscall {
    pub const CLONE: u32 = 1;
    pub const CLONE3: u32 = 2;
    pub const FORK: u32 = 3;
    pub const VFORK: u32 = 4;
    pub const SETNS: u32 = 5;
}

/// A task of the container runtime's tree exec'd (or a runtime binary was
/// exec'd anywhere).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ExecEvent {
    pub header: EventHeader,
    pub ppid: u32,
    /// Pid inside the task's own pid namespace, and that namespace's depth
    /// (0 = the host's).
    pub ns_pid: u32,
    pub ns_level: u32,
    /// Bytes of argv the process has (may exceed what `args` holds).
    pub args_len: u32,
    /// One of [`role`]: what the tracer now considers this process.
    pub role: u32,
    pub _pad: u32,
    pub filename: [u8; FILENAME_LEN],
    /// argv, NUL-separated, truncated at ARGS_LEN (then the last string
    /// may be cut short: userspace treats it as incomplete).
    pub args: [u8; ARGS_LEN],
}

/// What a process in the runtime-tracking map is.
pub mod role {
    /// The runtime itself or one of its helpers (runc, runc init...):
    /// its children are tracked too.
    pub const RUNTIME: u32 = 1;
    /// A container's command started by the runtime: its own exit is
    /// reported, its children are not tracked.
    pub const CONTAINER: u32 = 2;
    /// Chosen by the OOM killer: its exit is reported.
    pub const OOM_VICTIM: u32 = 3;
}

/// A tracked process created a new process.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct ForkEvent {
    pub header: EventHeader,
    /// Pid of the new process.
    pub child_tid: u32,
    pub _pad: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct SyscallFailedEvent {
    pub header: EventHeader,
    /// One of [`syscall`].
    pub syscall: u32,
    /// `setns`'s nstype argument (0 for the fork family).
    pub nstype: i32,
    /// Negative errno.
    pub ret: i64,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct ExitEvent {
    pub header: EventHeader,
    /// `task->exit_code`: wait(2) status (exit code << 8 | terminating signal).
    pub exit_code: i32,
    /// Pid of the task inside its own pid namespace (1 = a container's init).
    pub ns_pid: u32,
    pub ppid: u32,
    /// Non-zero when the whole thread group is gone (last thread exiting).
    pub group_dead: u32,
    /// Depth of the task's pid namespace (0 = the host's).
    pub ns_level: u32,
    /// One of [`role`], or 0 for an untracked container init.
    pub role: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct SignalEvent {
    /// Header describes the sender.
    pub header: EventHeader,
    pub sig: i32,
    pub errno: i32,
    pub code: i32,
    /// Result of the delivery (TRACE_SIGNAL_* in include/trace/events/signal.h).
    pub result: i32,
    pub target_pid: u32,
    pub _pad: u32,
    pub target_comm: [u8; TASK_COMM_LEN],
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct OomKillEvent {
    /// Describes the task that ran the OOM killer (its cgroup is the one
    /// whose limit was hit, for a cgroup OOM).
    pub header: EventHeader,
    pub victim_pid: u32,
    pub _pad: u32,
    /// Victim's memory at the kill in KiB (0 where the kernel's tracepoint
    /// does not say: before 6.8 it carries only the pid).
    pub total_vm_kb: u64,
    pub anon_rss_kb: u64,
    pub file_rss_kb: u64,
    pub shmem_rss_kb: u64,
    /// The victim's comm, when the tracepoint has it.
    pub victim_comm: [u8; TASK_COMM_LEN],
}

//! The container runtime's process tree: execs, forks, failed
//! clone/clone3/fork/vfork/setns calls, exits and fatal signals.
//!
//! A process is *tracked* (in `RUNTIME_TASKS`) once it execs a binary whose
//! name is in `RUNTIME_COMMS` (`--runtime-comm`, default `runc`); its new
//! processes inherit the tracking, so `runc init` and its `runc:[0:PARENT]`,
//! `runc:[1:CHILD]`, `runc:[2:INIT]` stages are covered whatever they call
//! themselves. When a tracked process execs a non-runtime binary inside a
//! deeper pid namespace than the runtime started in, that is the container's
//! own command: it keeps being tracked for its exit, but its children are
//! not, so a fork storm inside a container (or anywhere else) costs one map
//! lookup per fork. A `hostPID` container's command runs in the runtime's
//! own pid namespace: there, any exec that is not the runtime re-executing
//! itself (`/proc/self/...`, `/dev/fd/...`) is the container's command.
//!
//! Independently of tracking, the exit of any container init (pid 1 of a
//! non-root pid namespace) and fatal signals sent to one are reported:
//! a container whose init died is what "cannot exec in a stopped state"
//! is about, and that container may predate the tracer.

use aya_ebpf::{
    EbpfContext,
    helpers::{
        bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_probe_read_kernel_str_bytes,
        generated::{bpf_get_current_task, bpf_probe_read_user},
    },
    macros::{fexit, map, raw_tracepoint, tracepoint},
    maps::{Array, HashMap, LruHashMap},
    programs::{FExitContext, RawTracePointContext, TracePointContext},
};
use tracer_common::{
    ARGS_LEN, CommKey, ExecEvent, ExitEvent, ForkEvent, NO_FIELD, OomKillEvent, SignalEvent,
    SyscallFailedEvent, TASK_COMM_LEN, hook_mode, kind, role, syscall,
};

use crate::{
    config, emit, first_byte_may_match, header, insert_counted, may_hold, read_kernel, remove_counted, reserve,
    submit_now, tp_read, tracked_map,
};

/// Runtime binary names (`--runtime-comm`).
#[map]
static RUNTIME_COMMS: HashMap<CommKey, u8> = HashMap::with_max_entries(16, 0);

/// Non-zero at the first byte of each name in `RUNTIME_COMMS`.
#[map]
static RUNTIME_COMM_FIRST_BYTES: Array<u8> = Array::with_max_entries(256, 0);

/// Tracked processes by tgid. Value: role | (pid-namespace level the
/// runtime started in) << 8. LRU so a missed exit can never fill it.
#[map]
static RUNTIME_TASKS: LruHashMap<u32, u32> = LruHashMap::with_max_entries(16384, 0);

/// Processes the OOM killer chose, until they exit (their exit is reported).
#[map]
static OOM_VICTIMS: LruHashMap<u32, u8> = LruHashMap::with_max_entries(1024, 0);

/// `setns` calls in flight by tracked threads: tid -> nstype argument.
#[map]
static SETNS_CALLS: LruHashMap<u32, i32> = LruHashMap::with_max_entries(1024, 0);

#[inline(always)]
fn pack(role: u32, level: u32) -> u32 {
    role | (level << 8)
}

#[inline(always)]
fn role_of(value: u32) -> u32 {
    value & 0xff
}

#[inline(always)]
fn level_of(value: u32) -> u32 {
    value >> 8
}

#[inline(always)]
fn current_tgid() -> u32 {
    (bpf_get_current_pid_tgid() >> 32) as u32
}

#[inline(always)]
fn tracked(tgid: u32) -> Option<u32> {
    if !may_hold(tracked_map::RUNTIME_TASKS) {
        return None;
    }
    unsafe { RUNTIME_TASKS.get(&tgid).copied() }
}

#[inline(always)]
fn track(tgid: u32, value: u32) {
    insert_counted(&RUNTIME_TASKS, tracked_map::RUNTIME_TASKS, &tgid, &value);
}

#[inline(always)]
fn is_oom_victim(tgid: u32) -> bool {
    may_hold(tracked_map::OOM_VICTIMS) && unsafe { OOM_VICTIMS.get(&tgid).is_some() }
}

#[inline(always)]
fn current_task() -> *const u8 {
    unsafe { bpf_get_current_task() as *const u8 }
}

/// A task's pid as seen in its own pid namespace, and that namespace's depth.
#[derive(Clone, Copy, Default)]
struct NsPid {
    nr: u32,
    level: u32,
}

/// `task->thread_pid->numbers[level].nr` and `->level`.
#[inline(always)]
fn ns_pid(task: *const u8) -> NsPid {
    let off = &config().process;
    let Some(pid) = read_kernel::<*const u8>(task, off.task_thread_pid) else {
        return NsPid::default();
    };
    let level = read_kernel::<u32>(pid, off.pid_level).unwrap_or(0);
    if off.pid_numbers == NO_FIELD || off.upid_size == NO_FIELD || off.upid_nr == NO_FIELD {
        return NsPid { nr: 0, level };
    }
    // Nesting is limited to 32 levels (MAX_PID_NS_LEVEL); clamp for safety.
    let level = if level > 32 { 32 } else { level };
    let nr_offset = off.pid_numbers + level * off.upid_size + off.upid_nr;
    NsPid { nr: read_kernel::<u32>(pid, nr_offset).unwrap_or(0), level }
}

#[inline(always)]
fn task_tgid(task: *const u8) -> u32 {
    read_kernel::<u32>(task, config().process.task_tgid).unwrap_or(0)
}

#[inline(always)]
fn parent_tgid(task: *const u8) -> u32 {
    match read_kernel::<*const u8>(task, config().process.task_real_parent) {
        Some(parent) => task_tgid(parent),
        None => 0,
    }
}

// ---------------------------------------------------------------------------
// Hook: exec (sched:sched_process_exec). By now `comm` is the new binary's.

/// What an exec is to the tracker: the role it records, and whether it may
/// be a container's command in the runtime's own pid namespace (`hostPID`),
/// which only the binary's path tells from runc re-executing itself.
#[derive(Clone, Copy)]
struct ExecRole {
    value: u32,
    ns: NsPid,
    same_level_command: bool,
}

/// Decides whether this exec is the runtime's and records its role; `None`
/// for the exec of anything else (nearly every exec on a node).
#[inline(always)]
fn exec_role(task: *const u8) -> Option<ExecRole> {
    let tgid = current_tgid();
    let comm = bpf_get_current_comm().unwrap_or_default();
    let is_runtime = first_byte_may_match(&RUNTIME_COMM_FIRST_BYTES, &comm)
        && unsafe { RUNTIME_COMMS.get(&comm).is_some() };
    let previous = tracked(tgid);
    if !is_runtime && previous.is_none() {
        return None;
    }
    let ns = ns_pid(task);
    let same_level_command =
        !is_runtime && previous.is_some_and(|v| role_of(v) == role::RUNTIME && ns.level == level_of(v));
    let value = match previous {
        None => pack(role::RUNTIME, ns.level),
        Some(v) if is_runtime => pack(role::RUNTIME, level_of(v)),
        // runc init exec'ing the container's command: it runs in the
        // container's (deeper) pid namespace.
        Some(v) if role_of(v) == role::RUNTIME && ns.level > level_of(v) => {
            pack(role::CONTAINER, level_of(v))
        }
        Some(v) => v,
    };
    track(tgid, value);
    Some(ExecRole { value, ns, same_level_command })
}

/// runc re-executing itself (`/proc/self/exe`, `/proc/self/fd/N`,
/// `/dev/fd/N`): anything else a runtime process execs without entering a
/// deeper pid namespace is a hostPID container's command.
#[inline(always)]
fn is_self_reexec(filename: &[u8; tracer_common::FILENAME_LEN]) -> bool {
    // Whole-word compares: no branch per byte, so the verifier's state
    // count stays that of one comparison.
    let f = filename;
    let head = u64::from_le_bytes([f[0], f[1], f[2], f[3], f[4], f[5], f[6], f[7]]);
    let tail = u32::from_le_bytes([f[8], f[9], f[10], 0]);
    let proc_self = (head ^ u64::from_le_bytes(*b"/proc/se")) | (tail ^ u32::from_le_bytes(*b"lf/\0")) as u64;
    let dev_fd = head ^ u64::from_le_bytes(*b"/dev/fd/");
    proc_self == 0 || dev_fd == 0
}

/// Reports the exec; `filename` copies the binary's path from wherever the
/// hook finds it. Nothing is reported when the ring buffer is full (counted).
#[inline(always)]
fn emit_exec(task: *const u8, role: ExecRole, mode: u8, filename: impl FnOnce(&mut [u8; tracer_common::FILENAME_LEN])) {
    let ExecRole { mut value, ns, same_level_command } = role;
    let Some(mut entry) = reserve::<ExecEvent>() else { return };
    // SAFETY: reserve returned room for an ExecEvent; every field is set below.
    let e = unsafe { &mut *entry.as_mut_ptr() };
    e.header = header(kind::PROC_EXEC, mode);
    e.ppid = parent_tgid(task);
    e.ns_pid = ns.nr;
    e.ns_level = ns.level;
    e._pad = 0;
    e.filename = [0; tracer_common::FILENAME_LEN];
    filename(&mut e.filename);
    if same_level_command && !is_self_reexec(&e.filename) {
        // A hostPID container's command: its exit is reported, its
        // children (a fork storm) are not tracked.
        value = pack(role::CONTAINER, level_of(value));
        track(current_tgid(), value);
    }
    e.role = role_of(value);
    e.args = [0; ARGS_LEN];
    e.args_len = 0;
    read_args(task, e);
    // Woken at once, not with the next batch: userspace reads what only
    // the live runtime shows (its argv's tail, the pipes an exec's output
    // goes to), and runc lives tens of milliseconds. Runtime execs are few.
    submit_now(entry);
}

/// `TP_PROTO(struct task_struct *p, pid_t old_pid, struct linux_binprm *bprm)`:
/// cheaper than the tracepoint, which copies the filename into a perf
/// record for every exec on the node before the program can say no.
#[raw_tracepoint(tracepoint = "sched_process_exec")]
pub fn raw_tp_sched_process_exec(ctx: RawTracePointContext) -> u32 {
    let task = current_task();
    let Some(role) = exec_role(task) else { return 0 };
    let bprm = ctx.arg::<*const u8>(2);
    emit_exec(task, role, hook_mode::RAW_TRACEPOINT, |dst| {
        if let Some(name) = read_kernel::<*const u8>(bprm, config().process.bprm_filename) {
            let _ = unsafe { bpf_probe_read_kernel_str_bytes(name, dst) };
        }
    });
    0
}

#[tracepoint(category = "sched", name = "sched_process_exec")]
pub fn tp_sched_process_exec(ctx: TracePointContext) -> u32 {
    let task = current_task();
    let Some(role) = exec_role(task) else { return 0 };
    emit_exec(task, role, hook_mode::TRACEPOINT, |dst| {
        // __data_loc: low 16 bits are the string's offset in the record.
        let loc = tp_read::<u32>(&ctx, config().process.exec_filename);
        if loc != 0 {
            let src = unsafe { (ctx.as_ptr() as *const u8).add((loc & 0xffff) as usize) };
            let _ = unsafe { bpf_probe_read_kernel_str_bytes(src, dst) };
        }
    });
    0
}

/// Copies argv from the new image's stack (`mm->arg_start..arg_end`).
#[inline(always)]
fn read_args(task: *const u8, e: &mut ExecEvent) {
    let off = &config().process;
    let Some(mm) = read_kernel::<*const u8>(task, off.task_mm) else { return };
    let start = read_kernel::<u64>(mm, off.mm_arg_start).unwrap_or(0);
    let end = read_kernel::<u64>(mm, off.mm_arg_end).unwrap_or(0);
    if start == 0 || end <= start {
        return;
    }
    let total = end - start;
    e.args_len = if total > u32::MAX as u64 { u32::MAX } else { total as u32 };
    let mut len = total as u32;
    if len > ARGS_LEN as u32 {
        len = ARGS_LEN as u32;
    }
    // SAFETY: len is at most ARGS_LEN, the size of the destination.
    unsafe { bpf_probe_read_user(e.args.as_mut_ptr().cast(), len, start as *const _) };
}

// ---------------------------------------------------------------------------
// Hook: fork. New processes (not threads) of tracked runtime processes
// inherit the tracking.

/// The tracking a new process of the current one inherits, if any: checked
/// before anything about the child is read, so untracked forks cost one lookup.
#[inline(always)]
fn inherited() -> Option<u32> {
    tracked(current_tgid()).filter(|v| role_of(*v) == role::RUNTIME)
}

#[inline(always)]
fn on_fork(child_pid: u32, value: u32, mode: u8) {
    track(child_pid, value);
    emit(&ForkEvent { header: header(kind::PROC_FORK, mode), child_tid: child_pid, _pad: 0 });
}

/// `TP_PROTO(struct task_struct *parent, struct task_struct *child)`: the
/// child's pid and tgid tell a process from a thread.
#[raw_tracepoint(tracepoint = "sched_process_fork")]
pub fn raw_tp_sched_process_fork(ctx: RawTracePointContext) -> u32 {
    let Some(value) = inherited() else { return 0 };
    let child = ctx.arg::<*const u8>(1);
    let pid = read_kernel::<u32>(child, config().process.task_pid).unwrap_or(0);
    if pid == 0 || pid != task_tgid(child) {
        return 0;
    }
    on_fork(pid, value, hook_mode::RAW_TRACEPOINT);
    0
}

/// Tracepoint fallback: it cannot tell threads from processes, so thread
/// ids of tracked processes are tracked too (harmless, LRU-bounded).
#[tracepoint(category = "sched", name = "sched_process_fork")]
pub fn tp_sched_process_fork(ctx: TracePointContext) -> u32 {
    let Some(value) = inherited() else { return 0 };
    let pid = tp_read::<u32>(&ctx, config().process.fork_child_pid);
    if pid != 0 {
        on_fork(pid, value, hook_mode::TRACEPOINT);
    }
    0
}

// ---------------------------------------------------------------------------
// Hook: failed clone / clone3 / fork / vfork / setns.
//
// Best: fexit on the syscall's wrapper (`__x64_sys_clone`...), which runs
// only when that syscall returns. The fallback, syscalls:sys_exit_*, costs
// every task on the node: while any syscall tracepoint is enabled, every
// syscall of every task takes the kernel's slow exit path (measured: a null
// syscall 200 -> 265 ns on this machine's 6.18).

#[inline(always)]
fn on_syscall_failed(which: u32, nstype: i32, ret: i64, mode: u8) {
    if ret >= 0 || tracked(current_tgid()).is_none() {
        return;
    }
    emit(&SyscallFailedEvent { header: header(kind::SYSCALL_FAILED, mode), syscall: which, nstype, ret });
}

/// fexit context of `long __x64_sys_NAME(const struct pt_regs *regs)`:
/// argument 0 is `regs`, then the return value.
#[inline(always)]
fn fexit_ret(ctx: &FExitContext) -> i64 {
    ctx.arg::<i64>(1)
}

#[inline(always)]
fn on_fexit(ctx: &FExitContext, which: u32) {
    on_syscall_failed(which, 0, fexit_ret(ctx), hook_mode::FEXIT);
}

#[fexit(function = "__x64_sys_clone")]
pub fn fexit_sys_clone(ctx: FExitContext) -> u32 {
    on_fexit(&ctx, syscall::CLONE);
    0
}

#[fexit(function = "__x64_sys_clone3")]
pub fn fexit_sys_clone3(ctx: FExitContext) -> u32 {
    on_fexit(&ctx, syscall::CLONE3);
    0
}

#[fexit(function = "__x64_sys_fork")]
pub fn fexit_sys_fork(ctx: FExitContext) -> u32 {
    on_fexit(&ctx, syscall::FORK);
    0
}

#[fexit(function = "__x64_sys_vfork")]
pub fn fexit_sys_vfork(ctx: FExitContext) -> u32 {
    on_fexit(&ctx, syscall::VFORK);
    0
}

/// setns(fd, nstype): the namespace type is the second argument, read from
/// the saved registers at the offset the loader took from BTF.
#[fexit(function = "__x64_sys_setns")]
pub fn fexit_sys_setns(ctx: FExitContext) -> u32 {
    let ret = fexit_ret(&ctx);
    // Checked here too, so that successful calls read no registers.
    if ret >= 0 {
        return 0;
    }
    let regs = ctx.arg::<*const u8>(0);
    let nstype = read_kernel::<u64>(regs, config().process.regs_arg2).unwrap_or(0) as i32;
    on_syscall_failed(syscall::SETNS, nstype, ret, hook_mode::FEXIT);
    0
}

#[inline(always)]
fn on_syscall_exit(ctx: &TracePointContext, which: u32) {
    let ret = tp_read::<i64>(ctx, config().process.sys_exit_ret);
    on_syscall_failed(which, 0, ret, hook_mode::TRACEPOINT);
}

#[tracepoint(category = "syscalls", name = "sys_exit_clone")]
pub fn tp_sys_exit_clone(ctx: TracePointContext) -> u32 {
    on_syscall_exit(&ctx, syscall::CLONE);
    0
}

#[tracepoint(category = "syscalls", name = "sys_exit_clone3")]
pub fn tp_sys_exit_clone3(ctx: TracePointContext) -> u32 {
    on_syscall_exit(&ctx, syscall::CLONE3);
    0
}

#[tracepoint(category = "syscalls", name = "sys_exit_fork")]
pub fn tp_sys_exit_fork(ctx: TracePointContext) -> u32 {
    on_syscall_exit(&ctx, syscall::FORK);
    0
}

#[tracepoint(category = "syscalls", name = "sys_exit_vfork")]
pub fn tp_sys_exit_vfork(ctx: TracePointContext) -> u32 {
    on_syscall_exit(&ctx, syscall::VFORK);
    0
}

/// Remembers which namespace type a tracked thread asks `setns` for.
#[tracepoint(category = "syscalls", name = "sys_enter_setns")]
pub fn tp_sys_enter_setns(ctx: TracePointContext) -> u32 {
    if tracked(current_tgid()).is_none() {
        return 0;
    }
    let nstype = tp_read::<u64>(&ctx, config().process.setns_nstype) as i32;
    let tid = bpf_get_current_pid_tgid() as u32;
    let _ = SETNS_CALLS.insert(&tid, &nstype, 0);
    0
}

#[tracepoint(category = "syscalls", name = "sys_exit_setns")]
pub fn tp_sys_exit_setns(ctx: TracePointContext) -> u32 {
    let tid = bpf_get_current_pid_tgid() as u32;
    let Some(nstype) = (unsafe { SETNS_CALLS.get(&tid).copied() }) else { return 0 };
    let _ = SETNS_CALLS.remove(&tid);
    let ret = tp_read::<i64>(&ctx, config().process.sys_exit_ret);
    if ret < 0 {
        emit(&SyscallFailedEvent {
            header: header(kind::SYSCALL_FAILED, hook_mode::TRACEPOINT),
            syscall: syscall::SETNS,
            nstype,
            ret,
        });
    }
    0
}

// ---------------------------------------------------------------------------
// Hook: process exit. Runs in the exiting task, so `current` is the task in
// both the raw tracepoint and the tracepoint.

#[inline(always)]
fn on_exit(mode: u8) {
    let off = &config().process;
    let task = current_task();
    // Only the last thread of a process: signal->live has dropped to 0.
    let Some(signal) = read_kernel::<*const u8>(task, off.task_signal) else { return };
    if read_kernel::<i32>(signal, off.signal_live).unwrap_or(1) != 0 {
        return;
    }
    let tgid = current_tgid();
    let previous = tracked(tgid);
    let ns = ns_pid(task);
    let container_init = ns.level > 0 && ns.nr == 1;
    let oom_victim = is_oom_victim(tgid);
    if previous.is_none() && !container_init && !oom_victim {
        return;
    }
    if previous.is_some() {
        remove_counted(&RUNTIME_TASKS, tracked_map::RUNTIME_TASKS, &tgid);
    }
    if oom_victim {
        remove_counted(&OOM_VICTIMS, tracked_map::OOM_VICTIMS, &tgid);
    }
    let role = match previous {
        Some(v) => role_of(v),
        None if oom_victim => role::OOM_VICTIM,
        None => 0,
    };
    emit(&ExitEvent {
        header: header(kind::PROC_EXIT, mode),
        exit_code: read_kernel::<i32>(task, off.task_exit_code).unwrap_or(0),
        ns_pid: ns.nr,
        ppid: parent_tgid(task),
        group_dead: 1,
        ns_level: ns.level,
        role,
    });
}

#[raw_tracepoint(tracepoint = "sched_process_exit")]
pub fn raw_tp_sched_process_exit(_ctx: RawTracePointContext) -> u32 {
    on_exit(hook_mode::RAW_TRACEPOINT);
    0
}

#[tracepoint(category = "sched", name = "sched_process_exit")]
pub fn tp_sched_process_exit(_ctx: TracePointContext) -> u32 {
    on_exit(hook_mode::TRACEPOINT);
    0
}

// ---------------------------------------------------------------------------
// Hook: fatal signals sent to tracked processes or container inits (who
// killed runc init, who killed the container's pid 1).

#[inline(always)]
fn is_fatal(sig: i32) -> bool {
    // SIGHUP INT QUIT ILL ABRT BUS FPE KILL SEGV TERM XCPU XFSZ SYS
    matches!(sig, 1 | 2 | 3 | 4 | 6 | 7 | 8 | 9 | 11 | 15 | 24 | 25 | 31)
}

#[inline(always)]
fn emit_signal(mode: u8, sig: i32, result: i32, target_pid: u32, target_comm: CommKey) {
    emit(&SignalEvent {
        header: header(kind::SIGNAL, mode),
        sig,
        errno: 0,
        code: 0,
        result,
        target_pid,
        _pad: 0,
        target_comm,
    });
}

/// `TP_PROTO(int sig, struct kernel_siginfo *info, struct task_struct *task,
/// int group, int result)`.
#[raw_tracepoint(tracepoint = "signal_generate")]
pub fn raw_tp_signal_generate(ctx: RawTracePointContext) -> u32 {
    let sig = ctx.arg::<u64>(0) as i32;
    if !is_fatal(sig) {
        return 0;
    }
    let task = ctx.arg::<*const u8>(2);
    let tgid = task_tgid(task);
    if tracked(tgid).is_none() {
        let ns = ns_pid(task);
        if !(ns.level > 0 && ns.nr == 1) {
            return 0;
        }
    }
    let comm = read_kernel::<CommKey>(task, config().process.task_comm).unwrap_or_default();
    emit_signal(hook_mode::RAW_TRACEPOINT, sig, ctx.arg::<u64>(4) as i32, tgid, comm);
    0
}

/// Tracepoint fallback: sees the target's pid only, so it reports signals
/// to tracked processes (not to container inits the tracer did not see start).
#[tracepoint(category = "signal", name = "signal_generate")]
pub fn tp_signal_generate(ctx: TracePointContext) -> u32 {
    let off = &config().process;
    let sig = tp_read::<i32>(&ctx, off.sig_sig);
    if !is_fatal(sig) {
        return 0;
    }
    let pid = tp_read::<u32>(&ctx, off.sig_pid);
    if tracked(pid).is_none() {
        return 0;
    }
    let comm = tp_read::<CommKey>(&ctx, off.sig_comm);
    emit_signal(hook_mode::TRACEPOINT, sig, tp_read::<i32>(&ctx, off.sig_result), pid, comm);
    0
}

// ---------------------------------------------------------------------------
// Hook: OOM kills (oom:mark_victim). Its fields grew over time: before 6.8
// only the pid; the loader fills the offsets the running kernel has.

#[tracepoint(category = "oom", name = "mark_victim")]
pub fn tp_mark_victim(ctx: TracePointContext) -> u32 {
    let off = &config().process;
    let victim = tp_read::<u32>(&ctx, off.oom_pid);
    if victim == 0 {
        return 0;
    }
    insert_counted(&OOM_VICTIMS, tracked_map::OOM_VICTIMS, &victim, &1);
    let Some(mut entry) = reserve::<OomKillEvent>() else { return 0 };
    // SAFETY: reserve returned room for an OomKillEvent; every field is set below.
    let e = unsafe { &mut *entry.as_mut_ptr() };
    e.header = header(kind::OOM_KILL, hook_mode::TRACEPOINT);
    e.victim_pid = victim;
    e._pad = 0;
    e.total_vm_kb = tp_read::<u64>(&ctx, off.oom_total_vm);
    e.anon_rss_kb = tp_read::<u64>(&ctx, off.oom_anon_rss);
    e.file_rss_kb = tp_read::<u64>(&ctx, off.oom_file_rss);
    e.shmem_rss_kb = tp_read::<u64>(&ctx, off.oom_shmem_rss);
    e.victim_comm = [0; TASK_COMM_LEN];
    if off.oom_comm != NO_FIELD {
        let loc = tp_read::<u32>(&ctx, off.oom_comm);
        let src = unsafe { (ctx.as_ptr() as *const u8).add((loc & 0xffff) as usize) };
        let _ = unsafe { bpf_probe_read_kernel_str_bytes(src, &mut e.victim_comm) };
    }
    submit_now(entry);
    0
}

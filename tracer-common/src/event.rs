//! What every ring-buffer record starts with: the header, its `kind`
//! and `hook_mode` values, and the socket tuple most records carry.

use crate::TASK_COMM_LEN;

/// `kind` values of [`EventHeader`].
pub mod kind {
    pub const TCP_CONNECT: u16 = 1;
    pub const TCP_STATE: u16 = 2;
    pub const TCP_RETRANSMIT: u16 = 3;
    pub const TCP_RESET: u16 = 4;
    /// A segment reached a prober socket in SYN-SENT (normally the SYN-ACK).
    pub const TCP_SYN_SENT_RCV: u16 = 5;
    pub const IPVS_CONN: u16 = 6;
    /// A prober connection left ESTABLISHED (its first close, by either
    /// side) or was open too long to be a probe
    /// ([`TcpClosedEvent`](super::TcpClosedEvent)).
    pub const TCP_CLOSED: u16 = 8;
    /// The kernel freed a packet of a tracked probe as dropped
    /// ([`DropEvent`](super::DropEvent)).
    pub const PACKET_DROP: u16 = 9;
    pub const PROC_EXEC: u16 = 10;
    pub const PROC_FORK: u16 = 11;
    pub const SYSCALL_FAILED: u16 = 12;
    pub const PROC_EXIT: u16 = 13;
    pub const SIGNAL: u16 = 14;
    pub const OOM_KILL: u16 = 15;
}

/// Which attach mechanism produced an event (also used in the capability report).
pub mod hook_mode {
    pub const TRACEPOINT: u8 = 0;
    pub const KPROBE: u8 = 1;
    pub const FENTRY: u8 = 2;
    pub const RAW_TRACEPOINT: u8 = 3;
    pub const FEXIT: u8 = 4;
    /// A BTF-enabled raw tracepoint (`tp_btf`).
    pub const BTF_TRACEPOINT: u8 = 5;
}

/// Common prefix of every ring-buffer record.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EventHeader {
    pub kind: u16,
    pub hook_mode: u8,
    pub _pad0: u8,
    /// Thread-group id of the current task (the "pid" users see).
    pub pid: u32,
    /// Thread id of the current task.
    pub tid: u32,
    pub _pad1: u32,
    /// `bpf_ktime_get_ns()`: CLOCK_MONOTONIC nanoseconds.
    pub ts_ns: u64,
    /// cgroup v2 id of the current task (the inode number of its cgroup dir).
    pub cgroup_id: u64,
    pub comm: [u8; TASK_COMM_LEN],
}

/// An IPv4 or IPv6 socket 4-tuple.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Tuple {
    /// AF_INET (2) or AF_INET6 (10).
    pub family: u16,
    pub sport: u16,
    pub dport: u16,
    pub _pad: u16,
    pub saddr: [u8; 16],
    pub daddr: [u8; 16],
}

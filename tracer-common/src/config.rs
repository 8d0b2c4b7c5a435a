//! What userspace tells the kernel programs: the `CONFIG` global (prober
//! names, host namespaces, offsets), the `SETTINGS` indices it changes
//! after load, and the `COUNTERS` indices it reads.

use crate::{DropOffsets, IpvsParamOffsets, NO_FIELD, ProcessOffsets, SkbOffsets, SockOffsets, SockTracepointOffsets, TASK_COMM_LEN, TcpSockOffsets};

/// How many `--prober-comm` names the kernel side checks.
pub const PROBER_COMMS_MAX: usize = 16;

/// The prober names (`--prober-comm`), each a NUL-padded `comm` as two
/// words. Every connect on the node is checked against them: in `.rodata`
/// the verifier knows `count`, so the check is `count` pairs of word
/// compares, where a hash lookup of the name (behind a first-byte array)
/// cost ~60 ns per prober connection.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProberComms {
    pub count: u32,
    /// `task_struct.comm`, where the BTF-typed programs can reach the
    /// current task as a typed pointer (`bpf_get_current_task_btf`, 5.11+)
    /// and load its comm in place; NO_FIELD: the `bpf_get_current_comm`
    /// helper copies it.
    pub task_comm: u32,
    /// Each name beside its mask, so that a connect's check of the first
    /// name touches one cache line with `count`.
    pub names: [ProberName; PROBER_COMMS_MAX],
}

impl ProberComms {
    pub const NONE: Self =
        Self { count: 0, task_comm: NO_FIELD, names: [ProberName { words: [0; 2], mask: [0; 2] }; PROBER_COMMS_MAX] };

    /// The words of a NUL-padded comm, as the kernel side reads them.
    pub fn words(comm: &CommKey) -> [u64; 2] {
        let (a, b) = comm.split_at(8);
        [u64::from_ne_bytes(a.try_into().unwrap()), u64::from_ne_bytes(b.try_into().unwrap())]
    }

    /// The [`ProberName::mask`] of a NUL-padded comm: its bytes up to and
    /// including the first NUL.
    pub fn mask(comm: &CommKey) -> [u64; 2] {
        let len = comm.iter().position(|b| *b == 0).unwrap_or(TASK_COMM_LEN);
        let mut mask = [0u8; TASK_COMM_LEN];
        mask[..(len + 1).min(TASK_COMM_LEN)].fill(0xff);
        Self::words(&mask)
    }
}

/// A `--prober-comm` name as two words and the bytes of them that must
/// match: the name and its NUL. A comm loaded in place may hold an older
/// name's bytes after its NUL (`__set_task_comm` did not pad before 6.x);
/// the helper's copy is padded, and masking it changes nothing.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProberName {
    pub words: [u64; 2],
    pub mask: [u64; 2],
}

/// Where a prober must live: the host's pid and network namespaces. A
/// process in a container can take any comm, `kubelet` included; the
/// kubelet and the runtime live in the host's namespaces. Zero inodes turn
/// the check off (userspace could not stat its own namespaces).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HostNamespaces {
    /// `st_dev` and `st_ino` of `/proc/self/ns/pid`, for
    /// `bpf_get_ns_current_pid_tgid`.
    pub pidns_dev: u64,
    pub pidns_ino: u64,
    /// The inode of `/proc/self/ns/net` (a namespace's `ns.inum`).
    pub netns_ino: u32,
    /// `sock_common.skc_net` and `net.ns.inum`, from BTF.
    pub skc_net: u32,
    pub net_inum: u32,
    pub _pad: u32,
}

impl HostNamespaces {
    pub const UNCHECKED: Self = Self { pidns_dev: 0, pidns_ino: 0, netns_ino: 0, skc_net: NO_FIELD, net_inum: NO_FIELD, _pad: 0 };
}

/// Key of the comm filter maps: a NUL-padded `comm`.
pub type CommKey = [u8; TASK_COMM_LEN];

/// Everything the kernel programs need to know about the running kernel,
/// written into the object's `CONFIG` global before it is loaded.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    pub prober_comms: ProberComms,
    pub host_namespaces: HostNamespaces,
    pub set_state: SockTracepointOffsets,
    pub retransmit: SockTracepointOffsets,
    pub reset: SockTracepointOffsets,
    pub sock: SockOffsets,
    pub tcp_sock: TcpSockOffsets,
    pub skb: SkbOffsets,
    pub drop: DropOffsets,
    pub ipvs: IpvsParamOffsets,
    pub process: ProcessOffsets,
}

// SAFETY: #[repr(C)], integers with explicit padding: every bit pattern
// is a valid value.
#[cfg(feature = "user")]
unsafe impl aya::Pod for Config {}

impl Config {
    pub const MISSING: Self = Self {
        prober_comms: ProberComms::NONE,
        host_namespaces: HostNamespaces::UNCHECKED,
        set_state: SockTracepointOffsets::MISSING,
        retransmit: SockTracepointOffsets::MISSING,
        reset: SockTracepointOffsets::MISSING,
        sock: SockOffsets::MISSING,
        tcp_sock: TcpSockOffsets::MISSING,
        skb: SkbOffsets::MISSING,
        drop: DropOffsets::MISSING,
        ipvs: IpvsParamOffsets::MISSING,
        process: ProcessOffsets::MISSING,
    };
}

/// Index into the `SETTINGS` array map: values userspace changes after load.
pub mod setting {
    /// Non-zero once an fentry/kprobe program on `tcp_connect` is attached;
    /// until then the inet_sock_set_state tracepoint reports connects itself.
    pub const CONNECT_HOOKED: u32 = 0;
    /// Non-zero once the IPVS hook is attached; until then nothing reads
    /// the reply-tuple map, so the TCP programs do not maintain it.
    pub const IPVS_HOOKED: u32 = 1;
    /// Non-zero when userspace wants no record of a healthy probe: the
    /// kernel counts it per destination in `PROBE_ESTABLISHED` instead of
    /// sending a record (the ring buffer's cost, and userspace's, for the
    /// one outcome that needs no explaining).
    pub const ESTABLISHED_COUNTED: u32 = 2;
    /// Non-zero once the read hook (`tcp_rcv_space_adjust`) is attached:
    /// only then can the kernel tell an answered probe from a silent one
    /// and an HTTP error from a success, and count healthy ones itself.
    pub const RESPONSE_HOOKED: u32 = 3;
    /// An answer whose first byte came this many ms or more after
    /// ESTABLISHED is not counted as healthy in the kernel: userspace
    /// measures the container's CPU for it and compares it with the probe's
    /// timeout. 0: no such limit.
    pub const SLOW_ANSWER_MS: u32 = 4;
    pub const COUNT: u32 = 5;
}

/// Index into the per-CPU `COUNTERS` map.
pub mod counter {
    /// Records the ring buffer had no room for (lost events).
    pub const RINGBUF_FULL: u32 = 0;
    /// Entries the tracked-socket/pid maps could not take.
    pub const MAP_FULL: u32 = 1;
    /// Highest number of unread bytes seen in the ring buffer (a gauge
    /// userspace reads and resets).
    pub const RINGBUF_HIGH_WATER: u32 = 2;
    pub const COUNT: u32 = 4;
}

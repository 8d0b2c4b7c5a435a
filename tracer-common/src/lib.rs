//! Wire format between the kernel programs (`tracer-ebpf`) and userspace
//! (`tracer-user`).
//!
//! Every record in the ring buffer starts with an [`EventHeader`]; its `kind`
//! says which struct follows. All structs are `#[repr(C)]`, have explicit
//! padding, and contain only plain integers so both sides agree on the layout
//! without any serialisation step. Ports are in host byte order, addresses in
//! network byte order (as the kernel stores them), IPv4 in the first 4 bytes.
#![no_std]

pub const TASK_COMM_LEN: usize = 16;
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

/// TCP states (`include/net/tcp_states.h`): the values `/proc/net/tcp` and
/// the `sock:inet_sock_set_state` tracepoint print, unchanged since Linux
/// has had them. One definition for the kernel programs and userspace.
pub mod tcp_state {
    pub const TCP_ESTABLISHED: u8 = 1;
    pub const TCP_SYN_SENT: u8 = 2;
    pub const TCP_SYN_RECV: u8 = 3;
    pub const TCP_FIN_WAIT1: u8 = 4;
    pub const TCP_FIN_WAIT2: u8 = 5;
    pub const TCP_TIME_WAIT: u8 = 6;
    pub const TCP_CLOSE: u8 = 7;
    pub const TCP_CLOSE_WAIT: u8 = 8;
    pub const TCP_LAST_ACK: u8 = 9;
    pub const TCP_LISTEN: u8 = 10;
    pub const TCP_CLOSING: u8 = 11;
    pub const TCP_NEW_SYN_RECV: u8 = 12;
}

/// Address families (`include/linux/socket.h`), as a tuple's `family`.
pub const AF_INET: u16 = 2;
pub const AF_INET6: u16 = 10;

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

/// Which syscall a [`SyscallFailedEvent`] is about.
pub mod syscall {
    pub const CLONE: u32 = 1;
    pub const CLONE3: u32 = 2;
    pub const FORK: u32 = 3;
    pub const VFORK: u32 = 4;
    pub const SETNS: u32 = 5;
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

/// Something happened to a prober's TCP socket. `kind` says what:
/// connect, state change, retransmit, reset received, segment in SYN-SENT.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct TcpEvent {
    pub header: EventHeader,
    /// Kernel address of the `struct sock`: the connection's identity.
    pub skaddr: u64,
    pub tuple: Tuple,
    /// TCP_* states (1 = ESTABLISHED, 2 = SYN_SENT, 7 = CLOSE...); for events
    /// other than TCP_STATE both hold the socket's current state.
    pub oldstate: u8,
    pub newstate: u8,
    pub _pad: [u8; 6],
}

/// What the kernel keeps about a tracked prober socket (the `PROBE_SOCKS`
/// value). The connect is reported lazily: together with the close when
/// nothing else happened before it (one record per probe instead of three),
/// else just before the first other record about the socket.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct ProbeSock {
    /// The header of the connect record, taken in the prober's context.
    pub connect: EventHeader,
    /// `probe_sock::*` bits.
    pub flags: u32,
    /// Payload bytes of the first unread segment when the response was
    /// first seen (the prober's first read of it, or the close if it came
    /// first): the response's first segment, or more where the kernel
    /// coalesced segments in the queue.
    pub first_rx_len: u32,
    /// When the socket reached ESTABLISHED; 0 before.
    pub established_ts_ns: u64,
    /// When its first payload byte was seen (as the prober read it, or at
    /// the close if that came first); 0 before.
    pub first_rx_ts_ns: u64,
    /// Its destination's slot in the drop hook's filter (see
    /// [`drop_filter_slot`]), counted while tracked.
    pub drop_slot: u32,
    pub _pad: u32,
    /// The first bytes of that payload (an HTTP status line), where the
    /// kernel let the program read them.
    pub rx_head: [u8; RX_HEAD_LEN],
}

/// A dropped packet that may be a tracked probe's: its addresses and ports
/// as it carried them, where and why the kernel dropped it. Userspace
/// matches it to the probe by the exact tuple.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct DropEvent {
    pub header: EventHeader,
    /// The kernel address that freed it (`kfree_skb`'s `location`).
    pub location: u64,
    /// `skb->sk`: the prober's socket while the packet is still its own.
    pub sk: u64,
    /// `enum skb_drop_reason` (5.17+), or NO_FIELD where the kernel has none.
    pub reason: u32,
    /// `ns.inum` of the network namespace it died in (its device's, else
    /// its socket's); 0 when neither is known.
    pub netns: u32,
    pub tuple: Tuple,
    /// The name of the device it was on (the one it arrived by, on the
    /// way in); empty when it had none.
    pub ifname: [u8; IFNAMSIZ],
}

/// `IFNAMSIZ`: a device name and its NUL.
pub const IFNAMSIZ: usize = 16;

/// Index bits of the drop hook's filter: a direct-mapped array of counts
/// by (address, port) of the destinations tracked probes go to.
pub const DROP_FILTER_BITS: u32 = 12;

/// The filter slot of `addr` (network order; IPv4 in the first four
/// bytes, as in [`Tuple`]) and `port`. A packet's destination or source
/// is looked up the same way: one array load for each direction.
#[inline(always)]
pub fn drop_filter_slot(family: u16, addr: &[u8; 16], port: u16) -> u32 {
    let word = |i: usize| u64::from_ne_bytes([addr[i], addr[i + 1], addr[i + 2], addr[i + 3], addr[i + 4], addr[i + 5], addr[i + 6], addr[i + 7]]);
    if family == 10 && !is_v4_mapped(addr) {
        slot_index((word(0) ^ word(8)) ^ ((port as u64) << 40), DROP_FILTER_BITS)
    } else if family == 10 {
        drop_filter_slot_v4([addr[12], addr[13], addr[14], addr[15]], port)
    } else {
        drop_filter_slot_v4([addr[0], addr[1], addr[2], addr[3]], port)
    }
}

/// [`drop_filter_slot`] of an IPv4 address (or a v4-mapped IPv6 one), from
/// its four bytes: what the drop hook computes from a packet's header
/// without building a [`Tuple`] first.
#[inline(always)]
pub fn drop_filter_slot_v4(addr: [u8; 4], port: u16) -> u32 {
    slot_index(u32::from_ne_bytes(addr) as u64 ^ ((port as u64) << 40), DROP_FILTER_BITS)
}

#[inline(always)]
fn is_v4_mapped(addr: &[u8; 16]) -> bool {
    addr[..10].iter().all(|b| *b == 0) && addr[10] == 0xff && addr[11] == 0xff
}

/// How many bytes of a probe's first response segment the kernel keeps:
/// enough for `HTTP/1.1 NNN`.
pub const RX_HEAD_LEN: usize = 16;

/// A slot of the direct-mapped `PROBE_SLOTS` array in front of the
/// tracked-socket map: the socket's address and its [`ProbeSock`] in one
/// 72-byte value (see the kernel side for why).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct ProbeSlot {
    /// `struct sock` address of the owner; 0 when free.
    pub skaddr: u64,
    /// Claims on the slot, changed only by atomic adds.
    pub claims: i64,
    pub sock: ProbeSock,
}

pub mod probe_sock {
    /// The connect record has been sent.
    pub const CONNECT_REPORTED: u32 = 1;
    /// A segment (the SYN-ACK) reached the socket in SYN-SENT and has not
    /// been reported: implied by ESTABLISHED, reported before anything else.
    pub const SYNACK_PENDING: u32 = 2;
    /// The socket is ESTABLISHED and followed until its first close.
    pub const ESTABLISHED: u32 = 4;
    /// Its response has been seen (`first_rx_*`).
    pub const RESPONSE_SEEN: u32 = 8;
    /// `rx_head` holds the response's first bytes.
    pub const RESPONSE_READ: u32 = 16;
    /// ESTABLISHED was reported as a state record (something had been
    /// reported before it); otherwise the close record implies it.
    pub const ESTABLISHED_REPORTED: u32 = 32;
    /// Its destination left the drop hook's filter before its close: it
    /// was answered, and the verdicts that carry drops are about probes
    /// that were not.
    pub const DROPS_UNWATCHED: u32 = 64;
}

/// A tracked prober connection's first close after ESTABLISHED: what a
/// probe's phases need. `event.header` is the connect's (pid, comm, time of
/// connect), `event` the state change (ESTABLISHED -> FIN_WAIT1: the
/// prober closed; -> CLOSE_WAIT: the pod did; -> CLOSE: a reset), or
/// ESTABLISHED -> ESTABLISHED when it stayed open past
/// `PROBE_OPEN_MAX_NS` (not a probe: tracking stops).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct TcpClosedEvent {
    pub event: TcpEvent,
    pub established_ts_ns: u64,
    /// 0: no payload byte arrived.
    pub first_rx_ts_ns: u64,
    pub closed_ts_ns: u64,
    /// `tcp_sock.bytes_acked` (counts the SYN), `bytes_received` (counts
    /// a FIN), `write_seq - snd_una` (written, not yet acknowledged), at
    /// the close.
    pub bytes_acked: u64,
    pub bytes_received: u64,
    pub unacked: u32,
    /// `sk_err` at the close (ECONNRESET: the pod reset it).
    pub sk_err: i32,
    /// `ProbeSock::flags` at the close.
    pub flags: u32,
    pub first_rx_len: u32,
    pub rx_head: [u8; RX_HEAD_LEN],
}

/// A tracked socket still open this long after ESTABLISHED is not a probe
/// (the kubelet's API server connections share its comm): it is reported
/// once and no longer followed.
pub const PROBE_OPEN_MAX_NS: u64 = 300_000_000_000;

/// IPVS created a connection whose client/virtual pair is the reverse of a
/// prober connection: the prober's reply traffic went into a virtual service.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct IpvsConnEvent {
    pub header: EventHeader,
    pub af: u16,
    pub protocol: u16,
    /// Client port (the pod's port: the SYN-ACK's source).
    pub cport: u16,
    /// Virtual service port (the prober's source port).
    pub vport: u16,
    /// Real server port.
    pub dport: u16,
    pub _pad: u16,
    pub caddr: [u8; 16],
    pub vaddr: [u8; 16],
    pub daddr: [u8; 16],
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

/// How many `--prober-comm` names the kernel side checks.
pub const PROBER_COMMS_MAX: usize = 16;

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

/// Key of the comm filter maps: a NUL-padded `comm`.
pub type CommKey = [u8; TASK_COMM_LEN];

/// Key of the IPVS lookup map: a prober connection as the kernel will see
/// its *reply*: (remote addr, remote port, local addr, local port).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ReplyKey {
    pub caddr: [u8; 16],
    pub vaddr: [u8; 16],
    pub cport: u16,
    pub vport: u16,
    pub _pad: u32,
}

/// Index bits of the kernel side's direct-mapped reply slots
/// (`PROBE_REPLY_SLOTS`, in front of the `PROBE_REPLIES` map).
pub const REPLY_SLOT_BITS: u32 = 12;

/// The index of `x`'s slot in a table of `1 << bits`: the top bits of a
/// multiplicative hash, which mixes every bit of `x` into them (slab
/// addresses share their low bits).
#[inline(always)]
pub fn slot_index(x: u64, bits: u32) -> u32 {
    (x.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - bits)) as u32
}

impl ReplyKey {
    const WORDS: usize = size_of::<ReplyKey>() / 8;

    /// Word `i` (< [`Self::WORDS`]) of the key, read where it lies: the
    /// kernel side's state program has no stack to spare for copies of keys.
    #[inline(always)]
    fn word(&self, i: usize) -> u64 {
        debug_assert!(i < Self::WORDS);
        // SAFETY: callers pass i < 5, the words of a 40-byte key of
        // integers; unaligned, as a key on the BPF stack is only 4-aligned.
        unsafe { core::ptr::read_unaligned((self as *const ReplyKey as *const u64).add(i)) }
    }

    /// Compared word by word: a derived `==` on the byte arrays can become
    /// a `memcmp` call, which BPF has not got.
    #[inline(always)]
    pub fn same_as(&self, other: &ReplyKey) -> bool {
        (0..Self::WORDS).all(|i| self.word(i) == other.word(i))
    }

    /// The key's reply slot: its words folded into one, then
    /// [`slot_index`]. Shared so tests can find keys that collide.
    #[inline(always)]
    pub fn slot(&self) -> u32 {
        let mut mixed = 0u64;
        for i in 0..Self::WORDS {
            mixed = mixed.rotate_left(13) ^ self.word(i);
        }
        slot_index(mixed, REPLY_SLOT_BITS)
    }
}

/// Key of the healthy-probe count map: where a prober connected to.
/// IPv4 addresses fill the first four bytes, as in [`Tuple`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct DestKey {
    pub daddr: [u8; 16],
    pub family: u16,
    pub dport: u16,
    pub _pad: u32,
}

/// Offset of a field that the running kernel lacks (the program skips it).
pub const NO_FIELD: u32 = u32::MAX;

/// Field offsets inside one tracepoint's record, read at load time from
/// `/sys/kernel/tracing/events/<category>/<name>/format`. A field the
/// tracepoint does not have is [`NO_FIELD`].
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SockTracepointOffsets {
    pub skaddr: u32,
    pub oldstate: u32,
    pub newstate: u32,
    pub state: u32,
    pub sport: u32,
    pub dport: u32,
    pub family: u32,
    pub protocol: u32,
    pub saddr: u32,
    pub daddr: u32,
    pub saddr_v6: u32,
    pub daddr_v6: u32,
}

impl SockTracepointOffsets {
    pub const MISSING: Self = Self {
        skaddr: NO_FIELD,
        oldstate: NO_FIELD,
        newstate: NO_FIELD,
        state: NO_FIELD,
        sport: NO_FIELD,
        dport: NO_FIELD,
        family: NO_FIELD,
        protocol: NO_FIELD,
        saddr: NO_FIELD,
        daddr: NO_FIELD,
        saddr_v6: NO_FIELD,
        daddr_v6: NO_FIELD,
    };
}

/// Offsets inside `struct sock_common`, from the running kernel's BTF.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SockOffsets {
    /// `struct sock.sk_protocol` (NO_FIELD where it is a bitfield, < 5.6).
    pub sk_protocol: u32,
    /// `struct sock.sk_err`: why a socket closed (a reset sets it first).
    pub sk_err: u32,
    pub skc_family: u32,
    pub skc_state: u32,
    pub skc_num: u32,
    pub skc_dport: u32,
    pub skc_rcv_saddr: u32,
    pub skc_daddr: u32,
    pub skc_v6_rcv_saddr: u32,
    pub skc_v6_daddr: u32,
    /// Where a [`SOCK_WINDOW_BYTES`] read covering the tuple's ports,
    /// family and IPv4 addresses starts (see [`SockOffsets::find_tuple_window`]),
    /// or NO_FIELD to read them one by one.
    pub tuple_window: u32,
}

/// What a probe's phases need beyond `sock_common`: `tcp_sock` counters
/// and `inet_sock`'s source port, from BTF; read through helpers, since
/// they lie past `struct sock`, where a BTF-typed load may not reach.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpSockOffsets {
    pub bytes_acked: u32,
    pub bytes_received: u32,
    pub write_seq: u32,
    pub snd_una: u32,
    /// `inet_sock.inet_sport`: kept after the port is released at close,
    /// where `skc_num` reads 0.
    pub inet_sport: u32,
    /// `sock.sk_receive_queue` and, in that `sk_buff_head`, `next`: the
    /// first unread segment, whose payload starts at its `data` (the TCP
    /// header is pulled when it is queued).
    pub sk_receive_queue: u32,
    pub queue_next: u32,
    pub _pad: u32,
}

impl TcpSockOffsets {
    pub const MISSING: Self = Self {
        bytes_acked: NO_FIELD,
        bytes_received: NO_FIELD,
        write_seq: NO_FIELD,
        snd_una: NO_FIELD,
        inet_sport: NO_FIELD,
        sk_receive_queue: NO_FIELD,
        queue_next: NO_FIELD,
        _pad: 0,
    };
}

/// Where a received segment's payload is: `sk_buff` and `skb_shared_info`
/// members from BTF, and how a page's address is found (x86-64's direct
/// map: `page_offset_base + (page - vmemmap_base) / sizeof(struct page) *
/// PAGE_SIZE`). TCP's payload is in page fragments on every kernel since
/// 4.20 (tcp_sendmsg allocates no linear room), so the first response
/// bytes are read from `frags[0]` unless the linear part holds them.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SkbOffsets {
    pub len: u32,
    pub data_len: u32,
    pub head: u32,
    pub data: u32,
    /// `sk_buff.end`: an offset from `head` on 64-bit kernels.
    pub end: u32,
    /// `skb_shared_info.frags`, and in a fragment its page (or netmem)
    /// and offset.
    pub shinfo_frags: u32,
    pub frag_page: u32,
    pub frag_offset: u32,
    /// log2 of `sizeof(struct page)` and of the page size; NO_FIELD when
    /// fragments cannot be read (no power of two, no known bases).
    pub page_struct_shift: u32,
    pub page_shift: u32,
    /// Kernel addresses of the `page_offset_base` and `vmemmap_base`
    /// variables (KASLR moves the bases; the programs read them), or 0
    /// when the kernel exports no such symbols and the values below hold.
    pub page_offset_base_at: u64,
    pub vmemmap_base_at: u64,
    pub page_offset_base: u64,
    pub vmemmap_base: u64,
}

impl SkbOffsets {
    pub const MISSING: Self = Self {
        len: NO_FIELD,
        data_len: NO_FIELD,
        head: NO_FIELD,
        data: NO_FIELD,
        end: NO_FIELD,
        shinfo_frags: NO_FIELD,
        frag_page: NO_FIELD,
        frag_offset: NO_FIELD,
        page_struct_shift: NO_FIELD,
        page_shift: NO_FIELD,
        page_offset_base_at: 0,
        vmemmap_base_at: 0,
        page_offset_base: 0,
        vmemmap_base: 0,
    };
}

/// What the drop hook reads: the tracepoint's fields (classic mechanism),
/// and `sk_buff` and `net_device` members from BTF.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DropOffsets {
    /// skb:kfree_skb `skbaddr`, `location`, `reason` (NO_FIELD before 5.17).
    pub tp_skbaddr: u32,
    pub tp_location: u32,
    pub tp_reason: u32,
    /// Whether the tracepoint's arguments include the reason (5.17+):
    /// the typed and raw programs read a third argument only then.
    pub has_reason: u32,
    pub skb_sk: u32,
    pub skb_dev: u32,
    /// `sk_buff.protocol` (big-endian EtherType) and the header offsets
    /// from `head`.
    pub skb_protocol: u32,
    pub skb_network_header: u32,
    pub dev_nd_net: u32,
    /// `net_device.name`.
    pub dev_name: u32,
}

impl DropOffsets {
    pub const MISSING: Self = Self {
        tp_skbaddr: NO_FIELD,
        tp_location: NO_FIELD,
        tp_reason: NO_FIELD,
        has_reason: 0,
        skb_sk: NO_FIELD,
        skb_dev: NO_FIELD,
        skb_protocol: NO_FIELD,
        skb_network_header: NO_FIELD,
        dev_nd_net: NO_FIELD,
        dev_name: NO_FIELD,
    };
}

/// Bytes of `struct sock_common` the programs read at once for a tuple:
/// each `bpf_probe_read_kernel` costs ~40 ns (bpf_stats, bare 6.18), and
/// the fields are next to each other on every kernel (the first 18 bytes).
pub const SOCK_WINDOW_BYTES: u32 = 24;

/// Offsets inside the ip_vs module's `struct ip_vs_conn_param`, from
/// `/sys/kernel/btf/ip_vs`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IpvsParamOffsets {
    pub caddr: u32,
    pub vaddr: u32,
    pub cport: u32,
    pub vport: u32,
    pub protocol: u32,
    pub af: u32,
}

impl IpvsParamOffsets {
    pub const MISSING: Self = Self {
        caddr: NO_FIELD,
        vaddr: NO_FIELD,
        cport: NO_FIELD,
        vport: NO_FIELD,
        protocol: NO_FIELD,
        af: NO_FIELD,
    };
}

impl SockOffsets {
    pub const MISSING: Self = Self {
        sk_protocol: NO_FIELD,
        sk_err: NO_FIELD,
        skc_family: NO_FIELD,
        skc_state: NO_FIELD,
        skc_num: NO_FIELD,
        skc_dport: NO_FIELD,
        skc_rcv_saddr: NO_FIELD,
        skc_daddr: NO_FIELD,
        skc_v6_rcv_saddr: NO_FIELD,
        skc_v6_daddr: NO_FIELD,
        tuple_window: NO_FIELD,
    };

    /// The 8-aligned start of a [`SOCK_WINDOW_BYTES`] window holding the
    /// IPv4 addresses, the ports and the family, each naturally aligned (so
    /// that none straddles one of the window's 64-bit words, which the
    /// programs pick fields from with shifts); NO_FIELD if they do not fit.
    pub fn find_tuple_window(&self) -> u32 {
        let fields =
            [(self.skc_daddr, 4), (self.skc_rcv_saddr, 4), (self.skc_dport, 2), (self.skc_num, 2), (self.skc_family, 2)];
        if fields.iter().any(|&(at, size)| at == NO_FIELD || at % size != 0) {
            return NO_FIELD;
        }
        let start = fields.iter().map(|&(at, _)| at).min().unwrap_or(0) & !7;
        let end = fields.iter().map(|&(at, size)| at + size).max().unwrap_or(0);
        if end - start <= SOCK_WINDOW_BYTES { start } else { NO_FIELD }
    }
}

/// Offsets for the process hooks: tracepoint fields and `task_struct`/
/// `struct pid` members (from BTF) that tracepoints do not carry.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProcessOffsets {
    /// sched:sched_process_exec `filename` (a __data_loc field)
    pub exec_filename: u32,
    /// struct linux_binprm `filename` (the raw tracepoint's third argument)
    pub bprm_filename: u32,
    /// struct pt_regs: a syscall's second argument (`si` on x86_64), read by
    /// fexit programs on the syscall wrappers, which take `const struct pt_regs *`
    pub regs_arg2: u32,
    /// sched:sched_process_fork `child_pid`
    pub fork_child_pid: u32,
    /// syscalls:sys_exit_* `ret`
    pub sys_exit_ret: u32,
    /// syscalls:sys_enter_setns `flags` (`nstype` on older kernels)
    pub setns_nstype: u32,
    /// signal:signal_generate
    pub sig_sig: u32,
    pub sig_errno: u32,
    pub sig_code: u32,
    pub sig_comm: u32,
    pub sig_pid: u32,
    pub sig_result: u32,
    /// oom:mark_victim
    pub oom_pid: u32,
    pub oom_total_vm: u32,
    pub oom_anon_rss: u32,
    pub oom_file_rss: u32,
    pub oom_shmem_rss: u32,
    pub oom_comm: u32,
    /// struct task_struct
    pub task_exit_code: u32,
    pub task_thread_pid: u32,
    pub task_real_parent: u32,
    pub task_tgid: u32,
    pub task_pid: u32,
    pub task_signal: u32,
    pub task_mm: u32,
    pub task_comm: u32,
    /// struct signal_struct: live thread count (the group is dead at 0)
    pub signal_live: u32,
    /// struct mm_struct
    pub mm_arg_start: u32,
    pub mm_arg_end: u32,
    /// struct pid
    pub pid_level: u32,
    pub pid_numbers: u32,
    /// struct upid
    pub upid_size: u32,
    pub upid_nr: u32,
}

impl ProcessOffsets {
    pub const MISSING: Self = Self {
        exec_filename: NO_FIELD,
        bprm_filename: NO_FIELD,
        regs_arg2: NO_FIELD,
        fork_child_pid: NO_FIELD,
        sys_exit_ret: NO_FIELD,
        setns_nstype: NO_FIELD,
        sig_sig: NO_FIELD,
        sig_errno: NO_FIELD,
        sig_code: NO_FIELD,
        sig_comm: NO_FIELD,
        sig_pid: NO_FIELD,
        sig_result: NO_FIELD,
        oom_pid: NO_FIELD,
        oom_total_vm: NO_FIELD,
        oom_anon_rss: NO_FIELD,
        oom_file_rss: NO_FIELD,
        oom_shmem_rss: NO_FIELD,
        oom_comm: NO_FIELD,
        task_exit_code: NO_FIELD,
        task_thread_pid: NO_FIELD,
        task_real_parent: NO_FIELD,
        task_tgid: NO_FIELD,
        task_pid: NO_FIELD,
        task_signal: NO_FIELD,
        task_mm: NO_FIELD,
        task_comm: NO_FIELD,
        signal_live: NO_FIELD,
        mm_arg_start: NO_FIELD,
        mm_arg_end: NO_FIELD,
        pid_level: NO_FIELD,
        pid_numbers: NO_FIELD,
        upid_size: NO_FIELD,
        upid_nr: NO_FIELD,
    };
}

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

#[cfg(feature = "user")]
mod pod {
    use super::*;
    // SAFETY: all of these are #[repr(C)] structs of integers with explicit
    // padding fields, so every bit pattern is a valid value.
    unsafe impl aya::Pod for ReplyKey {}
    unsafe impl aya::Pod for DestKey {}
    unsafe impl aya::Pod for ProbeSock {}
    unsafe impl aya::Pod for ProbeSlot {}
    unsafe impl aya::Pod for Config {}
}

/// Copy a record out of a ring-buffer slice if it is long enough.
///
/// Returns `None` for a short slice instead of reading out of bounds.
pub fn read_record<T: Copy>(bytes: &[u8]) -> Option<T> {
    if bytes.len() < core::mem::size_of::<T>() {
        return None;
    }
    // SAFETY: length checked above; read_unaligned has no alignment needs and
    // every T used here is a plain-integer #[repr(C)] struct.
    Some(unsafe { core::ptr::read_unaligned(bytes.as_ptr() as *const T) })
}

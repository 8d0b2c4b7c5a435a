//! Prober TCP connections: their records, and the kernel side's tracked
//! socket, reply and destination map values.

use crate::{EventHeader, Tuple};

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

// SAFETY: #[repr(C)], integers with explicit padding: every bit pattern
// is a valid value.
#[cfg(feature = "user")]
unsafe impl aya::Pod for ProbeSock {}

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

// SAFETY: #[repr(C)], integers with explicit padding: every bit pattern
// is a valid value.
#[cfg(feature = "user")]
unsafe impl aya::Pod for ProbeSlot {}

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

// SAFETY: #[repr(C)], integers with explicit padding: every bit pattern
// is a valid value.
#[cfg(feature = "user")]
unsafe impl aya::Pod for ReplyKey {}

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

// SAFETY: #[repr(C)], integers with explicit padding: every bit pattern
// is a valid value.
#[cfg(feature = "user")]
unsafe impl aya::Pod for DestKey {}

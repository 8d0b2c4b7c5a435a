//! Hook: every TCP state change (sock:inet_sock_set_state as a tracepoint,
//! a raw tracepoint or tp_btf).

use aya_ebpf::{
    macros::{btf_tracepoint, raw_tracepoint, tracepoint},
    programs::{BtfTracePointContext, RawTracePointContext, TracePointContext},
};
use tracer_common::{
    NO_FIELD, ProbeSock, SockTracepointOffsets, AF_INET6, Tuple, drop_filter_slot, hook_mode, setting as settings,
    tcp_state::{TCP_CLOSE, TCP_ESTABLISHED, TCP_SYN_RECV, TCP_SYN_SENT},
};

use crate::{config, may_hold, read_kernel, setting, tp_read, tracked_map};
use super::{
    report::{on_leaving_established, on_tracked_state},
    sock::{LoadDirect, ReadByHelper, SockAccess},
    tracking::{in_host_namespaces, prober_comm, track, tracked, tracked_at},
};

const IPPROTO_TCP: u16 = 6;
const ECONNRESET: i32 = 104;
const ECONNREFUSED: i32 = 111;

// Tracepoints. Field offsets come from the tracepoint's format file.

pub(super) fn tp_tuple(ctx: &TracePointContext, off: &SockTracepointOffsets) -> Tuple {
    // No family field (tcp_retransmit_skb before 5.11): the v6 fields are
    // filled for both families, IPv4 as v4-mapped.
    let family = if off.family == NO_FIELD { AF_INET6 } else { tp_read::<u16>(ctx, off.family) };
    let mut t = Tuple {
        family,
        sport: tp_read::<u16>(ctx, off.sport),
        dport: tp_read::<u16>(ctx, off.dport),
        ..Default::default()
    };
    if t.family == AF_INET6 {
        t.saddr = tp_read::<[u8; 16]>(ctx, off.saddr_v6);
        t.daddr = tp_read::<[u8; 16]>(ctx, off.daddr_v6);
    } else {
        t.saddr[..4].copy_from_slice(&tp_read::<[u8; 4]>(ctx, off.saddr));
        t.daddr[..4].copy_from_slice(&tp_read::<[u8; 4]>(ctx, off.daddr));
    }
    t
}

/// Whether a state change before ESTABLISHED can belong to a tracked
/// socket: tracking starts in SYN-SENT (or SYN-RECV, after a simultaneous
/// open); leaving ESTABLISHED is [`on_leaving_established`]'s. Checked
/// before the lookup, because this hook fires for every state change on
/// the node. SYN-RECV is also where every *accepted* connection on the
/// node comes from, so it is looked up only while a tracked socket is
/// there after a simultaneous open (nearly never).
#[inline(always)]
fn may_concern_tracked(old: u8) -> bool {
    old == TCP_SYN_SENT || (old == TCP_SYN_RECV && may_hold(tracked_map::SIMULTANEOUS_OPENS))
}

/// sock:inet_sock_set_state: every TCP state change. For tracked sockets it
/// reports the transition; while no tcp_connect hook is attached it also
/// detects prober connects (CLOSE -> SYN_SENT in the prober's context).
#[tracepoint(category = "sock", name = "inet_sock_set_state")]
pub fn tp_inet_sock_set_state(ctx: TracePointContext) -> u32 {
    let off = &config().set_state;
    if off.protocol != NO_FIELD && tp_read::<u16>(&ctx, off.protocol) != IPPROTO_TCP {
        return 0;
    }
    let skaddr = tp_read::<u64>(&ctx, off.skaddr);
    let old = tp_read::<u32>(&ctx, off.oldstate) as u8;
    let new = tp_read::<u32>(&ctx, off.newstate) as u8;
    if old == TCP_ESTABLISHED {
        on_leaving_established(|| skaddr, new);
        return 0;
    }
    if may_concern_tracked(old)
        && let Some(sock) = tracked(skaddr)
    {
        let tuple = tp_tuple(&ctx, off);
        on_tracked_state(sock, skaddr, &tuple, old, new, hook_mode::TRACEPOINT, false);
        return 0;
    }
    if new == TCP_SYN_SENT
        && setting(settings::CONNECT_HOOKED) == 0
        && let Some(comm) = prober_comm(false)
        && in_host_namespaces(skaddr)
    {
        // connect() sets the destination before the state.
        let t = tp_tuple(&ctx, off);
        track(skaddr, hook_mode::TRACEPOINT, comm, drop_filter_slot(t.family, &t.daddr, t.dport));
    }
    0
}

/// What both socket-typed flavours of the state hook do: report a tracked
/// socket's transition, or (while no tcp_connect hook is attached) start
/// tracking a prober's connect.
#[inline(always)]
fn on_set_state(sk: impl SockAccess, old: u8, new: u8, mode: u8) {
    if old == TCP_ESTABLISHED {
        on_leaving_established(|| sk.address(), new);
        return;
    }
    if may_concern_tracked(old)
        && let Some((skaddr, sock)) = tracked_at(|| sk.address())
    {
        on_tracked_change(sk, sock, skaddr, (old as u32) << 16 | (new as u32) << 8 | mode as u32);
        return;
    }
    if new == TCP_SYN_SENT && setting(settings::CONNECT_HOOKED) == 0 {
        on_connect_by_state(sk, mode);
    }
}

/// A connect seen by the state hook alone (no tcp_connect hook attached):
/// tracked if a prober in the host's namespaces made it. A function of its
/// own, as [`on_tracked_change`] is, so that the comm and the reads here
/// do not widen the state program's frame: 6.1's verifier refused the raw
/// program's 128 + 320 + 96 bytes along its deepest call chain.
#[inline(never)]
fn on_connect_by_state(sk: impl SockAccess, mode: u8) {
    let Some(comm) = prober_comm(sk.typed()) else { return };
    if sk.protocol().is_some_and(|p| p != IPPROTO_TCP) {
        return;
    }
    // The source port is not bound yet at this point of connect(); the
    // records sent later carry it.
    let skaddr = sk.address();
    if in_host_namespaces(skaddr) {
        // connect() sets the destination before the state.
        track(skaddr, mode, comm, sk.drop_slot());
    }
}

/// [`on_set_state`]'s tracked half (states and mode packed: a BPF function
/// takes five arguments at most). A function of its own so that its frame
/// (the tuple, the records' temporaries) is not added to the frames of the
/// other functions the state program calls: 6.1's and 5.10's verifiers sum
/// the frames along a call chain and refused 384 + 144 bytes.
#[inline(never)]
fn on_tracked_change(sk: impl SockAccess, sock: &mut ProbeSock, skaddr: u64, states_mode: u32) {
    let (old, new, mode) = ((states_mode >> 16) as u8, (states_mode >> 8) as u8, states_mode as u8);
    let mut tuple = sk.tuple();
    if tuple.sport == 0 {
        // Closing released the port (skc_num is 0 by the time the
        // tracepoint fires); inet_sport keeps it.
        tuple.sport = u16::from_be(read_kernel::<u16>(skaddr as *const u8, config().tcp_sock.inet_sport).unwrap_or(0));
    }
    let reset = new == TCP_CLOSE && reset_by_peer(sk.err(), old);
    on_tracked_state(sock, skaddr, &tuple, old, new, mode, reset);
}

/// The same hook as a raw tracepoint (`TP_PROTO(const struct sock *sk, int
/// oldstate, int newstate)`): the kernel skips assembling the tracepoint
/// record, which matters because this fires on every TCP state change on
/// the node, prober or not.
#[raw_tracepoint(tracepoint = "inet_sock_set_state")]
pub fn raw_tp_inet_sock_set_state(ctx: RawTracePointContext) -> u32 {
    let sk = ctx.arg::<*const u8>(0);
    on_set_state(ReadByHelper(sk), ctx.arg::<u64>(1) as u8, ctx.arg::<u64>(2) as u8, hook_mode::RAW_TRACEPOINT);
    0
}

/// The raw tracepoint with BTF types (tp_btf): the socket's fields are
/// plain loads instead of helper calls, the protocol at a prober's connect
/// and the tuple at its ESTABLISHED (~30-40 ns each).
#[btf_tracepoint(function = "inet_sock_set_state")]
pub fn btf_tp_inet_sock_set_state(ctx: BtfTracePointContext) -> u32 {
    let sk = ctx.arg::<*const u8>(0);
    let sk = LoadDirect { sk };
    on_set_state(sk, ctx.arg::<u64>(1) as u8, ctx.arg::<u64>(2) as u8, hook_mode::BTF_TRACEPOINT);
    0
}

/// Whether a tracked socket closing now was reset by its peer: the kernel
/// sets `sk_err` before the state changes (tcp_reset, or an ICMP port
/// unreachable, which refuses a connect as a RST does). With this the
/// tcp_receive_reset tracepoint, which fires for every reset on the node,
/// need not be attached next to the raw state program.
#[inline(always)]
fn reset_by_peer(sk_err: Option<i32>, old: u8) -> bool {
    match sk_err {
        Some(ECONNREFUSED) => true,
        // A reset in SYN-RECV (simultaneous open) reads as a reset of an
        // open connection.
        Some(ECONNRESET) => old == TCP_SYN_RECV,
        _ => false,
    }
}

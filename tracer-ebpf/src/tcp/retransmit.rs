//! Hooks: SYN retransmits and resets received (tcp:tcp_retransmit_skb,
//! tcp:tcp_receive_reset, as tracepoints or raw tracepoints).

use aya_ebpf::{
    macros::{raw_tracepoint, tracepoint},
    programs::{RawTracePointContext, TracePointContext},
};
use tracer_common::{hook_mode, kind};

use crate::{config, tp_read};
use super::{
    report::on_tracked_event,
    sock::{ReadByHelper, SockAccess, sock_tuple},
    state::tp_tuple,
    tracking::{tracked, tracked_at},
};

/// `TP_PROTO(const struct sock *sk, const struct sk_buff *skb, ...)`: the
/// socket is the first argument on every kernel. Raw, so that the kernel
/// does not assemble a record (addresses and all) for every retransmit on
/// the node before the tracked-socket lookup says no.
#[raw_tracepoint(tracepoint = "tcp_retransmit_skb")]
pub fn raw_tp_tcp_retransmit_skb(ctx: RawTracePointContext) -> u32 {
    let sk = ReadByHelper(ctx.arg::<*const u8>(0));
    let Some((skaddr, sock)) = tracked_at(|| sk.address()) else { return 0 };
    let (state, tuple) = (sk.state(), sk.tuple());
    on_tracked_event(sock, kind::TCP_RETRANSMIT, hook_mode::RAW_TRACEPOINT, skaddr, &tuple, state, state);
    0
}

/// `TP_PROTO(struct sock *sk)`: as above, for every reset received on the
/// node (one per connection on a node whose clients close with RST). Only
/// attached where the state hook is the classic tracepoint: the raw one
/// sees resets itself ([`reset_by_peer`]).
#[raw_tracepoint(tracepoint = "tcp_receive_reset")]
pub fn raw_tp_tcp_receive_reset(ctx: RawTracePointContext) -> u32 {
    let sk = ctx.arg::<*const u8>(0);
    let Some(sock) = tracked(sk as u64) else { return 0 };
    let tuple = sock_tuple(sk);
    on_tracked_event(sock, kind::TCP_RESET, hook_mode::RAW_TRACEPOINT, sk as u64, &tuple, 0, 0);
    0
}

/// tcp:tcp_retransmit_skb: counts SYN retransmits of tracked sockets.
#[tracepoint(category = "tcp", name = "tcp_retransmit_skb")]
pub fn tp_tcp_retransmit_skb(ctx: TracePointContext) -> u32 {
    let off = &config().retransmit;
    let skaddr = tp_read::<u64>(&ctx, off.skaddr);
    let Some(sock) = tracked(skaddr) else { return 0 };
    let state = tp_read::<u32>(&ctx, off.state) as u8;
    let tuple = tp_tuple(&ctx, off);
    on_tracked_event(sock, kind::TCP_RETRANSMIT, hook_mode::TRACEPOINT, skaddr, &tuple, state, state);
    0
}

/// tcp:tcp_receive_reset: a tracked socket was refused.
#[tracepoint(category = "tcp", name = "tcp_receive_reset")]
pub fn tp_tcp_receive_reset(ctx: TracePointContext) -> u32 {
    let off = &config().reset;
    let skaddr = tp_read::<u64>(&ctx, off.skaddr);
    let Some(sock) = tracked(skaddr) else { return 0 };
    let tuple = tp_tuple(&ctx, off);
    on_tracked_event(sock, kind::TCP_RESET, hook_mode::TRACEPOINT, skaddr, &tuple, 0, 0);
    0
}

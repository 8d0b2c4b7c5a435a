//! Hooks: tcp_connect (fentry, kprobe; tracepoint fallback in the state
//! hook) and tcp_rcv_state_process (fentry, kprobe).

use aya_ebpf::{
    macros::{fentry, kprobe},
    programs::{FEntryContext, ProbeContext},
};
use tracer_common::{hook_mode, kind, probe_sock, setting as settings, tcp_state::TCP_SYN_SENT};

use crate::setting;
use super::{
    report::send_new,
    sock::{LoadDirect, ReadByHelper, SockAccess},
    tracking::{in_host_namespaces, prober_comm, track, track_reply, tracked_at},
};

/// The socket's address (and, on an IPVS node, its tuple) is read only
/// once the connect is known to be a prober's.
#[inline(always)]
fn on_tcp_connect(sk: impl SockAccess, mode: u8) {
    let Some(comm) = prober_comm(sk.typed()) else { return };
    let skaddr = sk.address();
    if skaddr == 0 || !in_host_namespaces(skaddr) {
        return;
    }
    track(skaddr, mode, comm, sk.drop_slot());
    // tcp_connect runs after the source port is bound.
    if setting(settings::IPVS_HOOKED) != 0 {
        track_reply(skaddr, &sk.tuple());
    }
}

#[fentry(function = "tcp_connect")]
pub fn fentry_tcp_connect(ctx: FEntryContext) -> u32 {
    on_tcp_connect(LoadDirect { sk: ctx.arg(0) }, hook_mode::FENTRY);
    0
}

#[kprobe(function = "tcp_connect")]
pub fn kprobe_tcp_connect(ctx: ProbeContext) -> u32 {
    on_tcp_connect(ReadByHelper(ctx.arg::<*const u8>(0).unwrap_or(core::ptr::null())), hook_mode::KPROBE);
    0
}

// ---------------------------------------------------------------------------
// Hook: tcp_rcv_state_process (fentry, kprobe). A segment reaching a tracked
// socket in SYN-SENT proves the SYN-ACK arrived; its absence is what a
// diverted SYN-ACK looks like from the prober's side.

#[inline(always)]
fn on_rcv_state_process(sk: impl SockAccess, mode: u8) {
    // This runs for every segment a socket gets outside ESTABLISHED,
    // node-wide. Whether anything is tracked first (a load from a map the
    // verifier inlines): usually no probe is in flight. Only then the
    // socket's address, its slot (a load and a compare), and only for a
    // tracked socket its state: segments of listeners and of the other end
    // of a prober's connection are not tracked.
    let Some((skaddr, sock)) = tracked_at(|| sk.address()) else { return };
    if sk.state() != TCP_SYN_SENT {
        return;
    }
    if sock.flags & probe_sock::CONNECT_REPORTED == 0 {
        // Usually ESTABLISHED follows at once and implies it; otherwise it
        // is sent before whatever comes instead.
        sock.flags |= probe_sock::SYNACK_PENDING;
        return;
    }
    send_new(kind::TCP_SYN_SENT_RCV, mode, skaddr, &sk.tuple(), TCP_SYN_SENT, TCP_SYN_SENT);
}

#[fentry(function = "tcp_rcv_state_process")]
pub fn fentry_tcp_rcv_state_process(ctx: FEntryContext) -> u32 {
    on_rcv_state_process(LoadDirect { sk: ctx.arg(0) }, hook_mode::FENTRY);
    0
}

#[kprobe(function = "tcp_rcv_state_process")]
pub fn kprobe_tcp_rcv_state_process(ctx: ProbeContext) -> u32 {
    on_rcv_state_process(ReadByHelper(ctx.arg::<*const u8>(0).unwrap_or(core::ptr::null())), hook_mode::KPROBE);
    0
}

//! Hook: tcp_rcv_space_adjust (tp_btf, raw tracepoint): a process read data
//! from an established socket (`tcp_recvmsg` calls it after each segment it
//! copies, before it frees the segment). For a followed probe, the first
//! such read is the response's first bytes: their time, their length and
//! the HTTP status line, read from the segment at the head of the receive
//! queue. A response still unread when the socket first closes (the pod's
//! FIN came first) is read there instead ([`take_response`] from
//! [`report_first_close`]).
//!
//! Not `tcp:tcp_probe`: that fires for every segment an established socket
//! receives (data, bare ACKs, the FIN), and every run is a dispatch paid by
//! every connection on the node, prober or not; reads are fewer (see
//! docs/benchmarks.md).

use aya_ebpf::{
    helpers::bpf_ktime_get_ns,
    macros::{btf_tracepoint, raw_tracepoint},
    programs::{BtfTracePointContext, RawTracePointContext},
};
use tracer_common::{NO_FIELD, PROBE_OPEN_MAX_NS, ProbeSock, probe_sock, tcp_state::TCP_ESTABLISHED};

use crate::{config, may_hold, read_kernel, tracked_map};
use super::{report::report_first_close, sock::{LoadDirect, ReadByHelper, SockAccess}, tracking::tracked_at};

/// `TP_PROTO(struct sock *sk)` on every kernel since 4.16, in the reading
/// process's context, with the socket locked: the state hook's close
/// (softirq) cannot run between the copy and this.
#[inline(always)]
fn on_read(sk: impl SockAccess) {
    // Fires for every read of every TCP socket on the node: while no probe
    // is established, one inlined map load.
    if !may_hold(tracked_map::ESTABLISHED_PROBES) {
        return;
    }
    let Some((skaddr, sock)) = tracked_at(|| sk.address()) else { return };
    if sock.flags & probe_sock::ESTABLISHED == 0 {
        return;
    }
    if sock.flags & probe_sock::RESPONSE_SEEN != 0 {
        // A long-lived connection of the prober's (the kubelet's to the
        // API server): not a probe, so not followed for ever.
        if unsafe { bpf_ktime_get_ns() }.saturating_sub(sock.established_ts_ns) > PROBE_OPEN_MAX_NS {
            report_first_close(sock, skaddr, TCP_ESTABLISHED);
        }
        return;
    }
    take_response(sock, skaddr);
}

/// Notes the response's first bytes from the socket's first unread
/// segment, once: the first read of a followed probe (the segment being
/// copied is still queued), or its first close when nothing was read
/// before it. A function of its own (a BPF-to-BPF call, at most once per
/// probe), so its reads are not inlined into the state program twice.
#[inline(never)]
pub(super) fn take_response(sock: &mut ProbeSock, skaddr: u64) {
    let off = &config().tcp_sock;
    if off.sk_receive_queue == NO_FIELD {
        return;
    }
    let queue = skaddr + off.sk_receive_queue as u64;
    let Some(skb) = read_kernel::<u64>(queue as *const u8, off.queue_next) else { return };
    // An empty sk_buff_head points at itself.
    if skb == 0 || skb == queue {
        return;
    }
    let Some((payload, at)) = queued_payload(skb as *const u8) else { return };
    if payload == 0 {
        return; // a FIN alone
    }
    sock.first_rx_ts_ns = unsafe { bpf_ktime_get_ns() };
    sock.first_rx_len = payload;
    sock.flags |= probe_sock::RESPONSE_SEEN;
    // Answered: its packets no longer say why it failed, if it does.
    crate::drops::unwatch(sock);
    if at != 0 && unsafe { aya_ebpf::helpers::bpf_probe_read_kernel_buf(at as *const u8, &mut sock.rx_head) }.is_ok() {
        sock.flags |= probe_sock::RESPONSE_READ;
    }
}

/// A queued segment's payload length and the kernel address of its first
/// byte (0 when it cannot be found). `skb->data` is the payload here.
#[inline(always)]
fn queued_payload(skb: *const u8) -> Option<(u32, u64)> {
    let off = &config().skb;
    let len = read_kernel::<u32>(skb, off.len)?;
    if len == 0 {
        return Some((0, 0));
    }
    let data = read_kernel::<u64>(skb, off.data)?;
    let linear = len.saturating_sub(read_kernel::<u32>(skb, off.data_len).unwrap_or(0));
    if linear > 0 {
        return Some((len, data));
    }
    // In the first page fragment (where TCP puts what the sender wrote).
    let head = read_kernel::<u64>(skb, off.head)?;
    let end = read_kernel::<u32>(skb, off.end)?;
    let frag = (head + end as u64 + off.shinfo_frags as u64) as *const u8;
    let page = read_kernel::<u64>(frag, off.frag_page)?;
    let frag_offset = read_kernel::<u32>(frag, off.frag_offset)?;
    let at = page_address(page).map_or(0, |p| p + frag_offset as u64);
    Some((len, at))
}

/// The direct-map address of a `struct page`'s memory (see
/// `tracer_common::SkbOffsets`); `None` for a netmem that is no page (bit
/// 0 set) or where the layout is unknown.
#[inline(always)]
fn page_address(page: u64) -> Option<u64> {
    let off = &config().skb;
    if page & 1 != 0 || off.page_struct_shift == NO_FIELD || off.page_shift == NO_FIELD {
        return None;
    }
    let base = |at: u64, value: u64| {
        if at == 0 { Some(value) } else { read_kernel::<u64>(at as *const u8, 0) }
    };
    let vmemmap = base(off.vmemmap_base_at, off.vmemmap_base)?;
    let direct = base(off.page_offset_base_at, off.page_offset_base)?;
    if page < vmemmap {
        return None;
    }
    let pfn = (page - vmemmap) >> (off.page_struct_shift & 63);
    Some(direct + (pfn << (off.page_shift & 63)))
}

#[btf_tracepoint(function = "tcp_rcv_space_adjust")]
pub fn btf_tp_tcp_rcv_space_adjust(ctx: BtfTracePointContext) -> u32 {
    on_read(LoadDirect { sk: ctx.arg::<*const u8>(0) });
    0
}

#[raw_tracepoint(tracepoint = "tcp_rcv_space_adjust")]
pub fn raw_tp_tcp_rcv_space_adjust(ctx: RawTracePointContext) -> u32 {
    on_read(ReadByHelper(ctx.arg::<*const u8>(0)));
    0
}

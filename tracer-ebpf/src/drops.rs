//! Dropped probe packets: `skb:kfree_skb`, which the kernel calls for every
//! packet it frees as dropped, with where (`location`) and, since 5.17,
//! why (`reason`). A busy node drops many packets that are no probe's, so
//! the program returns at once while no probe is tracked, and otherwise
//! reads the packet's IP header and ports in one helper call and looks
//! both its destination and its source up in a direct-mapped filter of
//! the tracked probes' destinations ([`DROP_FILTER`]): either direction of
//! a probe (its SYN and request, the pod's SYN-ACK and response) passes.
//! Userspace matches what passes to the probe by the exact tuple.

use aya_ebpf::{
    helpers::bpf_probe_read_kernel_buf,
    macros::{btf_tracepoint, map, raw_tracepoint, tracepoint},
    maps::{Array, PerCpuArray},
    programs::{BtfTracePointContext, RawTracePointContext, TracePointContext},
};
use tracer_common::{
    AF_INET, AF_INET6, DROP_FILTER_BITS, DropEvent, IFNAMSIZ, NO_FIELD, ProbeSock, Tuple, drop_filter_slot, drop_filter_slot_v4, hook_mode, kind,
    probe_sock,
};

use crate::{config, header, read_kernel, reserve, submit, tcp, tp_read};

const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
const IPPROTO_TCP: u8 = 6;

/// Tracked probes by destination slot ([`drop_filter_slot`]): how many
/// go there now. Changed by atomic adds at track and untrack.
#[map]
static DROP_FILTER: Array<i64> = Array::with_max_entries(1 << DROP_FILTER_BITS, 0);

/// Room for a dropped packet's headers as read. On the stack they took
/// the program and the function it calls past the 512 bytes 5.10's
/// verifier allows the two together.
#[map]
static DROP_HEADERS: PerCpuArray<[u8; HEADERS_ROOM]> = PerCpuArray::with_max_entries(1, 0);
const HEADERS_ROOM: usize = 64;
/// Where in that room an IPv4 packet's TCP header goes when IP options
/// put it past the first read.
const V4_TCP_AFTER_OPTIONS: usize = 40;

/// Counts a tracked probe's destination in (+1) or out (-1) of the filter.
#[inline(always)]
fn filter_add(slot: u32, delta: i64) {
    if let Some(p) = DROP_FILTER.get_ptr_mut(slot) {
        crate::atomic_add(p, delta);
    }
}

/// A probe starts: its destination passes the filter until [`unwatch`].
#[inline(always)]
pub(crate) fn watch(slot: u32) {
    filter_add(slot, 1);
    crate::add_to_count(crate::tracked_map::DROP_WATCHED, 1);
}

/// A probe was answered or closed: its packets no longer matter. Once per
/// probe (the flag), whichever comes first.
#[inline(always)]
pub(crate) fn unwatch(sock: &mut ProbeSock) {
    if sock.flags & probe_sock::DROPS_UNWATCHED == 0 {
        sock.flags |= probe_sock::DROPS_UNWATCHED;
        filter_add(sock.drop_slot, -1);
        crate::add_to_count(crate::tracked_map::DROP_WATCHED, -1);
    }
}

#[inline(always)]
fn filter_holds(slot: u32) -> bool {
    DROP_FILTER.get(slot).is_some_and(|n| *n > 0)
}

/// How a program reads the skb: plain loads of a BTF-typed pointer
/// (tp_btf) or helper reads (raw and classic tracepoints).
trait SkbAccess: Copy {
    fn u16_at(self, offset: u32) -> Option<u16>;
    fn u64_at(self, offset: u32) -> Option<u64>;
    /// The skb's address as a number, for helper reads once it matched.
    fn address(self) -> u64;
}

#[derive(Clone, Copy)]
struct TypedSkb(*const u8);

impl SkbAccess for TypedSkb {
    #[inline(always)]
    fn u16_at(self, offset: u32) -> Option<u16> {
        tcp::load(self.0, offset)
    }
    #[inline(always)]
    fn u64_at(self, offset: u32) -> Option<u64> {
        tcp::load(self.0, offset)
    }
    #[inline(always)]
    fn address(self) -> u64 {
        tcp::pointer_value(self.0)
    }
}

#[derive(Clone, Copy)]
struct SkbByHelper(*const u8);

impl SkbAccess for SkbByHelper {
    #[inline(always)]
    fn u16_at(self, offset: u32) -> Option<u16> {
        read_kernel(self.0, offset)
    }
    #[inline(always)]
    fn u64_at(self, offset: u32) -> Option<u64> {
        read_kernel(self.0, offset)
    }
    #[inline(always)]
    fn address(self) -> u64 {
        self.0 as u64
    }
}

/// IPv4 header and the TCP header's first 14 bytes (ports, data offset,
/// flags), as one read.
const V4_READ: usize = 34;
/// IPv6 header and the same 14 bytes.
const V6_READ: usize = 54;
const TCP_SYN: u8 = 0x02;

/// Whether a dropped segment says something about a probe: its SYN or
/// SYN-ACK, or a segment with payload (the request, the response). The
/// teardown of an earlier probe to the same pod (FINs, RSTs and bare ACKs
/// meeting a closed socket) is not, and would pass the destination filter.
#[inline(always)]
fn telling(ip_payload: u32, tcp: &[u8]) -> bool {
    let flags = tcp[13];
    let header = ((tcp[12] >> 4) as u32) * 4;
    flags & TCP_SYN != 0 || ip_payload > header
}

#[inline(always)]
fn on_drop(skb: impl SkbAccess, location: u64, reason: u32, mode: u8) {
    // While no probe awaits its answer: one load. (A tracked socket that
    // has been answered, such as the kubelet's long-lived connections to
    // the API server, which share its comm, is not watched.)
    if !crate::may_hold(crate::tracked_map::DROP_WATCHED) {
        return;
    }
    let off = &config().skb;
    let d = &config().drop;
    let (Some(protocol), Some(head), Some(nh)) =
        (skb.u16_at(d.skb_protocol), skb.u64_at(off.head), skb.u16_at(d.skb_network_header))
    else {
        return;
    };
    if nh == u16::MAX {
        return; // no network header (dropped below IP)
    }
    let at = (head + nh as u64) as *const u8;
    // Everything up to the filter works on the header as read: a packet
    // that is no probe's (nearly all of them) returns before a tuple is
    // built (zeroing one is a byte loop in BPF, a call to memset).
    match u16::from_be(protocol) {
        ETH_P_IP => {
            let Some(room) = DROP_HEADERS.get_ptr_mut(0) else { return };
            // SAFETY: this CPU's slot of a per-CPU array, used by this
            // program alone while it runs.
            let h = unsafe { &mut *room };
            if unsafe { bpf_probe_read_kernel_buf(at, &mut h[..V4_READ]) }.is_err() {
                return;
            }
            if h[0] >> 4 != 4 || h[9] != IPPROTO_TCP {
                return;
            }
            let ihl = (h[0] & 15) as u32 * 4;
            let total = u16::from_be_bytes([h[2], h[3]]) as u32;
            let tcp_at = if ihl == 20 {
                20
            } else {
                let options = unsafe { at.add((ihl & 0x3f) as usize) };
                if unsafe { bpf_probe_read_kernel_buf(options, &mut h[V4_TCP_AFTER_OPTIONS..V4_TCP_AFTER_OPTIONS + 14]) }.is_err() {
                    return;
                }
                V4_TCP_AFTER_OPTIONS
            };
            // SAFETY: 14 bytes at 20 or 40 of the 64-byte room.
            let tcp = unsafe { &*(h.as_ptr().add(tcp_at) as *const [u8; 14]) };
            if !telling(total.saturating_sub(ihl), tcp) {
                return;
            }
            let (saddr, daddr) = ([h[12], h[13], h[14], h[15]], [h[16], h[17], h[18], h[19]]);
            let (sport, dport) = (u16::from_be_bytes([tcp[0], tcp[1]]), u16::from_be_bytes([tcp[2], tcp[3]]));
            // To a probe's destination (the SYN, the request), or from it
            // (the pod's SYN-ACK, its response).
            if !filter_holds(drop_filter_slot_v4(daddr, dport)) && !filter_holds(drop_filter_slot_v4(saddr, sport)) {
                return;
            }
            let mut t = Tuple { family: AF_INET, sport, dport, ..Tuple::default() };
            t.saddr[..4].copy_from_slice(&saddr);
            t.daddr[..4].copy_from_slice(&daddr);
            report(skb.address(), location, reason, &t, mode);
        }
        ETH_P_IPV6 => {
            let Some(room) = DROP_HEADERS.get_ptr_mut(0) else { return };
            // SAFETY: as above.
            let h = unsafe { &mut *room };
            if unsafe { bpf_probe_read_kernel_buf(at, &mut h[..V6_READ]) }.is_err() {
                return;
            }
            // Extension headers before TCP are not followed.
            if h[6] != IPPROTO_TCP {
                return;
            }
            // SAFETY: 14 bytes from 40 of the 64-byte room, and the two
            // addresses at 8 and 24.
            let (tcp, saddr, daddr) = unsafe {
                (
                    &*(h.as_ptr().add(40) as *const [u8; 14]),
                    &*(h.as_ptr().add(8) as *const [u8; 16]),
                    &*(h.as_ptr().add(24) as *const [u8; 16]),
                )
            };
            if !telling(u16::from_be_bytes([h[4], h[5]]) as u32, tcp) {
                return;
            }
            let (sport, dport) = (u16::from_be_bytes([tcp[0], tcp[1]]), u16::from_be_bytes([tcp[2], tcp[3]]));
            if !filter_holds(drop_filter_slot(AF_INET6, daddr, dport)) && !filter_holds(drop_filter_slot(AF_INET6, saddr, sport)) {
                return;
            }
            let t = Tuple { family: AF_INET6, sport, dport, _pad: 0, saddr: *saddr, daddr: *daddr };
            report(skb.address(), location, reason, &t, mode);
        }
        _ => {}
    }
}

/// Sends a drop that passed the filter, with the namespace it died in.
#[inline(never)]
fn report(skb: u64, location: u64, reason: u32, t: &Tuple, mode: u8) {
    let skb = skb as *const u8;
    let d = &config().drop;
    let host = &config().host_namespaces;
    let sk = read_kernel::<u64>(skb, d.skb_sk).unwrap_or(0);
    let dev = read_kernel::<u64>(skb, d.skb_dev).unwrap_or(0);
    // The device's namespace; on the way out before one is chosen (the
    // OUTPUT hook), the socket's.
    let net = if dev != 0 {
        read_kernel::<u64>(dev as *const u8, d.dev_nd_net)
    } else if sk != 0 {
        read_kernel::<u64>(sk as *const u8, host.skc_net)
    } else {
        None
    };
    let netns = net.and_then(|n| read_kernel::<u32>(n as *const u8, host.net_inum)).unwrap_or(0);
    let Some(mut entry) = reserve::<DropEvent>() else { return };
    // SAFETY: room for a DropEvent; every field is written.
    let e = unsafe { &mut *entry.as_mut_ptr() };
    // Names the interface in a fix (rp_filter is per interface); read
    // into the record, not through the stack.
    e.ifname = [0; IFNAMSIZ];
    if dev != 0 && d.dev_name != NO_FIELD {
        let _ = unsafe { bpf_probe_read_kernel_buf((dev as *const u8).add(d.dev_name as usize), &mut e.ifname) };
    }
    e.header = header(kind::PACKET_DROP, mode);
    e.location = location;
    e.sk = sk;
    e.reason = reason;
    e.netns = netns;
    e.tuple = *t;
    submit(entry);
}

/// `TP_PROTO(struct sk_buff *skb, void *location[, enum skb_drop_reason
/// reason[, struct sock *rx_sk]])`: the reason is read only where the
/// kernel passes it (a constant to the verifier, which then never sees
/// the access on older kernels).
#[btf_tracepoint(function = "kfree_skb")]
pub fn btf_tp_kfree_skb(ctx: BtfTracePointContext) -> u32 {
    let reason = if config().drop.has_reason != 0 { ctx.arg::<u64>(2) as u32 } else { NO_FIELD };
    on_drop(TypedSkb(ctx.arg(0)), ctx.arg::<u64>(1), reason, hook_mode::BTF_TRACEPOINT);
    0
}

#[raw_tracepoint(tracepoint = "kfree_skb")]
pub fn raw_tp_kfree_skb(ctx: RawTracePointContext) -> u32 {
    let reason = if config().drop.has_reason != 0 { ctx.arg::<u64>(2) as u32 } else { NO_FIELD };
    on_drop(SkbByHelper(ctx.arg(0)), ctx.arg::<u64>(1), reason, hook_mode::RAW_TRACEPOINT);
    0
}

#[tracepoint(category = "skb", name = "kfree_skb")]
pub fn tp_kfree_skb(ctx: TracePointContext) -> u32 {
    let d = &config().drop;
    let skb = tp_read::<u64>(&ctx, d.tp_skbaddr) as *const u8;
    let reason = if d.tp_reason == NO_FIELD { NO_FIELD } else { tp_read::<u32>(&ctx, d.tp_reason) };
    on_drop(SkbByHelper(skb), tp_read::<u64>(&ctx, d.tp_location), reason, hook_mode::TRACEPOINT);
    0
}

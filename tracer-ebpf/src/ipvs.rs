//! IPVS connection creation (`ip_vs_conn_new` in the ip_vs module).
//!
//! IPVS treats any TCP segment with SYN set, a SYN-ACK included, as a new
//! connection to a virtual service. When a prober's SYN-ACK is addressed to
//! a node address and a source port that is also a NodePort, IPVS creates a
//! connection whose client is the pod and whose virtual address is the
//! prober's own address and port: the reversed probe tuple. Only those are
//! reported.

use aya_ebpf::{macros::kprobe, programs::ProbeContext};
use tracer_common::{AF_INET6, IpvsConnEvent, ReplyKey, hook_mode, kind};

use crate::{
    config, header, read_kernel, reserve, submit,
    tcp::{reply_owner, send_connect_owed, tracked},
};


/// `struct ip_vs_conn *ip_vs_conn_new(const struct ip_vs_conn_param *p,
///   int dest_af, const union nf_inet_addr *daddr, __be16 dport, ...)`
#[kprobe(function = "ip_vs_conn_new")]
pub fn kprobe_ip_vs_conn_new(ctx: ProbeContext) -> u32 {
    let (Some(param), Some(daddr_ptr), Some(dport)) = (
        ctx.arg::<*const u8>(0),
        ctx.arg::<*const u8>(2),
        ctx.arg::<u64>(3),
    ) else {
        return 0;
    };
    let off = &config().ipvs;
    let af = read_kernel::<u16>(param, off.af).unwrap_or(0);
    let addr_len = if af == AF_INET6 { 16 } else { 4 };
    let caddr = read_addr(read_kernel::<*const u8>(param, off.caddr), addr_len);
    let vaddr = read_addr(read_kernel::<*const u8>(param, off.vaddr), addr_len);
    let cport = u16::from_be(read_kernel::<u16>(param, off.cport).unwrap_or(0));
    let vport = u16::from_be(read_kernel::<u16>(param, off.vport).unwrap_or(0));

    let key = ReplyKey { caddr, vaddr, cport, vport, _pad: 0 };
    let Some(skaddr) = reply_owner(&key) else { return 0 };
    // The prober's connect goes out first (it is sent lazily, see tcp.rs).
    if let Some(sock) = tracked(skaddr) {
        send_connect_owed(sock, skaddr as *const u8);
    }
    // Built in place: with the tuple above, a copy on the stack would pass
    // the 512-byte limit.
    let Some(mut entry) = reserve::<IpvsConnEvent>() else { return 0 };
    // SAFETY: room for an IpvsConnEvent; every field is written.
    let e = unsafe { &mut *entry.as_mut_ptr() };
    e.header = header(kind::IPVS_CONN, hook_mode::KPROBE);
    e.af = af;
    e.protocol = read_kernel::<u16>(param, off.protocol).unwrap_or(0);
    e.cport = cport;
    e.vport = vport;
    e.dport = u16::from_be(dport as u16);
    e._pad = 0;
    e.caddr = caddr;
    e.vaddr = vaddr;
    e.daddr = read_addr(Some(daddr_ptr), addr_len);
    submit(entry);
    0
}

/// Reads an `union nf_inet_addr`: 4 bytes for IPv4 (rest zero), 16 for IPv6.
fn read_addr(ptr: Option<*const u8>, len: usize) -> [u8; 16] {
    let mut out = [0u8; 16];
    let Some(ptr) = ptr else { return out };
    if len == 16 {
        out = read_kernel::<[u8; 16]>(ptr, 0).unwrap_or([0; 16]);
    } else if let Some(v4) = read_kernel::<[u8; 4]>(ptr, 0) {
        out[..4].copy_from_slice(&v4);
    }
    out
}

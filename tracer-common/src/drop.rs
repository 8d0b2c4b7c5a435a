//! Dropped packets of tracked probes: the record and the drop hook's
//! destination filter.

use crate::{EventHeader, slot_index, Tuple};

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

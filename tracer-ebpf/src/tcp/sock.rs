//! Reading a socket from `struct sock`: helper reads or BTF-checked loads.

use aya_ebpf::{macros::map, maps::PerCpuArray};
use tracer_common::{AF_INET6, DestKey, NO_FIELD, Tuple, drop_filter_slot};

use crate::{config, read_kernel};

/// How a program reads the socket it was given: through helpers (an
/// untyped address: raw tracepoints, kprobes) or with plain loads (a
/// BTF-typed pointer: tp_btf, fentry).
pub(super) trait SockAccess: Copy {
    /// The socket's address as a number: the tracking key.
    fn address(self) -> u64;
    fn tuple(self) -> Tuple;
    /// `sk_protocol`; `None` where the kernel has no such field.
    fn protocol(self) -> Option<u16>;
    /// `sk_err`; `None` where unknown.
    fn err(self) -> Option<i32>;
    /// `skc_state`.
    fn state(self) -> u8;
    /// The destination's slot in the drop hook's filter.
    fn drop_slot(self) -> u32;
    /// Whether the program may load from BTF-typed pointers.
    fn typed(self) -> bool;
}

/// An untyped socket address: every field through `bpf_probe_read_kernel`
/// (~30-40 ns a call).
#[derive(Clone, Copy)]
pub(super) struct ReadByHelper(pub(super) *const u8);

impl SockAccess for ReadByHelper {
    #[inline(always)]
    fn address(self) -> u64 {
        self.0 as u64
    }
    #[inline(always)]
    fn tuple(self) -> Tuple {
        sock_tuple(self.0)
    }
    #[inline(always)]
    fn protocol(self) -> Option<u16> {
        read_kernel(self.0, config().sock.sk_protocol)
    }
    #[inline(always)]
    fn err(self) -> Option<i32> {
        read_kernel(self.0, config().sock.sk_err)
    }
    #[inline(always)]
    fn state(self) -> u8 {
        read_kernel::<u8>(self.0, config().sock.skc_state).unwrap_or(0)
    }
    #[inline(always)]
    fn drop_slot(self) -> u32 {
        drop_slot_by_helper(self.0)
    }
    #[inline(always)]
    fn typed(self) -> bool {
        false
    }
}

/// [`SockAccess::drop_slot`] through helpers.
#[inline(always)]
fn drop_slot_by_helper(sk: *const u8) -> u32 {
    let key = dest_key_of(sk);
    drop_filter_slot(key.family, &key.daddr, key.dport)
}

/// Where the socket is connected to, read field by field (no whole tuple
/// on the state program's stack).
#[inline(always)]
pub(super) fn dest_key_of(sk: *const u8) -> DestKey {
    let off = &config().sock;
    let mut key = DestKey {
        daddr: [0; 16],
        family: read_kernel::<u16>(sk, off.skc_family).unwrap_or(0),
        dport: u16::from_be(read_kernel::<u16>(sk, off.skc_dport).unwrap_or(0)),
        _pad: 0,
    };
    if key.family == AF_INET6 {
        key.daddr = read_kernel::<[u8; 16]>(sk, off.skc_v6_daddr).unwrap_or([0; 16]);
    } else {
        key.daddr[..4].copy_from_slice(&read_kernel::<[u8; 4]>(sk, off.skc_daddr).unwrap_or([0; 4]));
    }
    key
}

/// A BTF-typed socket pointer (tp_btf, fentry): each field is one load,
/// which the verifier checks against the kernel's BTF (the offsets, taken
/// from that BTF by userspace, are constants to it in `.rodata`) and makes
/// fault-safe.
#[derive(Clone, Copy)]
pub(super) struct LoadDirect {
    pub(super) sk: *const u8,
}

impl SockAccess for LoadDirect {
    #[inline(always)]
    fn address(self) -> u64 {
        pointer_value(self.sk)
    }
    #[inline(always)]
    fn tuple(self) -> Tuple {
        let (sk, off) = (self.sk, &config().sock);
        let mut t = Tuple {
            family: load::<u16>(sk, off.skc_family).unwrap_or(0),
            sport: load::<u16>(sk, off.skc_num).unwrap_or(0),
            dport: u16::from_be(load::<u16>(sk, off.skc_dport).unwrap_or(0)),
            ..Default::default()
        };
        if t.family == AF_INET6 {
            t.saddr = address16(load::<[u64; 2]>(sk, off.skc_v6_rcv_saddr));
            t.daddr = address16(load::<[u64; 2]>(sk, off.skc_v6_daddr));
        } else {
            t.saddr[..4].copy_from_slice(&load::<u32>(sk, off.skc_rcv_saddr).unwrap_or(0).to_ne_bytes());
            t.daddr[..4].copy_from_slice(&load::<u32>(sk, off.skc_daddr).unwrap_or(0).to_ne_bytes());
        }
        t
    }
    #[inline(always)]
    fn protocol(self) -> Option<u16> {
        load(self.sk, config().sock.sk_protocol)
    }
    #[inline(always)]
    fn err(self) -> Option<i32> {
        load(self.sk, config().sock.sk_err)
    }
    #[inline(always)]
    fn state(self) -> u8 {
        load::<u8>(self.sk, config().sock.skc_state).unwrap_or(0)
    }
    #[inline(always)]
    fn drop_slot(self) -> u32 {
        let (sk, off) = (self.sk, &config().sock);
        let family = load::<u16>(sk, off.skc_family).unwrap_or(0);
        let dport = u16::from_be(load::<u16>(sk, off.skc_dport).unwrap_or(0));
        let mut daddr = [0u8; 16];
        if family == AF_INET6 {
            daddr = address16(load::<[u64; 2]>(sk, off.skc_v6_daddr));
        } else {
            daddr[..4].copy_from_slice(&load::<u32>(sk, off.skc_daddr).unwrap_or(0).to_ne_bytes());
        }
        drop_filter_slot(family, &daddr, dport)
    }
    #[inline(always)]
    fn typed(self) -> bool {
        true
    }
}

/// A field of a BTF-typed pointer's struct, loaded directly.
#[inline(always)]
pub(crate) fn load<T: Copy>(base: *const u8, offset: u32) -> Option<T> {
    if offset == NO_FIELD {
        return None;
    }
    // SAFETY: the verifier checks the load against the kernel's BTF and
    // turns it into one that reads 0 instead of faulting.
    Some(unsafe { core::ptr::read_volatile(base.add(offset as usize) as *const T) })
}

#[inline(always)]
fn address16(words: Option<[u64; 2]>) -> [u8; 16] {
    // SAFETY: 16 bytes either way, in memory order.
    unsafe { core::mem::transmute::<[u64; 2], [u8; 16]>(words.unwrap_or([0; 2])) }
}

/// Nesting levels of [`POINTER_SCRATCH`]: process, softirq, hardirq, NMI.
const SCRATCH_LEVELS: usize = 4;

/// A CPU's scratch cells, one per nesting level, and the level in use.
#[repr(C)]
pub struct PointerScratch {
    depth: u64,
    cells: [u64; SCRATCH_LEVELS],
}

/// Where a BTF-typed pointer becomes a number. The verifier allows no
/// arithmetic on such a pointer (the slot hash multiplies it); stored to
/// map memory and loaded back, it is a plain number (privileged programs
/// may store pointers in maps). A helper read of the argument did the same
/// for ~30 ns; this is a few instructions and a per-CPU array lookup (which
/// the verifier inlines from 6.10 on).
#[map]
static POINTER_SCRATCH: PerCpuArray<PointerScratch> = PerCpuArray::with_max_entries(1, 0);

/// `p` as a number, through this CPU's scratch cell for the current
/// nesting depth. A program may be interrupted between the store and the
/// load by another that converts its own pointer, or by itself where the
/// kernel lacks the per-program recursion check (raw tracepoints before
/// 6.1, fentry before 5.12). The interrupting run takes the next cell and
/// puts the depth back as it found it before the interrupted one resumes,
/// so neither sees the other's pointer.
#[inline(always)]
pub(crate) fn pointer_value(p: *const u8) -> u64 {
    let Some(scratch) = POINTER_SCRATCH.get_ptr_mut(0) else { return 0 };
    // SAFETY: this CPU's map value, valid while the program runs; volatile
    // keeps the depth's update around the cell's store and load.
    unsafe {
        let depth_at = &raw mut (*scratch).depth;
        let depth = core::ptr::read_volatile(depth_at);
        core::ptr::write_volatile(depth_at, depth + 1);
        let cell = &raw mut (*scratch).cells[depth as usize % SCRATCH_LEVELS];
        core::ptr::write_volatile(cell as *mut *const u8, p);
        let value = core::ptr::read_volatile(cell);
        core::ptr::write_volatile(depth_at, depth);
        value
    }
}

/// The socket's tuple, from `struct sock_common`.
#[inline(always)]
pub(super) fn sock_tuple(sk: *const u8) -> Tuple {
    let mut t = Tuple::default();
    read_sock_tuple(sk, &mut t);
    t
}

/// Fills `t` (zeroed by the caller) from `struct sock_common`, in place:
/// the IPVS hook writes straight into its ring-buffer record. One read for
/// the ports, family and IPv4 addresses where they share a window (every
/// kernel); IPv6 addresses take a read each.
#[inline(always)]
pub(super) fn read_sock_tuple(sk: *const u8, t: &mut Tuple) {
    let off = &config().sock;
    // A failed window read leaves the tuple zero rather than falling back
    // to the field reads: that fallback on a runtime result doubled the
    // paths the verifier walks after every tuple read.
    let window = if off.tuple_window != NO_FIELD {
        match read_kernel::<[u64; 3]>(sk, off.tuple_window) {
            Some(w) => Some(w),
            None => return,
        }
    } else {
        None
    };
    match window {
        Some(w) => {
            let field = |at: u32, bytes: u32| window_field(&w, at.wrapping_sub(off.tuple_window), bytes);
            t.family = field(off.skc_family, 2) as u16;
            t.sport = field(off.skc_num, 2) as u16;
            t.dport = u16::from_be(field(off.skc_dport, 2) as u16);
            if t.family != AF_INET6 {
                // Addresses are in network order in memory; the window was
                // read as little-endian words (bpfel), so to_le_bytes gives
                // the bytes back in memory order.
                t.saddr[..4].copy_from_slice(&(field(off.skc_rcv_saddr, 4) as u32).to_le_bytes());
                t.daddr[..4].copy_from_slice(&(field(off.skc_daddr, 4) as u32).to_le_bytes());
                return;
            }
        }
        None => {
            t.family = read_kernel::<u16>(sk, off.skc_family).unwrap_or(0);
            t.sport = read_kernel::<u16>(sk, off.skc_num).unwrap_or(0);
            t.dport = u16::from_be(read_kernel::<u16>(sk, off.skc_dport).unwrap_or(0));
        }
    }
    if t.family == AF_INET6 {
        t.saddr = read_kernel::<[u8; 16]>(sk, off.skc_v6_rcv_saddr).unwrap_or([0; 16]);
        t.daddr = read_kernel::<[u8; 16]>(sk, off.skc_v6_daddr).unwrap_or([0; 16]);
    } else {
        let s = read_kernel::<[u8; 4]>(sk, off.skc_rcv_saddr).unwrap_or([0; 4]);
        let d = read_kernel::<[u8; 4]>(sk, off.skc_daddr).unwrap_or([0; 4]);
        t.saddr[..4].copy_from_slice(&s);
        t.daddr[..4].copy_from_slice(&d);
    }
}

/// `bytes` (2 or 4) at byte `at` of the window, which userspace placed so
/// that no field straddles a word (`SockOffsets::find_tuple_window`). Words are
/// picked by branches and fields by shifts, not by indexing the stack with
/// a runtime offset, which verifiers before 5.12 refuse.
#[inline(always)]
fn window_field(w: &[u64; 3], at: u32, bytes: u32) -> u64 {
    let word = match at / 8 {
        0 => w[0],
        1 => w[1],
        _ => w[2],
    };
    let value = word >> ((at % 8) * 8);
    if bytes == 2 { value & 0xffff } else { value & 0xffff_ffff }
}

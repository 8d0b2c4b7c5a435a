//! probe-tracer's kernel programs.
//!
//! One program per hook, and for hooks that have them, one variant per attach
//! mechanism (fentry, kprobe, tracepoint): userspace loads the best variant
//! the running kernel accepts. Everything kernel-specific (struct member
//! offsets, tracepoint field offsets) arrives in the `CONFIG` global, filled
//! in from BTF and tracepoint formats at load time; nothing here assumes one
//! kernel's layout.
//!
//! Filtering happens here, not in userspace: only prober processes' sockets,
//! only IPVS connections that answer a prober socket, only the container
//! runtime's process tree.
#![no_std]
#![no_main]
// Atomic add on a map value (TRACKED_COUNTS): the bpfel target has no atomic
// read-modify-write in core::sync::atomic. The target is built with
// RUSTC_BOOTSTRAP already (build-std), see ../shared/TOOLCHAIN.md.
#![feature(core_intrinsics)]
#![allow(internal_features)]

mod drops;
mod ipvs;
mod process;
mod tcp;

use core::{
    intrinsics::{AtomicOrdering, atomic_xadd},
    ptr::NonNull,
};

use aya_ebpf::{
    bindings::BPF_NOEXIST,
    helpers::{
        bpf_get_current_cgroup_id, bpf_get_current_comm, bpf_get_current_pid_tgid,
        bpf_ktime_get_ns, bpf_probe_read_kernel,
    },
    macros::map,
    maps::{Array, LruHashMap, PerCpuArray, RingBuf, ring_buf::RingBufEntry},
};
use tracer_common::{Config, EventHeader, NO_FIELD, TASK_COMM_LEN, counter, setting};

/// Kernel layout information; userspace overwrites this before load.
#[unsafe(no_mangle)]
static CONFIG: Config = unsafe { core::mem::zeroed() };

/// All events go to userspace through this ring buffer. Its size can be
/// changed at load time (`--ringbuf-size`).
#[map]
static EVENTS: RingBuf = RingBuf::with_byte_size(1 << 20, 0);

/// Drop and overflow counters (see `tracer_common::counter`).
#[map]
static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(counter::COUNT, 0);

/// Values userspace sets after load (see `tracer_common::setting`).
#[map]
static SETTINGS: Array<u32> = Array::with_max_entries(setting::COUNT, 0);

/// How many entries each tracking map holds, or more (an entry the LRU
/// evicts is never subtracted), indexed by [`tracked_map`]. Zero lets a hook
/// skip the lookup: the lookup of an absent key still touches a random
/// bucket of a large table, a cache miss on nearly every call, and these
/// lookups run on every TCP state change, fork, exec or exit on the node
/// while the maps are usually empty (no probe in flight, no runc running).
/// A global (`.bss`, an array map of one value the programs address
/// directly): a count is one load, where an array map's lookup, inlined,
/// was ten instructions, several per run of hooks that every connection
/// on the node pays.
#[unsafe(no_mangle)]
static mut TRACKED_COUNTS: [i64; tracked_map::COUNT as usize] = [0; tracked_map::COUNT as usize];

/// The count of the map `map` (a [`tracked_map`] constant).
#[inline(always)]
fn count_of(map: u32) -> *mut i64 {
    // SAFETY: the index is a constant below COUNT at every call site;
    // only a pointer is formed here, accessed atomically or READ_ONCE.
    unsafe { (&raw mut TRACKED_COUNTS as *mut i64).add((map % tracked_map::COUNT) as usize) }
}

pub(crate) use tracer_common::tracked_map;

pub(crate) const EEXIST: i32 = 17;

/// Adds `delta` to a map's count. The result is unused, so this is a plain
/// BPF atomic add, which kernels before 5.12 (no BPF_FETCH) accept; the
/// bpfel target offers no `AtomicI64::fetch_add`.
#[inline(always)]
fn add_to_count(map: u32, delta: i64) {
    atomic_add(count_of(map), delta);
}

/// A plain BPF atomic add (no fetch) on an aligned i64 in a map value.
#[inline(always)]
fn atomic_add(p: *mut i64, delta: i64) {
    if let Some(p) = NonNull::new(p) {
        // SAFETY: callers pass an aligned i64 that lives as long as its map.
        unsafe { atomic_xadd::<i64, i64, { AtomicOrdering::Relaxed }>(p.as_ptr(), delta) };
    }
}

/// Whether the map may hold anything. A volatile load (READ_ONCE; an
/// aligned 8-byte load is atomic) is enough: an entry is counted before
/// the events that look it up can happen (a socket before its SYN leaves,
/// a process before it runs).
#[inline(always)]
pub(crate) fn may_hold(map: u32) -> bool {
    // SAFETY: an aligned i64 of a global that lives as long as the program.
    (unsafe { core::ptr::read_volatile(count_of(map)) }) > 0
}

/// Inserts or updates, counting only a new key; a failure is counted.
#[inline(always)]
pub(crate) fn insert_counted<K, V>(map: &LruHashMap<K, V>, index: u32, key: &K, value: &V) {
    match map.insert(key, value, BPF_NOEXIST as u64) {
        Ok(()) => add_to_count(index, 1),
        Err(e) if e == -EEXIST => {
            if map.insert(key, value, 0).is_err() {
                bump(counter::MAP_FULL);
            }
        }
        Err(_) => bump(counter::MAP_FULL),
    }
}

/// Removes, counting down only if the key was there, so two CPUs racing to
/// remove one key subtract once.
#[inline(always)]
pub(crate) fn remove_counted<K, V>(map: &LruHashMap<K, V>, index: u32, key: &K) {
    if map.remove(key).is_ok() {
        add_to_count(index, -1);
    }
}

/// Whether `comm` may be in a comm map whose names' first bytes are marked
/// in `first_bytes` (256 entries, filled by userspace). An array lookup the
/// verifier inlines, in front of the hash lookup: on the exec of anything
/// but the runtime (nearly every exec on a node) the hash lookup, cold
/// after the exec, was most of the hook's time.
#[inline(always)]
pub(crate) fn first_byte_may_match(first_bytes: &Array<u8>, comm: &[u8; TASK_COMM_LEN]) -> bool {
    first_bytes.get(comm[0] as u32).is_none_or(|marked| *marked != 0)
}

#[inline(always)]
fn config() -> &'static Config {
    // Volatile so the compiler does not fold the zeroed initialiser into the
    // code: the real values are patched into .rodata at load time.
    unsafe { &*core::ptr::read_volatile(&&CONFIG) }
}

#[inline(always)]
fn setting(index: u32) -> u32 {
    SETTINGS.get(index).copied().unwrap_or(0)
}

#[inline(always)]
fn bump(index: u32) {
    if let Some(slot) = COUNTERS.get_ptr_mut(index) {
        unsafe { *slot += 1 };
    }
}

/// Unread bytes in the ring buffer past which a new record wakes the reader.
const WAKEUP_BATCH_BYTES: u64 = 32 * 1024;

/// Waking the reader for every record costs a context switch per event,
/// which at tens of thousands of probe connections a second competes with
/// the workload itself. Records are committed without a wakeup until a
/// batch has built up; userspace also drains on a short timer, which bounds
/// the latency of a lone verdict.
#[inline(always)]
fn wakeup_flags() -> u64 {
    use aya_ebpf::bindings::{BPF_RB_AVAIL_DATA, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP};
    let avail = EVENTS.query(BPF_RB_AVAIL_DATA as u64);
    if let Some(high) = COUNTERS.get_ptr_mut(counter::RINGBUF_HIGH_WATER) {
        // Per-CPU slot: no atomics needed.
        unsafe {
            if avail > *high {
                *high = avail;
            }
        }
    }
    if avail >= WAKEUP_BATCH_BYTES {
        BPF_RB_FORCE_WAKEUP as u64
    } else {
        BPF_RB_NO_WAKEUP as u64
    }
}

/// Copies `value` into the ring buffer; a full buffer is counted, never silent.
#[inline(always)]
fn emit<T: 'static>(value: &T) {
    if EVENTS.output::<T>(value, wakeup_flags()).is_err() {
        bump(counter::RINGBUF_FULL);
    }
}

/// Commits a record that should reach userspace at once (an OOM kill:
/// userspace reads the victim's cgroup before it disappears).
#[inline(always)]
fn submit_now<T: 'static>(entry: RingBufEntry<T>) {
    entry.submit(aya_ebpf::bindings::BPF_RB_FORCE_WAKEUP as u64);
}

/// Commits a record built in place with [`reserve`].
#[inline(always)]
fn submit<T: 'static>(entry: RingBufEntry<T>) {
    entry.submit(wakeup_flags());
}

/// Reserves room for a `T` in the ring buffer, so large events are built in
/// place instead of on the 512-byte BPF stack. A full buffer is counted.
/// The caller must initialise every byte (start from `T::default()`), then
/// submit.
#[inline(always)]
fn reserve<T: 'static>() -> Option<RingBufEntry<T>> {
    let entry = EVENTS.reserve::<T>(0);
    if entry.is_none() {
        bump(counter::RINGBUF_FULL);
    }
    entry
}

#[inline(always)]
fn header(kind: u16, hook_mode: u8) -> EventHeader {
    header_with_comm(kind, hook_mode, bpf_get_current_comm().unwrap_or_default())
}

/// Writes [`header`] where it will be sent (ring-buffer memory): no
/// 48-byte copy on the program's stack, where the state program has none
/// to spare.
#[inline(always)]
fn fill_header(h: &mut EventHeader, kind: u16, hook_mode: u8) {
    let pid_tgid = bpf_get_current_pid_tgid();
    h.kind = kind;
    h.hook_mode = hook_mode;
    h._pad0 = 0;
    h.pid = (pid_tgid >> 32) as u32;
    h.tid = pid_tgid as u32;
    h._pad1 = 0;
    h.ts_ns = unsafe { bpf_ktime_get_ns() };
    h.cgroup_id = unsafe { bpf_get_current_cgroup_id() };
    // SAFETY: the helper writes at most the 16 bytes given, NUL-padded.
    let ret = unsafe {
        aya_ebpf::helpers::generated::bpf_get_current_comm(
            h.comm.as_mut_ptr() as *mut aya_ebpf::cty::c_void,
            TASK_COMM_LEN as u32,
        )
    };
    if ret != 0 {
        h.comm = [0; TASK_COMM_LEN];
    }
}

/// [`header`] with the comm given.
#[inline(always)]
fn header_with_comm(kind: u16, hook_mode: u8, comm: [u8; TASK_COMM_LEN]) -> EventHeader {
    EventHeader { cgroup_id: unsafe { bpf_get_current_cgroup_id() }, ..prober_header(kind, hook_mode, comm) }
}

/// The header of a prober's connect: the comm was read for the prober
/// check (copied once per connect, not twice), and the cgroup is left 0.
/// Probe verdicts name the pod by its address; the prober's own cgroup
/// (the kubelet's) says nothing about it, and reading it cost every probe.
#[inline(always)]
fn prober_header(kind: u16, hook_mode: u8, comm: [u8; TASK_COMM_LEN]) -> EventHeader {
    let pid_tgid = bpf_get_current_pid_tgid();
    EventHeader {
        kind,
        hook_mode,
        _pad0: 0,
        pid: (pid_tgid >> 32) as u32,
        tid: pid_tgid as u32,
        _pad1: 0,
        ts_ns: unsafe { bpf_ktime_get_ns() },
        cgroup_id: 0,
        comm,
    }
}

/// Reads a `T` at `base + offset` from kernel memory; `None` when the kernel
/// lacks the field or the read faults.
#[inline(always)]
fn read_kernel<T>(base: *const u8, offset: u32) -> Option<T> {
    if offset == NO_FIELD || base.is_null() {
        return None;
    }
    unsafe { bpf_probe_read_kernel(base.add(offset as usize) as *const T).ok() }
}

/// Reads a tracepoint record field at an offset taken from its format file;
/// the default value when the running kernel's tracepoint lacks the field.
#[inline(always)]
fn tp_read<T: Default>(ctx: &aya_ebpf::programs::TracePointContext, offset: u32) -> T {
    if offset == NO_FIELD {
        return T::default();
    }
    unsafe { ctx.read_at::<T>(offset as usize).unwrap_or_default() }
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";

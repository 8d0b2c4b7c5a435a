//! Which sockets are tracked: the slots and maps that hold a prober's
//! socket (and, for the IPVS hook, its reply's key) from its connect until
//! tracking stops, and the checks that decide a connect is a prober's.

use aya_ebpf::{
    cty::c_void,
    helpers::generated as helper,
    macros::map,
    maps::{Array, LruHashMap, PerCpuArray},
};
use tracer_common::{
    NO_FIELD, ProbeSlot, ProbeSock, REPLY_SLOT_BITS, ReplyKey, TASK_COMM_LEN, Tuple, kind, probe_sock,
    setting as settings, slot_index,
};

use crate::{config, insert_counted, prober_header, may_hold, read_kernel, remove_counted, setting, tracked_map};
use super::sock::load;

/// Prober connections in flight (connected, not yet ESTABLISHED or closed)
/// that the maps below can hold: a node's probes number in the hundreds
/// (pods x probes), each in flight for at most its timeout. The memory is
/// allocated at load and charged to the tracer's cgroup.
const PROBES_IN_FLIGHT_MAX: u32 = 16384;

/// Tracked prober sockets, by `struct sock` address. LRU so an unseen close
/// can never fill it.
#[map]
static PROBE_SOCKS: LruHashMap<u64, ProbeSock> = LruHashMap::with_max_entries(PROBES_IN_FLIGHT_MAX, 0);

/// Tracked prober sockets by the 4-tuple their *reply* carries, for the IPVS
/// hook: an IPVS connection with this client/virtual pair took a reply.
/// Behind `PROBE_REPLY_SLOTS`: only replies whose slot is taken are here.
#[map]
static PROBE_REPLIES: LruHashMap<ReplyKey, u64> = LruHashMap::with_max_entries(PROBES_IN_FLIGHT_MAX, 0);

// PROBE_REPLY_SLOTS does for the reply keys what PROBE_SLOTS does for the
// sockets: on a node whose IPVS hook is attached, every prober connection
// made its reply visible with an LRU insert at connect and a delete at
// ESTABLISHED: 23 % of the prober path's BPF time (bpf_stats in the 6.12 VM
// under TCG; with the slots, 23.9 -> 19.7 us per connection there). A slot
// is found by hashing the key, holds the key and the socket, and is
// claimed like a socket slot; a reply whose slot is taken goes to the map.

/// One slot of `PROBE_REPLY_SLOTS`.
#[repr(C)]
struct ReplySlot {
    key: ReplyKey,
    /// The socket whose reply this is; 0 when free.
    skaddr: u64,
    /// Claims, changed only by atomic adds (see [`claim_slot`]).
    claims: i64,
}

#[map]
static PROBE_REPLY_SLOTS: Array<ReplySlot> = Array::with_max_entries(1 << REPLY_SLOT_BITS, 0);

/// The reply key's slot ([`ReplyKey::slot`]).
#[inline(always)]
fn reply_slot_of(key: &ReplyKey) -> Option<&'static mut ReplySlot> {
    // SAFETY: a map value, valid while the program runs.
    PROBE_REPLY_SLOTS.get_ptr_mut(key.slot()).map(|p| unsafe { &mut *p })
}

/// The tracked socket whose reply has this key, for the IPVS hook.
#[inline(always)]
pub(crate) fn reply_owner(key: &ReplyKey) -> Option<u64> {
    if let Some(slot) = reply_slot_of(key)
        && slot.skaddr != 0
        && slot.key.same_as(key)
    {
        return Some(slot.skaddr);
    }
    if !may_hold(tracked_map::PROBE_REPLIES) {
        return None;
    }
    // SAFETY: a map value, valid while the program runs.
    unsafe { PROBE_REPLIES.get(key) }.copied()
}

// PROBE_SLOTS is a direct-mapped cache in front of `PROBE_SOCKS`: one
// 72-byte slot ([`ProbeSlot`]) holds the socket's address and its
// [`ProbeSock`], so a healthy probe's insert, lookup and delete each touch
// one or two cache lines instead of a hash bucket, an element and the LRU
// lists (bpf_stats, bare 6.18: 2.4 instead of 3.0 us per prober
// connection). A socket whose slot is taken goes to `PROBE_SOCKS` as
// before; lookups try the slot first. Slots are claimed with atomic adds
// on `claims` (see [`claim_slot`]).

const PROBE_SLOT_BITS: u32 = 12;
const PROBE_SLOTS_COUNT: u32 = 1 << PROBE_SLOT_BITS;

#[map]
static PROBE_SLOTS: Array<ProbeSlot> = Array::with_max_entries(PROBE_SLOTS_COUNT, 0);

/// The slot for a socket address.
#[inline(always)]
fn slot_of(skaddr: u64) -> Option<&'static mut ProbeSlot> {
    let index = slot_index(skaddr, PROBE_SLOT_BITS);
    // SAFETY: a map value, valid while the program runs.
    PROBE_SLOTS.get_ptr_mut(index % PROBE_SLOTS_COUNT).map(|p| unsafe { &mut *p })
}

/// Claims a free slot, or reports that another CPU claimed it first (one
/// protocol for socket and reply slots, on their `claims` counter).
/// Without compare-and-exchange (BPF has it from 5.12 only), the claim is
/// an atomic add followed by a read of the same counter: the one claimant
/// that reads 1 owns the slot until it releases it; anyone reading more
/// backs off and takes its claim back. Two claimants can both back off,
/// never both win, since the winner keeps its claim until release.
#[inline(always)]
fn claim_slot(claims: &mut i64) -> bool {
    let claims = claims as *mut i64;
    crate::atomic_add(claims, 1);
    // SAFETY: an aligned i64 in a map value; READ_ONCE.
    if unsafe { core::ptr::read_volatile(claims) } == 1 {
        return true;
    }
    crate::atomic_add(claims, -1);
    false
}

/// Gives up a claimed slot: its owner is cleared first, so the slot is
/// never free with another's socket in it.
#[inline(always)]
fn release_slot(skaddr: &mut u64, claims: &mut i64) {
    *skaddr = 0;
    crate::atomic_add(claims as *mut i64, -1);
}

/// The current task's comm if it is a prober's (kept for the connect
/// record's header, so the comm is copied once per connect). Every connect
/// on the node asks. `typed`: the program may load from BTF-typed
/// pointers (tp_btf, fentry), which read the comm in place.
#[inline(always)]
pub(super) fn prober_comm(typed: bool) -> Option<[u8; TASK_COMM_LEN]> {
    let comms = &config().prober_comms;
    let words = if typed && comms.task_comm != NO_FIELD {
        // Two loads from the task: the helper's copy (strscpy_pad) was
        // most of what a non-prober connect cost the state program.
        // SAFETY: returns the current task, a trusted typed pointer.
        let task = unsafe { helper::bpf_get_current_task_btf() } as *const u8;
        [load::<u64>(task, comms.task_comm)?, load::<u64>(task, comms.task_comm + 8)?]
    } else {
        let mut words = [0u64; 2];
        // SAFETY: the helper writes at most the 16 bytes given.
        let ret = unsafe { helper::bpf_get_current_comm(words.as_mut_ptr() as *mut c_void, TASK_COMM_LEN as u32) };
        if ret != 0 {
            return None;
        }
        words
    };
    for name in comms.names.iter().take(comms.count as usize) {
        if name.words[0] == words[0] & name.mask[0] && name.words[1] == words[1] & name.mask[1] {
            // The name itself: what follows its NUL in the task is not sent.
            // SAFETY: two u64 are 16 bytes, any bit pattern a valid [u8; 16].
            return Some(unsafe { core::mem::transmute::<[u64; 2], [u8; TASK_COMM_LEN]>(name.words) });
        }
    }
    None
}

/// Whether the current task, whose comm is a prober's, is the host's: in
/// the host's pid namespace, connecting a socket of the host's network
/// namespace. A container can name a process `kubelet`; its connections
/// must not become probes (nor push the real kubelet's out of the maps).
/// Runs only after a comm matched: a few helper calls per probe.
#[inline(always)]
pub(super) fn in_host_namespaces(skaddr: u64) -> bool {
    let host = &config().host_namespaces;
    if host.pidns_ino == 0 {
        return true;
    }
    let mut ids = aya_ebpf::bindings::bpf_pidns_info { pid: 0, tgid: 0 };
    // SAFETY: the helper writes at most size_of(ids) bytes into ids.
    let in_pidns = unsafe {
        helper::bpf_get_ns_current_pid_tgid(
            host.pidns_dev,
            host.pidns_ino,
            &mut ids,
            core::mem::size_of::<aya_ebpf::bindings::bpf_pidns_info>() as u32,
        )
    } == 0;
    if !in_pidns {
        return false;
    }
    let Some(net) = read_kernel::<u64>(skaddr as *const u8, host.skc_net) else { return true };
    read_kernel::<u32>(net as *const u8, host.net_inum).is_none_or(|inum| inum == host.netns_ino)
}

/// The tracked socket at `skaddr`, if it is one.
#[inline(always)]
pub(crate) fn tracked(skaddr: u64) -> Option<&'static mut ProbeSock> {
    tracked_at(|| skaddr).map(|(_, sock)| sock)
}

/// [`tracked`] for an address that costs something to get (a BTF-typed
/// pointer's): it is got only when anything is tracked at all.
#[inline(always)]
pub(super) fn tracked_at(address: impl FnOnce() -> u64) -> Option<(u64, &'static mut ProbeSock)> {
    // Each structure is looked at only when it holds something: while
    // probes are in flight the slots nearly always do, the map (sockets
    // whose slot was taken) nearly never, and a miss in either is a cache
    // miss on a random line.
    let in_slots = may_hold(tracked_map::PROBE_SLOTS);
    if !in_slots && !may_hold(tracked_map::PROBE_SOCKS) {
        return None;
    }
    let skaddr = address();
    // A free slot holds 0: no address may match it.
    if skaddr == 0 {
        return None;
    }
    if in_slots
        && let Some(slot) = slot_of(skaddr)
        && slot.skaddr == skaddr
    {
        return Some((skaddr, &mut slot.sock));
    }
    if !may_hold(tracked_map::PROBE_SOCKS) {
        return None;
    }
    // SAFETY: a map value, valid while the program runs; concurrent updates
    // of `flags` can at worst report a connect twice, which userspace merges.
    PROBE_SOCKS.get_ptr_mut(&skaddr).map(|p| (skaddr, unsafe { &mut *p }))
}

/// Starts tracking a prober's socket at its connect, keeping the connect
/// record's header (this is the prober's context) for later. A function of
/// its own (a BPF-to-BPF call, once per prober connect): its 104-byte
/// value, inlined into the raw state program, put that over 512 bytes of
/// stack.
#[inline(never)]
pub(super) fn track(skaddr: u64, mode: u8, comm: [u8; TASK_COMM_LEN], drop_slot: u32) {
    // Built in a per-CPU room, not on the stack: there, with its copies,
    // this frame took the raw state program past 512 bytes along its call
    // chain on 6.1. A connect runs in its process's context, so nothing
    // else on this CPU uses the room meanwhile.
    let Some(room) = NEW_PROBE_SOCK.get_ptr_mut(0) else { return };
    // SAFETY: this CPU's slot of a per-CPU array.
    let sock = unsafe { &mut *room };
    sock.connect = prober_header(kind::TCP_CONNECT, mode, comm);
    sock.flags = 0;
    sock.first_rx_len = 0;
    sock.established_ts_ns = 0;
    sock.first_rx_ts_ns = 0;
    sock.drop_slot = drop_slot;
    sock._pad = 0;
    sock.rx_head = [0; tracer_common::RX_HEAD_LEN];
    // Its destination passes the drop hook's filter until it is answered
    // or closed. (An entry the LRU evicts, or one replaced in the map,
    // keeps its count: a stale slot costs a false candidate, never a
    // missed drop.)
    crate::drops::watch(drop_slot);
    if let Some(slot) = slot_of(skaddr) {
        if slot.skaddr == skaddr {
            // A missed close left this address here: the new attempt
            // replaces it, as in the map.
            crate::drops::unwatch(&mut slot.sock);
            slot.sock = *sock;
            return;
        }
        if slot.skaddr == 0 && claim_slot(&mut slot.claims) {
            slot.sock = *sock;
            slot.skaddr = skaddr;
            crate::add_to_count(tracked_map::PROBE_SLOTS, 1);
            return;
        }
    }
    // An existing key is the address of a socket whose close was missed: a
    // new attempt replaces it.
    insert_counted(&PROBE_SOCKS, tracked_map::PROBE_SOCKS, &skaddr, sock);
}

#[map]
static NEW_PROBE_SOCK: PerCpuArray<ProbeSock> = PerCpuArray::with_max_entries(1, 0);

/// Makes the socket's reply visible to the IPVS hook. Without a source port
/// (tracepoint path before the port is bound) there is nothing to match;
/// without the IPVS hook there is nobody to match it. A function of its
/// own, as is [`forget_reply`]: their 40-byte keys in the state program's
/// tracked half put its frame past what 5.10 allows along a call chain.
#[inline(never)]
pub(super) fn track_reply(skaddr: u64, tuple: &Tuple) {
    if tuple.sport == 0 || setting(settings::IPVS_HOOKED) == 0 {
        return;
    }
    let key = reply_key(tuple);
    if let Some(slot) = reply_slot_of(&key) {
        // The same socket connecting again (a missed close) keeps its slot.
        if slot.skaddr == skaddr || (slot.skaddr == 0 && claim_slot(&mut slot.claims)) {
            slot.key = key;
            slot.skaddr = skaddr;
            return;
        }
    }
    insert_counted(&PROBE_REPLIES, tracked_map::PROBE_REPLIES, &key, &skaddr);
}

/// Stops tracking a socket: its slot or map entry, and its reply key
/// unless that went at ESTABLISHED already.
#[inline(always)]
pub(super) fn untrack(skaddr: u64, tuple: &Tuple, sock: &mut ProbeSock) {
    // Before the slot is released: another CPU may claim it.
    crate::drops::unwatch(sock);
    let flags = sock.flags;
    match slot_of(skaddr) {
        Some(slot) if slot.skaddr == skaddr => {
            release_slot(&mut slot.skaddr, &mut slot.claims);
            crate::add_to_count(tracked_map::PROBE_SLOTS, -1);
        }
        _ => remove_counted(&PROBE_SOCKS, tracked_map::PROBE_SOCKS, &skaddr),
    }
    if flags & probe_sock::ESTABLISHED != 0 {
        crate::add_to_count(tracked_map::ESTABLISHED_PROBES, -1);
    } else {
        forget_reply(skaddr, tuple);
    }
}

/// IPVS can take only a reply that opens a connection (a SYN-ACK): once
/// the socket leaves SYN-SENT its reply key is of no use.
#[inline(never)]
pub(super) fn forget_reply(skaddr: u64, tuple: &Tuple) {
    if tuple.sport != 0 && setting(settings::IPVS_HOOKED) != 0 {
        untrack_reply(skaddr, &reply_key(tuple));
    }
}

#[inline(always)]
fn untrack_reply(skaddr: u64, key: &ReplyKey) {
    match reply_slot_of(key) {
        Some(slot) if slot.skaddr == skaddr && slot.key.same_as(key) => {
            release_slot(&mut slot.skaddr, &mut slot.claims);
        }
        _ if may_hold(tracked_map::PROBE_REPLIES) => remove_counted(&PROBE_REPLIES, tracked_map::PROBE_REPLIES, key),
        _ => {}
    }
}

#[inline(always)]
fn reply_key(tuple: &Tuple) -> ReplyKey {
    ReplyKey {
        caddr: tuple.daddr,
        vaddr: tuple.saddr,
        cport: tuple.dport,
        vport: tuple.sport,
        _pad: 0,
    }
}

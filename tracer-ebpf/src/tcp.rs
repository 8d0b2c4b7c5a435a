//! Prober TCP connections: connect, state changes, SYN retransmits, resets,
//! and segments arriving in SYN-SENT.
//!
//! A socket is *tracked* from the moment a prober process (comm among
//! `Config::prober_comms`) connects it until it closes without connecting,
//! or, once ESTABLISHED, until its first close by either side: a kubelet
//! probe is one short connection, and what happens after the handshake
//! (the request acknowledged, the first response byte and its status line,
//! who closed and how) says which phase failed. Every later hook fires in
//! softirq or timer context where `comm` means nothing, so they filter on
//! the tracked-socket map instead.
//!
//! The connect is reported lazily (see [`ProbeSock`]): a probe that
//! connected is one record, sent at its first close ([`TcpClosedEvent`]),
//! with the prober's pid, comm and connect time kept in the map since the
//! connect; a healthy one is only counted when no one reads that record.
//! Anything else about the socket (a retransmit, a reset, IPVS taking its
//! SYN-ACK, a close before connecting) first sends the connect record, so
//! userspace sees the same sequence as if it had been sent at once, only
//! later.

use aya_ebpf::{
    cty::c_void,
    helpers::{bpf_ktime_get_ns, generated as helper},
    macros::{btf_tracepoint, fentry, kprobe, map, raw_tracepoint, tracepoint},
    maps::{Array, LruHashMap, PerCpuArray, PerCpuHashMap},
    programs::{BtfTracePointContext, FEntryContext, ProbeContext, RawTracePointContext, TracePointContext},
};
use tracer_common::{
    DestKey, EventHeader, NO_FIELD, PROBE_OPEN_MAX_NS, ProbeSlot, ProbeSock, REPLY_SLOT_BITS, ReplyKey, SockTracepointOffsets,
    AF_INET6, TASK_COMM_LEN, TcpClosedEvent, TcpEvent, Tuple, drop_filter_slot, hook_mode, kind, probe_sock, setting as settings,
    slot_index,
    tcp_state::{TCP_CLOSE, TCP_ESTABLISHED, TCP_SYN_RECV, TCP_SYN_SENT},
};

use crate::{
    config, insert_counted, prober_header, may_hold, read_kernel,
    remove_counted, reserve, setting, submit, tp_read, tracked_map,
};

/// An all-zero tuple to start a record from (a static, not a stack copy).
static NO_TUPLE: Tuple = Tuple { family: 0, sport: 0, dport: 0, _pad: 0, saddr: [0; 16], daddr: [0; 16] };
const IPPROTO_TCP: u16 = 6;
const HTTP_PREFIX: [u8; 5] = *b"HTTP/";
const ECONNRESET: i32 = 104;
const ECONNREFUSED: i32 = 111;

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

/// Destinations a node's probes go to: pods x probes, in the hundreds.
const PROBE_DESTINATIONS_MAX: u32 = 4096;

/// Healthy probes by destination, counted here instead of sent when
/// userspace wants no record of them (`setting::ESTABLISHED_COUNTED`): a
/// healthy probe then costs no ring-buffer record and no userspace work.
/// Per CPU, so the count needs no atomic and a destination probed from
/// several CPUs does not bounce a cache line; userspace sums the CPUs. A
/// full map falls back to sending the record.
#[map]
static PROBE_ESTABLISHED: PerCpuHashMap<DestKey, u64> =
    PerCpuHashMap::with_max_entries(PROBE_DESTINATIONS_MAX, 0);

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
fn prober_comm(typed: bool) -> Option<[u8; TASK_COMM_LEN]> {
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
fn in_host_namespaces(skaddr: u64) -> bool {
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
fn tracked_at(address: impl FnOnce() -> u64) -> Option<(u64, &'static mut ProbeSock)> {
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
fn track(skaddr: u64, mode: u8, comm: [u8; TASK_COMM_LEN], drop_slot: u32) {
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
fn track_reply(skaddr: u64, tuple: &Tuple) {
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
fn untrack(skaddr: u64, tuple: &Tuple, sock: &mut ProbeSock) {
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
fn forget_reply(skaddr: u64, tuple: &Tuple) {
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

/// Writes every field of a TcpEvent in ring-buffer memory (built in place:
/// the fentry and kprobe paths would otherwise exceed the 512-byte stack).
#[inline(always)]
fn write_tcp_event(e: &mut TcpEvent, header: &EventHeader, skaddr: u64, tuple: &Tuple, old: u8, new: u8) {
    e.header = *header;
    e.skaddr = skaddr;
    e.tuple = *tuple;
    e.oldstate = old;
    e.newstate = new;
    e._pad = [0; 6];
}

#[inline(always)]
fn send(header: &EventHeader, skaddr: u64, tuple: &Tuple, old: u8, new: u8) {
    let Some(mut entry) = reserve::<TcpEvent>() else { return };
    // SAFETY: reserve returned room for a TcpEvent; write_tcp_event sets it all.
    write_tcp_event(unsafe { &mut *entry.as_mut_ptr() }, header, skaddr, tuple, old, new);
    submit(entry);
}

/// [`send`] with a header of the current context, written in place.
#[inline(always)]
fn send_new(kind: u16, mode: u8, skaddr: u64, tuple: &Tuple, old: u8, new: u8) {
    let Some(mut entry) = reserve::<TcpEvent>() else { return };
    // SAFETY: reserve returned room for a TcpEvent; every field is set.
    let e = unsafe { &mut *entry.as_mut_ptr() };
    crate::fill_header(&mut e.header, kind, mode);
    e.skaddr = skaddr;
    e.tuple = *tuple;
    e.oldstate = old;
    e.newstate = new;
    e._pad = [0; 6];
    submit(entry);
}

/// Sends what is still owed about a tracked socket before any other record
/// about it: the connect, then a SYN-ACK seen in SYN-SENT.
#[inline(always)]
fn send_owed(sock: &mut ProbeSock, skaddr: u64, tuple: &Tuple) {
    if sock.flags & probe_sock::CONNECT_REPORTED == 0 {
        sock.flags |= probe_sock::CONNECT_REPORTED;
        send(&sock.connect, skaddr, tuple, TCP_SYN_SENT, TCP_SYN_SENT);
    }
    if sock.flags & probe_sock::SYNACK_PENDING != 0 {
        sock.flags &= !probe_sock::SYNACK_PENDING;
        send_new(kind::TCP_SYN_SENT_RCV, sock.connect.hook_mode, skaddr, tuple, TCP_SYN_SENT, TCP_SYN_SENT);
    }
}

/// [`send_owed`]'s first half, built in place from the socket, for the IPVS
/// hook, whose stack has no room for a tuple. A pending SYN-ACK is left for
/// the TCP hooks: IPVS taking a SYN-ACK means the socket did not get it.
#[inline(always)]
pub(crate) fn send_connect_owed(sock: &mut ProbeSock, sk: *const u8) {
    if sock.flags & probe_sock::CONNECT_REPORTED != 0 {
        return;
    }
    sock.flags |= probe_sock::CONNECT_REPORTED;
    let Some(mut entry) = reserve::<TcpEvent>() else { return };
    // SAFETY: room for a TcpEvent; write_tcp_event sets it all, then the
    // tuple is read over the zeroed one.
    let e = unsafe { &mut *entry.as_mut_ptr() };
    write_tcp_event(e, &sock.connect, sk as u64, &NO_TUPLE, TCP_SYN_SENT, TCP_SYN_SENT);
    read_sock_tuple(sk, &mut e.tuple);
    submit(entry);
}

/// A state change of a tracked socket. `reset`: the peer reset it (raw
/// tracepoint path, [`reset_by_peer`]), reported before the state change.
/// Reaching ESTABLISHED sends nothing unless something was reported
/// already: the socket is followed to its first close, which reports the
/// connect with it. Taken here, not by a second call sending what is owed,
/// so the raw program inlines the owed records once: twice put it over the
/// 512-byte stack on 6.1's verifier.
#[inline(always)]
fn on_tracked_state(sock: &mut ProbeSock, skaddr: u64, tuple: &Tuple, old: u8, new: u8, mode: u8, reset: bool) {
    let established = old == TCP_SYN_SENT && new == TCP_ESTABLISHED;
    if established {
        sock.established_ts_ns = unsafe { bpf_ktime_get_ns() };
    }
    // Nothing reported yet and connected: the close will say it all.
    if !established || sock.flags & probe_sock::CONNECT_REPORTED != 0 {
        send_owed(sock, skaddr, tuple);
        if reset {
            send_new(kind::TCP_RESET, mode, skaddr, tuple, 0, 0);
        }
        send_new(kind::TCP_STATE, mode, skaddr, tuple, old, new);
    }
    if established {
        if sock.flags & probe_sock::CONNECT_REPORTED != 0 {
            sock.flags |= probe_sock::ESTABLISHED_REPORTED;
        }
        // Implied by ESTABLISHED.
        sock.flags &= !probe_sock::SYNACK_PENDING;
        sock.flags |= probe_sock::ESTABLISHED;
        crate::add_to_count(tracked_map::ESTABLISHED_PROBES, 1);
        forget_reply(skaddr, tuple);
        return;
    }
    if old == TCP_SYN_SENT && new == TCP_SYN_RECV {
        crate::add_to_count(tracked_map::SIMULTANEOUS_OPENS, 1);
    } else if old == TCP_SYN_RECV {
        crate::add_to_count(tracked_map::SIMULTANEOUS_OPENS, -1);
    }
    match tracking_after(old, new) {
        Tracking::Keep => {}
        Tracking::Reply => track_reply(skaddr, tuple),
        Tracking::Stop => untrack(skaddr, tuple, sock),
    }
}

/// A followed socket's first close (`new`: FIN_WAIT1 when the prober
/// closed, CLOSE_WAIT when the pod did, CLOSE on a reset), or ESTABLISHED
/// when it has been open too long to be a probe: one record with what the
/// phases need, or, for a healthy probe no one reads the record of, a
/// count. Tracking stops. Its own path from the state hook's entry, with
/// the tuple read here: joined to the pre-ESTABLISHED path it multiplied
/// the states 5.10's verifier walks (minutes under emulation). A function
/// of its own (a BPF-to-BPF call): inlined, its stack added to the state
/// program's went past 512 bytes.
#[inline(never)]
fn report_first_close(sock: &mut ProbeSock, skaddr: u64, new: u8) {
    // An answer the prober has not read yet (the pod closed right after
    // writing it) is still queued. Only with the read hook attached is an
    // unseen response an unread one: without it the head of the queue may
    // be any later segment.
    if sock.flags & probe_sock::RESPONSE_SEEN == 0 && setting(settings::RESPONSE_HOOKED) != 0 {
        take_response(sock, skaddr);
    }
    let sk = skaddr as *const u8;
    let off = &config().tcp_sock;
    let bytes_acked = read_kernel::<u64>(sk, off.bytes_acked).unwrap_or(0);
    let write_seq = read_kernel::<u32>(sk, off.write_seq).unwrap_or(0);
    let unacked = write_seq.wrapping_sub(read_kernel::<u32>(sk, off.snd_una).unwrap_or(write_seq));
    let flags = sock.flags;
    if flags & probe_sock::CONNECT_REPORTED == 0
        && setting(settings::ESTABLISHED_COUNTED) != 0
        && answered_well(sock, bytes_acked, unacked)
    {
        if count_established(&dest_key_of(sk)) {
            untrack(skaddr, &NO_TUPLE, sock);
            return;
        }
    }
    if let Some(mut entry) = reserve::<TcpClosedEvent>() {
        // SAFETY: room for a TcpClosedEvent; every field is written.
        let e = unsafe { &mut *entry.as_mut_ptr() };
        write_tcp_event(&mut e.event, &sock.connect, skaddr, &NO_TUPLE, TCP_ESTABLISHED, new);
        read_sock_tuple(sk, &mut e.event.tuple);
        if e.event.tuple.sport == 0 {
            // A reset released the port (skc_num is 0 by the time the
            // tracepoint fires); inet_sport keeps it.
            e.event.tuple.sport = u16::from_be(read_kernel::<u16>(sk, off.inet_sport).unwrap_or(0));
        }
        e.event.header.kind = kind::TCP_CLOSED;
        e.established_ts_ns = sock.established_ts_ns;
        e.first_rx_ts_ns = sock.first_rx_ts_ns;
        e.closed_ts_ns = unsafe { bpf_ktime_get_ns() };
        e.bytes_acked = bytes_acked;
        e.bytes_received = read_kernel::<u64>(sk, off.bytes_received).unwrap_or(0);
        e.unacked = unacked;
        e.sk_err = read_kernel::<i32>(sk, config().sock.sk_err).unwrap_or(0);
        e.flags = flags;
        e.first_rx_len = sock.first_rx_len;
        e.rx_head = sock.rx_head;
        submit(entry);
    }
    untrack(skaddr, &NO_TUPLE, sock);
}

/// A state change out of ESTABLISHED: a followed probe's first close.
/// Most of the node's state changes are established connections closing:
/// while no probe is followed, one inlined map load.
#[inline(always)]
fn on_leaving_established(skaddr: impl FnOnce() -> u64, new: u8) {
    if !may_hold(tracked_map::ESTABLISHED_PROBES) {
        return;
    }
    if let Some((skaddr, sock)) = tracked_at(skaddr)
        && sock.flags & probe_sock::ESTABLISHED != 0
    {
        report_first_close(sock, skaddr, new);
    }
}

/// Whether a closed probe needs no explaining: it sent nothing (a TCP
/// probe: connecting was the test), or its answer came and is not an HTTP
/// error. Unknown (no received-segment hook, or the status line unread)
/// is not healthy: the record goes to userspace.
#[inline(always)]
fn answered_well(sock: &ProbeSock, bytes_acked: u64, unacked: u32) -> bool {
    // bytes_acked counts the SYN.
    if bytes_acked <= 1 && unacked == 0 {
        return true;
    }
    let read = probe_sock::RESPONSE_SEEN | probe_sock::RESPONSE_READ;
    if setting(settings::RESPONSE_HOOKED) == 0 || sock.flags & read != read {
        return false;
    }
    let slow_ms = u64::from(setting(settings::SLOW_ANSWER_MS));
    if slow_ms != 0 && sock.first_rx_ts_ns.wrapping_sub(sock.established_ts_ns) >= slow_ms * 1_000_000 {
        return false;
    }
    let h = &sock.rx_head;
    let http = h[0] == HTTP_PREFIX[0]
        && h[1] == HTTP_PREFIX[1]
        && h[2] == HTTP_PREFIX[2]
        && h[3] == HTTP_PREFIX[3]
        && h[4] == HTTP_PREFIX[4];
    // "HTTP/1.1 500": the status's first digit; 4xx and 5xx fail a probe.
    !(http && (h[9] == b'4' || h[9] == b'5'))
}

/// Where the socket is connected to, read field by field (no whole tuple
/// on the state program's stack).
#[inline(always)]
fn dest_key_of(sk: *const u8) -> DestKey {
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

/// Counts a healthy probe to its destination; false when the map has no
/// room (the caller sends the record instead).
#[inline(always)]
fn count_established(key: &DestKey) -> bool {
    for _ in 0..2 {
        if let Some(n) = PROBE_ESTABLISHED.get_ptr_mut(key) {
            // This CPU's value, and only the state program writes it, so
            // the add is never contended. It is atomic all the same: on
            // kernels whose raw tracepoints lack the per-program recursion
            // check (upstream before 6.1) a softirq may run the program
            // again between a plain load and store, losing that count.
            crate::atomic_add(n as *mut i64, 1);
            return true;
        }
        // First success to this destination: a new element starts at 0 on
        // every CPU. EEXIST means another CPU added it meanwhile: look again.
        match PROBE_ESTABLISHED.insert(key, &1, aya_ebpf::bindings::BPF_NOEXIST as u64) {
            Ok(()) => return true,
            Err(e) if e == -crate::EEXIST => continue,
            Err(_) => break,
        }
    }
    false
}

/// Anything else about a tracked socket (retransmit, reset).
#[inline(always)]
fn on_tracked_event(sock: &mut ProbeSock, kind: u16, mode: u8, skaddr: u64, tuple: &Tuple, old: u8, new: u8) {
    send_owed(sock, skaddr, tuple);
    send_new(kind, mode, skaddr, tuple, old, new);
}

/// What a state change does to tracking.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Tracking {
    Keep,
    /// Out of SYN-SENT the source port is known: make the reply key
    /// visible to IPVS.
    Reply,
    Stop,
}

/// After a state change before ESTABLISHED (which [`on_tracked_state`]
/// takes itself): stop at CLOSE. Leaving SYN-RECV (a simultaneous open)
/// is final too, ESTABLISHED included: such a socket is not followed, and
/// its later states are not seen (see [`may_concern_tracked`]).
#[inline(always)]
fn tracking_after(old: u8, new: u8) -> Tracking {
    if new == TCP_CLOSE || new == TCP_ESTABLISHED || old == TCP_SYN_RECV {
        Tracking::Stop
    } else if old == TCP_SYN_SENT {
        Tracking::Reply
    } else {
        Tracking::Keep
    }
}

// ---------------------------------------------------------------------------
// Reading a socket from `struct sock`: helper reads or BTF-checked loads.

/// How a program reads the socket it was given: through helpers (an
/// untyped address: raw tracepoints, kprobes) or with plain loads (a
/// BTF-typed pointer: tp_btf, fentry).
trait SockAccess: Copy {
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
struct ReadByHelper(*const u8);

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

/// A BTF-typed socket pointer (tp_btf, fentry): each field is one load,
/// which the verifier checks against the kernel's BTF (the offsets, taken
/// from that BTF by userspace, are constants to it in `.rodata`) and makes
/// fault-safe.
#[derive(Clone, Copy)]
struct LoadDirect {
    sk: *const u8,
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
fn sock_tuple(sk: *const u8) -> Tuple {
    let mut t = Tuple::default();
    read_sock_tuple(sk, &mut t);
    t
}

/// Fills `t` (zeroed by the caller) from `struct sock_common`, in place:
/// the IPVS hook writes straight into its ring-buffer record. One read for
/// the ports, family and IPv4 addresses where they share a window (every
/// kernel); IPv6 addresses take a read each.
#[inline(always)]
fn read_sock_tuple(sk: *const u8, t: &mut Tuple) {
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

// ---------------------------------------------------------------------------
// Hook: tcp_connect (fentry, kprobe; tracepoint fallback in on_set_state).

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

// ---------------------------------------------------------------------------
// Tracepoints. Field offsets come from the tracepoint's format file.

fn tp_tuple(ctx: &TracePointContext, off: &SockTracepointOffsets) -> Tuple {
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

// ---------------------------------------------------------------------------
// Hook: tcp_rcv_space_adjust (tp_btf, raw tracepoint): a process read data
// from an established socket (`tcp_recvmsg` calls it after each segment it
// copies, before it frees the segment). For a followed probe, the first
// such read is the response's first bytes: their time, their length and
// the HTTP status line, read from the segment at the head of the receive
// queue. A response still unread when the socket first closes (the pod's
// FIN came first) is read there instead ([`take_response`] from
// [`report_first_close`]).
//
// Not `tcp:tcp_probe`: that fires for every segment an established socket
// receives (data, bare ACKs, the FIN), and every run is a dispatch paid by
// every connection on the node, prober or not; reads are fewer (see
// docs/benchmarks.md).

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
fn take_response(sock: &mut ProbeSock, skaddr: u64) {
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

//! What a tracked socket's changes send: the owed connect record, state
//! changes, retransmits and resets, and the one record (or count) of a
//! followed probe's first close.

use aya_ebpf::{helpers::bpf_ktime_get_ns, macros::map, maps::PerCpuHashMap};
use tracer_common::{
    DestKey, EventHeader, ProbeSock, TcpClosedEvent, TcpEvent, Tuple, kind, probe_sock,
    setting as settings, tcp_state::{TCP_CLOSE, TCP_ESTABLISHED, TCP_SYN_RECV, TCP_SYN_SENT},
};

use crate::{config, may_hold, read_kernel, reserve, setting, submit, tracked_map};
use super::{
    response::take_response,
    sock::{dest_key_of, read_sock_tuple},
    tracking::{forget_reply, track_reply, tracked_at, untrack},
};

/// An all-zero tuple to start a record from (a static, not a stack copy).
static NO_TUPLE: Tuple = Tuple { family: 0, sport: 0, dport: 0, _pad: 0, saddr: [0; 16], daddr: [0; 16] };
const HTTP_PREFIX: [u8; 5] = *b"HTTP/";

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
pub(super) fn send_new(kind: u16, mode: u8, skaddr: u64, tuple: &Tuple, old: u8, new: u8) {
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
pub(super) fn on_tracked_state(sock: &mut ProbeSock, skaddr: u64, tuple: &Tuple, old: u8, new: u8, mode: u8, reset: bool) {
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
pub(super) fn report_first_close(sock: &mut ProbeSock, skaddr: u64, new: u8) {
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
pub(super) fn on_leaving_established(skaddr: impl FnOnce() -> u64, new: u8) {
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
pub(super) fn on_tracked_event(sock: &mut ProbeSock, kind: u16, mode: u8, skaddr: u64, tuple: &Tuple, old: u8, new: u8) {
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

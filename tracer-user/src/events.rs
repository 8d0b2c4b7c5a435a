//! Ring-buffer records decoded into owned Rust values.
//!
//! These are what the diagnosis logic consumes. They serialise to JSON so a
//! real run can be recorded (`probe-tracer run --record FILE`) and replayed
//! through the same logic in unit tests (`probe-tracer replay FILE`).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde::{Deserialize, Serialize};

pub use crate::loader::Mode;
use tracer_common::{
    ARGS_LEN, DropEvent, EventHeader, ExecEvent, NO_FIELD, ExitEvent, ForkEvent, IpvsConnEvent, OomKillEvent, RX_HEAD_LEN, SignalEvent,
    SyscallFailedEvent, TcpClosedEvent, TcpEvent, Tuple, AF_INET6, hook_mode, kind, probe_sock, read_record, role, syscall,
    tcp_state::{TCP_CLOSE_WAIT, TCP_ESTABLISHED, TCP_SYN_SENT},
};


#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// CLOCK_MONOTONIC nanoseconds (kernel's `bpf_ktime_get_ns`).
    pub ts_ns: u64,
    pub pid: u32,
    pub tid: u32,
    pub comm: String,
    pub cgroup_id: u64,
    /// The mechanism its hook got.
    pub mode: Mode,
    #[serde(flatten)]
    pub body: Body,
}

/// The mechanism of the program that sent a record, from its header.
fn mode_from_raw(raw: u8) -> Mode {
    match raw {
        hook_mode::FENTRY => Mode::Fentry,
        hook_mode::FEXIT => Mode::Fexit,
        hook_mode::KPROBE => Mode::Kprobe,
        hook_mode::RAW_TRACEPOINT => Mode::RawTracepoint,
        hook_mode::BTF_TRACEPOINT => Mode::BtfTracepoint,
        _ => Mode::Tracepoint,
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Body {
    TcpConnect(TcpInfo),
    TcpState(TcpInfo),
    TcpRetransmit(TcpInfo),
    TcpReset(TcpInfo),
    /// A segment (normally the SYN-ACK) reached the socket in SYN-SENT.
    TcpSynSentRcv(TcpInfo),
    /// A connected probe's first close: what its phases need.
    TcpClosed(TcpClose),
    /// A packet that may be a probe's was dropped.
    PacketDrop(PacketDrop),
    IpvsConn(IpvsConn),
    Exec(ExecInfo),
    Fork { child_tid: u32 },
    SyscallFailed { syscall: String, nstype: i32, errno: i32 },
    Exit { exit_code: i32, ns_pid: u32, ppid: u32, group_dead: bool, ns_level: u32, role: Role },
    Signal { sig: i32, errno: i32, code: i32, result: i32, target_pid: u32, target_comm: String },
    OomKill(OomKill),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TcpInfo {
    pub skaddr: u64,
    pub saddr: IpAddr,
    pub sport: u16,
    pub daddr: IpAddr,
    pub dport: u16,
    pub oldstate: u8,
    pub newstate: u8,
}

/// A followed prober connection left ESTABLISHED (`info.newstate`:
/// FIN_WAIT1 when the prober closed, CLOSE_WAIT when the pod did, CLOSE on
/// a reset), or stayed ESTABLISHED too long to be a probe.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TcpClose {
    pub info: TcpInfo,
    pub established_ts_ns: u64,
    /// When the first response byte arrived, if one did and the received-
    /// segment hook saw it.
    pub first_response_ts_ns: Option<u64>,
    /// Bytes the prober wrote (acknowledged or not).
    pub request_bytes: u64,
    /// The pod's kernel acknowledged all of them.
    pub request_acked: bool,
    /// How many it had not acknowledged.
    pub request_unacked: u64,
    /// Bytes the pod sent back.
    pub response_bytes: u64,
    /// The response's first bytes, where the kernel let them be read.
    pub response_head: Option<Vec<u8>>,
    /// `sk_err` at the close (ECONNRESET: the pod reset it).
    pub sk_err: i32,
}

impl TcpClose {
    /// The status of an HTTP/1 status line at the response's start.
    pub fn http_status(&self) -> Option<u16> {
        let head = self.response_head.as_deref()?;
        let rest = head.strip_prefix(b"HTTP/1.")?;
        let code = rest.get(2..5)?;
        if rest.get(1) != Some(&b' ') || !code.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(code).ok()?.parse().ok()
    }

    /// Whether it stayed open past `PROBE_OPEN_MAX_NS` (not a probe).
    pub fn still_open(&self) -> bool {
        self.info.newstate == TCP_ESTABLISHED
    }
}

/// A dropped packet the kernel side's filter let through: its tuple as
/// the packet carried it (matched to a probe by userspace).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PacketDrop {
    pub saddr: IpAddr,
    pub sport: u16,
    pub daddr: IpAddr,
    pub dport: u16,
    /// Kernel address of the code that dropped it.
    pub location: u64,
    /// `enum skb_drop_reason` value; `None` before 5.17.
    pub reason: Option<u32>,
    /// The network namespace's inode (0: unknown).
    pub netns: u32,
    /// `skb->sk` (the prober's socket, on its way out).
    pub sk: u64,
    /// The device it was on (empty: none, or a recording from before
    /// this field). Named by whoever named the device: a pod can.
    #[serde(default)]
    pub interface: String,
}

/// The OOM killer chose a victim. The event's own pid/comm/cgroup are the
/// task that ran the OOM killer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OomKill {
    pub victim_pid: u32,
    /// Empty where the kernel's tracepoint lacks it (before 6.8).
    pub victim_comm: String,
    pub total_vm_kb: u64,
    pub anon_rss_kb: u64,
    pub file_rss_kb: u64,
    pub shmem_rss_kb: u64,
}

/// What the kernel's runtime filter considers a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Not tracked (a container init the tracer did not see start).
    #[default]
    Untracked,
    /// The runtime or one of its stages (runc, runc init).
    Runtime,
    /// The container's command the runtime started.
    Container,
    /// Chosen by the OOM killer.
    OomVictim,
}

impl Role {
    fn from_raw(raw: u32) -> Self {
        match raw {
            role::RUNTIME => Self::Runtime,
            role::CONTAINER => Self::Container,
            role::OOM_VICTIM => Self::OomVictim,
            _ => Self::Untracked,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecInfo {
    pub ppid: u32,
    pub ns_pid: u32,
    pub ns_level: u32,
    pub role: Role,
    pub filename: String,
    /// argv as far as the kernel copied it.
    pub args: Vec<String>,
    /// argv was longer than what the kernel copied: the last element of
    /// `args` may be cut short and later ones are missing.
    #[serde(default)]
    pub args_truncated: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpvsConn {
    pub protocol: u16,
    /// Client: where the packet IPVS took came from (the pod).
    pub caddr: IpAddr,
    pub cport: u16,
    /// Virtual service address and port (the prober's own address and port).
    pub vaddr: IpAddr,
    pub vport: u16,
    /// Real server the packet was sent to.
    pub daddr: IpAddr,
    pub dport: u16,
}

/// Decodes one ring-buffer record into the events it stands for: one,
/// except a [`TcpClosedEvent`] (a connected probe), which also stands for
/// its connect and its ESTABLISHED when those were not reported, as the
/// kernel would have sent them separately. `None` for a short or unknown
/// record (the caller counts those).
pub fn decode(bytes: &[u8]) -> Option<Vec<Event>> {
    let header: EventHeader = read_record(bytes)?;
    if header.kind == kind::TCP_CLOSED {
        return read_record::<TcpClosedEvent>(bytes).map(|e| closed_events(&header, &e));
    }
    decode_one(&header, bytes).map(|body| vec![event(&header, body)])
}

fn closed_events(header: &EventHeader, e: &TcpClosedEvent) -> Vec<Event> {
    let info = tcp_info(&e.event);
    let mut events = Vec::with_capacity(3);
    // Their context is a softirq, which says nothing: the connect's pid
    // and comm stand in, as for any record about a prober socket.
    if e.flags & probe_sock::CONNECT_REPORTED == 0 {
        events.push(event(header, Body::TcpConnect(TcpInfo { oldstate: TCP_SYN_SENT, newstate: TCP_SYN_SENT, ..info })));
    }
    if e.flags & probe_sock::ESTABLISHED_REPORTED == 0 {
        let established = TcpInfo { oldstate: TCP_SYN_SENT, newstate: TCP_ESTABLISHED, ..info };
        events.push(Event { ts_ns: e.established_ts_ns, ..event(header, Body::TcpState(established)) });
    }
    let read = e.flags & probe_sock::RESPONSE_READ != 0;
    let close = TcpClose {
        info,
        established_ts_ns: e.established_ts_ns,
        first_response_ts_ns: (e.flags & probe_sock::RESPONSE_SEEN != 0).then_some(e.first_rx_ts_ns),
        // bytes_acked counts the SYN. Saturating: the counters are the
        // kernel's, and a wrapped sum is no byte count.
        request_bytes: e.bytes_acked.saturating_sub(1).saturating_add(u64::from(e.unacked)),
        request_acked: e.unacked == 0,
        request_unacked: u64::from(e.unacked),
        // bytes_received counts the pod's FIN.
        response_bytes: e.bytes_received.saturating_sub(u64::from(info.newstate == TCP_CLOSE_WAIT)),
        response_head: read.then(|| e.rx_head[..(e.first_rx_len as usize).min(RX_HEAD_LEN)].to_vec()),
        sk_err: e.sk_err,
    };
    events.push(Event { ts_ns: e.closed_ts_ns, ..event(header, Body::TcpClosed(close)) });
    events
}

fn event(header: &EventHeader, body: Body) -> Event {
    Event {
        ts_ns: header.ts_ns,
        pid: header.pid,
        tid: header.tid,
        comm: c_string(&header.comm),
        cgroup_id: header.cgroup_id,
        mode: mode_from_raw(header.hook_mode),
        body,
    }
}

fn decode_one(header: &EventHeader, bytes: &[u8]) -> Option<Body> {
    Some(match header.kind {
        kind::TCP_CONNECT | kind::TCP_STATE | kind::TCP_RETRANSMIT | kind::TCP_RESET
        | kind::TCP_SYN_SENT_RCV => {
            let e: TcpEvent = read_record(bytes)?;
            let info = tcp_info(&e);
            match header.kind {
                kind::TCP_CONNECT => Body::TcpConnect(info),
                kind::TCP_STATE => Body::TcpState(info),
                kind::TCP_RETRANSMIT => Body::TcpRetransmit(info),
                kind::TCP_RESET => Body::TcpReset(info),
                _ => Body::TcpSynSentRcv(info),
            }
        }
        kind::PACKET_DROP => {
            let e: DropEvent = read_record(bytes)?;
            let Tuple { family, sport, dport, saddr, daddr, .. } = e.tuple;
            Body::PacketDrop(PacketDrop {
                saddr: ip(family, &saddr),
                sport,
                daddr: ip(family, &daddr),
                dport,
                location: e.location,
                reason: (e.reason != NO_FIELD).then_some(e.reason),
                netns: e.netns,
                sk: e.sk,
                interface: c_string(&e.ifname),
            })
        }
        kind::IPVS_CONN => {
            let e: IpvsConnEvent = read_record(bytes)?;
            Body::IpvsConn(IpvsConn {
                protocol: e.protocol,
                caddr: ip(e.af, &e.caddr),
                cport: e.cport,
                vaddr: ip(e.af, &e.vaddr),
                vport: e.vport,
                daddr: ip(e.af, &e.daddr),
                dport: e.dport,
            })
        }
        kind::PROC_EXEC => {
            let e: ExecEvent = read_record(bytes)?;
            let copied = (e.args_len as usize).min(ARGS_LEN);
            Body::Exec(ExecInfo {
                ppid: e.ppid,
                ns_pid: e.ns_pid,
                ns_level: e.ns_level,
                role: Role::from_raw(e.role),
                filename: c_string(&e.filename),
                args: split_args(&e.args[..copied]),
                args_truncated: e.args_len as usize > ARGS_LEN,
            })
        }
        kind::PROC_FORK => {
            let e: ForkEvent = read_record(bytes)?;
            Body::Fork { child_tid: e.child_tid }
        }
        kind::SYSCALL_FAILED => {
            let e: SyscallFailedEvent = read_record(bytes)?;
            Body::SyscallFailed {
                syscall: syscall_name(e.syscall).to_string(),
                nstype: e.nstype,
                errno: e.ret.wrapping_neg() as i32,
            }
        }
        kind::PROC_EXIT => {
            let e: ExitEvent = read_record(bytes)?;
            Body::Exit {
                exit_code: e.exit_code,
                ns_pid: e.ns_pid,
                ppid: e.ppid,
                group_dead: e.group_dead != 0,
                ns_level: e.ns_level,
                role: Role::from_raw(e.role),
            }
        }
        kind::SIGNAL => {
            let e: SignalEvent = read_record(bytes)?;
            Body::Signal {
                sig: e.sig,
                errno: e.errno,
                code: e.code,
                result: e.result,
                target_pid: e.target_pid,
                target_comm: c_string(&e.target_comm),
            }
        }
        kind::OOM_KILL => {
            let e: OomKillEvent = read_record(bytes)?;
            Body::OomKill(OomKill {
                victim_pid: e.victim_pid,
                victim_comm: c_string(&e.victim_comm),
                total_vm_kb: e.total_vm_kb,
                anon_rss_kb: e.anon_rss_kb,
                file_rss_kb: e.file_rss_kb,
                shmem_rss_kb: e.shmem_rss_kb,
            })
        }
        _ => return None,
    })
}

pub fn syscall_name(raw: u32) -> &'static str {
    match raw {
        syscall::CLONE => "clone",
        syscall::CLONE3 => "clone3",
        syscall::FORK => "fork",
        syscall::VFORK => "vfork",
        syscall::SETNS => "setns",
        _ => "unknown",
    }
}

fn tcp_info(e: &TcpEvent) -> TcpInfo {
    let Tuple { family, sport, dport, saddr, daddr, .. } = e.tuple;
    TcpInfo {
        skaddr: e.skaddr,
        saddr: ip(family, &saddr),
        sport,
        daddr: ip(family, &daddr),
        dport,
        oldstate: e.oldstate,
        newstate: e.newstate,
    }
}

/// An address as the kernel stored it; IPv4-mapped IPv6 (a dual-stack
/// socket talking IPv4) is shown as IPv4, as `ss` does.
pub fn ip(family: u16, raw: &[u8; 16]) -> IpAddr {
    if family == AF_INET6 {
        let v6 = Ipv6Addr::from(*raw);
        match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        }
    } else {
        IpAddr::V4(Ipv4Addr::new(raw[0], raw[1], raw[2], raw[3]))
    }
}

/// argv as the kernel lays it out: NUL-terminated strings back to back.
fn split_args(raw: &[u8]) -> Vec<String> {
    let raw = raw.strip_suffix(&[0]).unwrap_or(raw);
    if raw.is_empty() {
        return Vec::new();
    }
    raw.split(|&b| b == 0).map(|a| String::from_utf8_lossy(a).into_owned()).collect()
}

/// A NUL-terminated kernel string (comm, filename) as UTF-8, lossily.
pub fn c_string(raw: &[u8]) -> String {
    let end = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
    String::from_utf8_lossy(&raw[..end]).into_owned()
}

/// TCP state names as in include/net/tcp_states.h.
pub fn tcp_state_name(state: u8) -> &'static str {
    use tracer_common::tcp_state::*;
    match state {
        TCP_ESTABLISHED => "ESTABLISHED",
        TCP_SYN_SENT => "SYN_SENT",
        TCP_SYN_RECV => "SYN_RECV",
        TCP_FIN_WAIT1 => "FIN_WAIT1",
        TCP_FIN_WAIT2 => "FIN_WAIT2",
        TCP_TIME_WAIT => "TIME_WAIT",
        TCP_CLOSE => "CLOSE",
        TCP_CLOSE_WAIT => "CLOSE_WAIT",
        TCP_LAST_ACK => "LAST_ACK",
        TCP_LISTEN => "LISTEN",
        TCP_CLOSING => "CLOSING",
        TCP_NEW_SYN_RECV => "NEW_SYN_RECV",
        _ => "UNKNOWN",
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn bytes_of<T>(v: &T) -> Vec<u8> {
        unsafe { std::slice::from_raw_parts(v as *const T as *const u8, size_of::<T>()).to_vec() }
    }

    fn only(decoded: Option<Vec<Event>>) -> Event {
        let mut events = decoded.expect("decodes");
        assert_eq!(events.len(), 1, "{events:?}");
        events.pop().unwrap()
    }

    /// What the kernel sends for a probe that connected, answered `head`
    /// and was closed by the prober, nothing reported before (see
    /// tracer-ebpf's tcp.rs).
    pub(crate) fn closed_record(skaddr: u64, connect_ts_ns: u64, established_ts_ns: u64, head: &[u8]) -> Vec<u8> {
        let mut comm = [0u8; 16];
        comm[..7].copy_from_slice(b"kubelet");
        let mut raw = TcpClosedEvent {
            event: TcpEvent {
                header: EventHeader { kind: kind::TCP_CLOSED, hook_mode: hook_mode::RAW_TRACEPOINT, pid: 42, tid: 43, ts_ns: connect_ts_ns, comm, ..Default::default() },
                skaddr,
                oldstate: 1,
                newstate: 4,
                ..Default::default()
            },
            established_ts_ns,
            first_rx_ts_ns: established_ts_ns + 2_000_000,
            closed_ts_ns: established_ts_ns + 3_000_000,
            bytes_acked: 101,
            bytes_received: 120,
            flags: probe_sock::ESTABLISHED | probe_sock::RESPONSE_SEEN | probe_sock::RESPONSE_READ,
            first_rx_len: 120,
            ..Default::default()
        };
        raw.rx_head[..head.len().min(16)].copy_from_slice(&head[..head.len().min(16)]);
        raw.event.tuple.family = 2;
        raw.event.tuple.sport = 45000;
        raw.event.tuple.dport = 8080;
        raw.event.tuple.saddr[..4].copy_from_slice(&[10, 200, 0, 1]);
        raw.event.tuple.daddr[..4].copy_from_slice(&[10, 200, 1, 2]);
        bytes_of(&raw)
    }

    #[test]
    fn a_closed_record_is_its_connect_its_established_and_its_close() {
        let events = decode(&closed_record(0xffff_8880_0000_1000, 7, 9_000_007, b"HTTP/1.1 500 Int")).unwrap();
        assert_eq!(events.len(), 3, "{events:?}");
        let (connect, established, closed) = (&events[0], &events[1], &events[2]);
        assert_eq!((connect.ts_ns, connect.pid, connect.comm.as_str()), (7, 42, "kubelet"));
        let Body::TcpConnect(c) = connect.body else { panic!("{connect:?}") };
        assert_eq!((c.sport, c.dport, c.oldstate, c.newstate), (45000, 8080, 2, 2));
        assert_eq!(c.daddr, "10.200.1.2".parse::<IpAddr>().unwrap());
        assert_eq!((established.ts_ns, established.pid), (9_000_007, 42));
        let Body::TcpState(s) = established.body else { panic!("{established:?}") };
        assert_eq!((s.skaddr, s.sport, s.oldstate, s.newstate), (c.skaddr, 45000, 2, 1));
        let Body::TcpClosed(ref close) = closed.body else { panic!("{closed:?}") };
        assert_eq!(closed.ts_ns, 12_000_007);
        assert_eq!((close.request_bytes, close.request_acked, close.response_bytes), (100, true, 120));
        assert_eq!(close.first_response_ts_ns, Some(11_000_007));
        assert_eq!(close.http_status(), Some(500));
        assert!(decode(&closed_record(1, 1, 2, b"")[..60]).is_none(), "a short record is rejected");
    }

    #[test]
    fn a_closed_record_with_counters_at_their_limit_does_not_overflow() {
        // Found by the event_decode fuzz target: an overflow panicked in
        // builds with overflow checks and wrapped in release builds.
        let mut raw = closed_record(1, 1, 2, b"");
        let at = core::mem::offset_of!(TcpClosedEvent, bytes_acked);
        raw[at..at + 8].copy_from_slice(&u64::MAX.to_ne_bytes());
        let at = core::mem::offset_of!(TcpClosedEvent, unacked);
        raw[at..at + 4].copy_from_slice(&u32::MAX.to_ne_bytes());
        let Body::TcpClosed(c) = decode(&raw).unwrap().pop().unwrap().body else { panic!() };
        assert_eq!(c.request_bytes, u64::MAX);
        // A return value with no negation (i64::MIN) is no errno either.
        let failed = SyscallFailedEvent { header: EventHeader { kind: kind::SYSCALL_FAILED, ..Default::default() }, ret: i64::MIN, ..Default::default() };
        assert!(decode(&bytes_of(&failed)).is_some());
    }

    #[test]
    fn an_http_status_is_read_only_from_a_status_line() {
        let close = |head: &[u8]| {
            let Body::TcpClosed(c) = decode(&closed_record(1, 1, 2, head)).unwrap().pop().unwrap().body else { panic!() };
            c.http_status()
        };
        assert_eq!(close(b"HTTP/1.0 404 Not"), Some(404));
        assert_eq!(close(b"HTTP/1.1 20"), None);
        assert_eq!(close(b"\0\0\0\x04\0\0\0\0\0"), None, "HTTP/2 frames have no status line");
        assert_eq!(close(b"HTTP/1.1 2x0 OK"), None);
    }

    #[test]
    fn decodes_a_tcp_connect_record() {
        let mut comm = [0u8; 16];
        comm[..7].copy_from_slice(b"kubelet");
        let mut raw = TcpEvent {
            header: EventHeader { kind: kind::TCP_CONNECT, hook_mode: hook_mode::FENTRY, pid: 42, tid: 43, ts_ns: 7, comm, ..Default::default() },
            skaddr: 0xffff_8880_0000_1000,
            ..Default::default()
        };
        raw.tuple.family = 2;
        raw.tuple.sport = 31055;
        raw.tuple.dport = 8080;
        raw.tuple.saddr[..4].copy_from_slice(&[10, 0, 0, 1]);
        raw.tuple.daddr[..4].copy_from_slice(&[10, 0, 1, 2]);
        let ev = only(decode(&bytes_of(&raw)));
        assert_eq!(ev.comm, "kubelet");
        assert_eq!(ev.pid, 42);
        assert_eq!(ev.mode, Mode::Fentry);
        let Body::TcpConnect(info) = ev.body else { panic!("wrong body {ev:?}") };
        assert_eq!(info.saddr, "10.0.0.1".parse::<IpAddr>().unwrap());
        assert_eq!(info.sport, 31055);
        assert_eq!(info.daddr, "10.0.1.2".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn short_or_unknown_records_are_rejected() {
        let raw = TcpEvent::default();
        let bytes = bytes_of(&raw);
        assert!(decode(&bytes[..10]).is_none());
        let unknown = EventHeader { kind: 999, ..Default::default() };
        assert!(decode(&bytes_of(&unknown)).is_none());
    }

    #[test]
    fn decodes_exec_argv() {
        let mut raw = ExecEvent {
            header: EventHeader { kind: kind::PROC_EXEC, pid: 5, ..Default::default() },
            ppid: 4, ns_pid: 5, ns_level: 0, args_len: 0, role: role::RUNTIME, _pad: 0,
            filename: [0; tracer_common::FILENAME_LEN], args: [0; ARGS_LEN],
        };
        let argv = b"runc\0exec\0c1\0true\0";
        raw.args[..argv.len()].copy_from_slice(argv);
        raw.args_len = argv.len() as u32;
        raw.filename[..14].copy_from_slice(b"/usr/sbin/runc");
        let ev = only(decode(&bytes_of(&raw)));
        let Body::Exec(info) = ev.body else { panic!("{ev:?}") };
        assert_eq!(info.args, ["runc", "exec", "c1", "true"]);
        assert_eq!(info.filename, "/usr/sbin/runc");
        assert_eq!(info.role, Role::Runtime);
        assert!(!info.args_truncated);
    }

    #[test]
    fn mapped_ipv6_is_shown_as_ipv4() {
        let mut raw = [0u8; 16];
        raw[10] = 0xff;
        raw[11] = 0xff;
        raw[12..].copy_from_slice(&[192, 0, 2, 1]);
        assert_eq!(ip(10, &raw), "192.0.2.1".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn events_round_trip_through_json() {
        let ev = Event {
            ts_ns: 1, pid: 2, tid: 2, comm: "runc".into(), cgroup_id: 9, mode: Mode::Tracepoint,
            body: Body::SyscallFailed { syscall: "clone3".into(), nstype: 0, errno: 11 },
        };
        let json = serde_json::to_string(&ev).unwrap();
        assert!(json.contains("\"event\":\"syscall_failed\""), "{json}");
        assert_eq!(serde_json::from_str::<Event>(&json).unwrap(), ev);
    }
}

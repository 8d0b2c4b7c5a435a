//! Ring-buffer records decoded into owned Rust values.
//!
//! These are what the diagnosis logic consumes. They serialise to JSON so a
//! real run can be recorded (`probe-tracer run --record FILE`) and replayed
//! through the same logic in unit tests (`probe-tracer replay FILE`).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde::{Deserialize, Serialize};
use tracer_common::{
    ARGS_LEN, EventHeader, ExecEvent, ExitEvent, ForkEvent, IpvsConnEvent, OomKillEvent, SignalEvent,
    SyscallFailedEvent, TcpConnectedEvent, TcpEvent, Tuple, hook_mode, kind, read_record, role, syscall,
};

const AF_INET6: u16 = 10;
const TCP_SYN_SENT: u8 = 2;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// CLOCK_MONOTONIC nanoseconds (kernel's `bpf_ktime_get_ns`).
    pub ts_ns: u64,
    pub pid: u32,
    pub tid: u32,
    pub comm: String,
    pub cgroup_id: u64,
    pub mode: HookMode,
    #[serde(flatten)]
    pub body: Body,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HookMode {
    Tracepoint,
    RawTracepoint,
    Kprobe,
    Fentry,
    Fexit,
    BtfTracepoint,
}

impl HookMode {
    fn from_raw(raw: u8) -> Self {
        match raw {
            hook_mode::FENTRY => Self::Fentry,
            hook_mode::FEXIT => Self::Fexit,
            hook_mode::KPROBE => Self::Kprobe,
            hook_mode::RAW_TRACEPOINT => Self::RawTracepoint,
            hook_mode::BTF_TRACEPOINT => Self::BtfTracepoint,
            _ => Self::Tracepoint,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Tracepoint => "tracepoint",
            Self::RawTracepoint => "raw_tracepoint",
            Self::Kprobe => "kprobe",
            Self::Fentry => "fentry",
            Self::Fexit => "fexit",
            Self::BtfTracepoint => "btf_tracepoint",
        }
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
    /// argv was longer than what the kernel copied.
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
/// except a [`TcpConnectedEvent`] (a healthy probe), which is its connect
/// and its ESTABLISHED, as the kernel would have sent them separately.
/// `None` for a short or unknown record (the caller counts those).
pub fn decode(bytes: &[u8]) -> Option<Vec<Event>> {
    let header: EventHeader = read_record(bytes)?;
    if header.kind == kind::TCP_CONNECTED {
        let e: TcpConnectedEvent = read_record(bytes)?;
        let info = tcp_info(&e.event);
        let connect = event(&header, Body::TcpConnect(TcpInfo { oldstate: TCP_SYN_SENT, newstate: TCP_SYN_SENT, ..info }));
        // Its context is the softirq that took the SYN-ACK, which says
        // nothing: the connect's pid and comm stand in, as for any record
        // about a prober socket.
        let established = Event { ts_ns: e.established_ts_ns, ..event(&header, Body::TcpState(info)) };
        return Some(vec![connect, established]);
    }
    decode_one(&header, bytes).map(|body| vec![event(&header, body)])
}

fn event(header: &EventHeader, body: Body) -> Event {
    Event {
        ts_ns: header.ts_ns,
        pid: header.pid,
        tid: header.tid,
        comm: c_string(&header.comm),
        cgroup_id: header.cgroup_id,
        mode: HookMode::from_raw(header.hook_mode),
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
                errno: (-e.ret) as i32,
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
    match state {
        1 => "ESTABLISHED",
        2 => "SYN_SENT",
        3 => "SYN_RECV",
        4 => "FIN_WAIT1",
        5 => "FIN_WAIT2",
        6 => "TIME_WAIT",
        7 => "CLOSE",
        8 => "CLOSE_WAIT",
        9 => "LAST_ACK",
        10 => "LISTEN",
        11 => "CLOSING",
        12 => "NEW_SYN_RECV",
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

    /// What the kernel sends for a healthy probe (see tracer-ebpf's tcp.rs).
    pub(crate) fn connected_record(skaddr: u64, connect_ts_ns: u64, established_ts_ns: u64) -> Vec<u8> {
        let mut comm = [0u8; 16];
        comm[..7].copy_from_slice(b"kubelet");
        let mut raw = TcpConnectedEvent {
            event: TcpEvent {
                header: EventHeader { kind: kind::TCP_CONNECTED, hook_mode: hook_mode::RAW_TRACEPOINT, pid: 42, tid: 43, ts_ns: connect_ts_ns, comm, ..Default::default() },
                skaddr,
                oldstate: 2,
                newstate: 1,
                ..Default::default()
            },
            established_ts_ns,
        };
        raw.event.tuple.family = 2;
        raw.event.tuple.sport = 45000;
        raw.event.tuple.dport = 8080;
        raw.event.tuple.saddr[..4].copy_from_slice(&[10, 200, 0, 1]);
        raw.event.tuple.daddr[..4].copy_from_slice(&[10, 200, 1, 2]);
        bytes_of(&raw)
    }

    #[test]
    fn a_connected_record_is_its_connect_then_its_established() {
        let events = decode(&connected_record(0xffff_8880_0000_1000, 7, 9_000_007)).unwrap();
        assert_eq!(events.len(), 2, "{events:?}");
        let (connect, established) = (&events[0], &events[1]);
        assert_eq!((connect.ts_ns, connect.pid, connect.comm.as_str()), (7, 42, "kubelet"));
        let Body::TcpConnect(c) = connect.body else { panic!("{connect:?}") };
        assert_eq!((c.sport, c.dport, c.oldstate, c.newstate), (45000, 8080, 2, 2));
        assert_eq!(c.daddr, "10.200.1.2".parse::<IpAddr>().unwrap());
        assert_eq!((established.ts_ns, established.pid), (9_000_007, 42));
        let Body::TcpState(s) = established.body else { panic!("{established:?}") };
        assert_eq!((s.skaddr, s.sport, s.oldstate, s.newstate), (c.skaddr, 45000, 2, 1));
        assert!(decode(&connected_record(1, 1, 2)[..60]).is_none(), "a short record is rejected");
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
        assert_eq!(ev.mode, HookMode::Fentry);
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
            ts_ns: 1, pid: 2, tid: 2, comm: "runc".into(), cgroup_id: 9, mode: HookMode::Tracepoint,
            body: Body::SyscallFailed { syscall: "clone3".into(), nstype: 0, errno: 11 },
        };
        let json = serde_json::to_string(&ev).unwrap();
        assert!(json.contains("\"event\":\"syscall_failed\""), "{json}");
        assert_eq!(serde_json::from_str::<Event>(&json).unwrap(), ev);
    }
}

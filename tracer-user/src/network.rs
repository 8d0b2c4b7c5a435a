//! Facts about the node's network that explain a probe verdict: port
//! ranges, reserved ports, the IPVS table, listeners and accept queues per
//! network namespace, rp_filter, and the cgroup serving a pod's port (with
//! its CPU counters). Read from procfs; behind [`NetworkFacts`] so the
//! diagnosis is tested with recorded values.

use std::{
    collections::{BTreeMap, HashMap},
    fs,
    net::{IpAddr, Ipv4Addr, SocketAddr},
    ops::RangeInclusive,
    path::Path,
};

use crate::cgroup_cpu::{self, CpuReading, ServingCgroup};

/// A set of port ranges as in `net.ipv4.ip_local_reserved_ports`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PortRanges(pub Vec<RangeInclusive<u16>>);

impl PortRanges {
    /// Parses the sysctl's syntax: "30000-32767,40000" (empty = none).
    pub fn parse(text: &str) -> Option<Self> {
        let mut ranges = Vec::new();
        for part in text.trim().split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (lo, hi) = match part.split_once('-') {
                Some((lo, hi)) => (lo.trim().parse().ok()?, hi.trim().parse().ok()?),
                None => {
                    let p = part.parse().ok()?;
                    (p, p)
                }
            };
            if lo > hi {
                return None;
            }
            ranges.push(lo..=hi);
        }
        Some(Self(ranges))
    }

    pub fn contains(&self, port: u16) -> bool {
        self.0.iter().any(|r| r.contains(&port))
    }

    /// True when every port of `range` is covered.
    pub fn covers(&self, range: &RangeInclusive<u16>) -> bool {
        range.clone().all(|p| self.contains(p))
    }
}

/// One IPVS virtual service with its real servers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpvsService {
    pub protocol: String,
    pub vip: IpAddr,
    pub vport: u16,
    pub reals: Vec<(IpAddr, u16)>,
}

/// Parses `/proc/net/ip_vs` (IPv4 services; hex addresses and ports).
pub fn parse_proc_ip_vs(text: &str) -> Vec<IpvsService> {
    let mut services: Vec<IpvsService> = Vec::new();
    for line in text.lines() {
        let trimmed = line.trim_start();
        if let Some(rest) = trimmed.strip_prefix("->") {
            let Some(addr) = rest.split_whitespace().next() else { continue };
            if let (Some(svc), Some(real)) = (services.last_mut(), parse_hex_endpoint(addr)) {
                svc.reals.push(real);
            }
            continue;
        }
        let mut cols = trimmed.split_whitespace();
        let (Some(proto), Some(addr)) = (cols.next(), cols.next()) else { continue };
        if !matches!(proto, "TCP" | "UDP" | "SCTP") {
            continue;
        }
        if let Some((vip, vport)) = parse_hex_endpoint(addr) {
            services.push(IpvsService { protocol: proto.to_string(), vip, vport, reals: Vec::new() });
        }
    }
    services
}

fn parse_hex_endpoint(s: &str) -> Option<(IpAddr, u16)> {
    let (addr, port) = s.rsplit_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    if addr.len() != 8 {
        return None; // IPv6 services are printed as [..]:port; not handled here.
    }
    let v = u32::from_str_radix(addr, 16).ok()?;
    Some((IpAddr::V4(Ipv4Addr::from(v)), port))
}

/// A TCP socket listening in some network namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listener {
    pub addr: IpAddr,
    pub port: u16,
}

impl std::fmt::Display for Listener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", std::net::SocketAddr::new(self.addr, self.port))
    }
}

/// What the diagnosis may ask about the node.
pub trait NetworkFacts {
    fn reserved_ports(&self) -> PortRanges;
    fn ipvs_services(&self) -> Vec<IpvsService>;
    /// The TCP listeners of the network namespace that owns `addr` (a pod's
    /// address), found from the node's processes; `None` when no
    /// namespace has it.
    fn listeners(&self, addr: IpAddr) -> Option<Vec<Listener>>;
    /// The inode of the network namespace that owns `addr`.
    fn netns_of(&self, addr: IpAddr) -> Option<u32>;
    /// The kernel function a code address lies in.
    fn symbol(&self, addr: u64) -> Option<String>;
    /// The cgroup of the process serving `addr:port`: the holder of the
    /// listening socket in the namespace that owns `addr`.
    fn serving_cgroup(&self, addr: IpAddr, port: u16) -> Option<ServingCgroup>;
    /// That cgroup's counters, read now (`now_ns` is the caller's idea of
    /// now: recorded views answer with what they had then).
    fn cpu_reading(&self, cgroup: &ServingCgroup, now_ns: u64) -> Option<CpuReading>;
    /// The accept queue of the listener that `addr:port` reaches in the
    /// network namespace owning `addr`, and whether the connection from
    /// `peer` waits in it unaccepted.
    fn listen_queue(&self, addr: IpAddr, port: u16, peer: (IpAddr, u16)) -> Option<ListenQueue>;
    /// A network namespace's `TcpExt` counters (`/proc/net/netstat`): the
    /// one owning `pod`, or the node's own when `None`.
    fn tcp_ext(&self, pod: Option<IpAddr>) -> BTreeMap<String, u64>;
    /// The reverse-path filter mode of an interface of the node's own
    /// network namespace: the larger of `all` and the interface's own.
    fn rp_filter(&self, interface: &str) -> Option<u8>;
}

/// A listening socket's accept queue, as its namespace's `/proc/net/tcp`
/// and `netstat` show it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ListenQueue {
    /// The listening socket the probe's port reaches.
    #[serde(serialize_with = "display")]
    pub listener: Listener,
    /// Connections the kernel completed that the application has not
    /// accepted yet (the listener's `rx_queue`).
    pub waiting: u32,
    /// The probe's own connection is one of them: no file owns it yet.
    pub probe_waiting: bool,
    /// The namespace's `TcpExtListenOverflows`: SYNs and handshakes a full
    /// accept queue turned away (cumulative).
    pub listen_overflows: Option<u64>,
}

fn display<S: serde::Serializer>(v: &impl std::fmt::Display, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(v)
}

/// The live node, read from procfs on each call (calls are rare: once per
/// failed probe).
pub struct LiveNetwork;

pub const RESERVED_PORTS_SYSCTL: &str = "/proc/sys/net/ipv4/ip_local_reserved_ports";
pub const PORT_RANGE_SYSCTL: &str = "/proc/sys/net/ipv4/ip_local_port_range";
pub const PROC_IP_VS: &str = "/proc/net/ip_vs";

impl NetworkFacts for LiveNetwork {
    fn reserved_ports(&self) -> PortRanges {
        fs::read_to_string(RESERVED_PORTS_SYSCTL)
            .ok()
            .and_then(|t| PortRanges::parse(&t))
            .unwrap_or_default()
    }

    fn ipvs_services(&self) -> Vec<IpvsService> {
        fs::read_to_string(PROC_IP_VS).map(|t| parse_proc_ip_vs(&t)).unwrap_or_default()
    }

    fn listeners(&self, addr: IpAddr) -> Option<Vec<Listener>> {
        let dir = namespace_dir(addr)?;
        let mut found = Vec::new();
        for table in ["net/tcp", "net/tcp6"] {
            found.extend(fs::read_to_string(dir.join(table)).map(|t| parse_tcp_listeners(&t)).unwrap_or_default());
        }
        found.sort_by_key(|l| (l.port, l.addr));
        found.dedup();
        found.truncate(LISTENERS_MAX);
        Some(found)
    }

    fn netns_of(&self, addr: IpAddr) -> Option<u32> {
        use std::os::unix::fs::MetadataExt;
        let dir = namespace_dir(addr)?;
        fs::metadata(dir.join("ns/net")).ok().map(|m| m.ino() as u32)
    }

    fn symbol(&self, addr: u64) -> Option<String> {
        symbolize(addr)
    }

    fn serving_cgroup(&self, addr: IpAddr, port: u16) -> Option<ServingCgroup> {
        cgroup_cpu::serving(addr, port)
    }

    fn cpu_reading(&self, cgroup: &ServingCgroup, _now_ns: u64) -> Option<CpuReading> {
        cgroup_cpu::read(cgroup)
    }

    fn listen_queue(&self, addr: IpAddr, port: u16, peer: (IpAddr, u16)) -> Option<ListenQueue> {
        let dir = namespace_dir(addr)?;
        let mut rows = Vec::new();
        for table in ["net/tcp", "net/tcp6"] {
            rows.extend(fs::read_to_string(dir.join(table)).map(|t| parse_tcp_table(&t)).unwrap_or_default());
        }
        let overflows = fs::read_to_string(dir.join("net/netstat")).ok().and_then(|t| parse_netstat(&t).get("TcpExt.ListenOverflows").copied());
        listen_queue_in(&rows, SocketAddr::new(addr, port), SocketAddr::new(peer.0, peer.1), overflows)
    }

    fn tcp_ext(&self, pod: Option<IpAddr>) -> BTreeMap<String, u64> {
        let dir = match pod {
            Some(addr) => namespace_dir(addr),
            None => Some("/proc/self".into()),
        };
        let text = dir.and_then(|d| fs::read_to_string(d.join("net/netstat")).ok()).unwrap_or_default();
        parse_netstat(&text)
            .into_iter()
            .filter_map(|(k, v)| Some((k.strip_prefix("TcpExt.")?.to_string(), v)))
            .collect()
    }

    fn rp_filter(&self, interface: &str) -> Option<u8> {
        // A name from the kernel; one with a path separator is no sysctl.
        if interface.is_empty() || interface.contains('/') || interface.starts_with('.') {
            return None;
        }
        let read = |name: &str| -> Option<u8> {
            fs::read_to_string(format!("/proc/sys/net/ipv4/conf/{name}/rp_filter")).ok()?.trim().parse().ok()
        };
        Some(read("all")?.max(read(interface)?))
    }
}

/// Symbols resolved so far (drop locations repeat), at most this many.
const SYMBOLS_MAX: usize = 256;

/// The function containing `addr`, from /proc/kallsyms (read through
/// once per new address: locations are few and repeat).
fn symbolize(addr: u64) -> Option<String> {
    use std::sync::{Mutex, OnceLock};
    static CACHE: OnceLock<Mutex<HashMap<u64, Option<String>>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    if let Some(found) = cache.lock().ok()?.get(&addr) {
        return found.clone();
    }
    let found = fs::read_to_string("/proc/kallsyms").ok().and_then(|t| symbol_in(&t, addr));
    if let Ok(mut c) = cache.lock() {
        if c.len() >= SYMBOLS_MAX {
            c.clear();
        }
        c.insert(addr, found.clone());
    }
    found
}

/// The text symbol at or below `addr` in a kallsyms listing (unsorted
/// across modules), if it is within 64 KiB.
pub fn symbol_in(kallsyms: &str, addr: u64) -> Option<String> {
    let mut best: Option<(u64, &str)> = None;
    for line in kallsyms.lines() {
        let mut cols = line.split_whitespace();
        let (Some(a), Some(kind), Some(name)) = (cols.next(), cols.next(), cols.next()) else { continue };
        if !matches!(kind, "T" | "t") {
            continue;
        }
        let Ok(a) = u64::from_str_radix(a, 16) else { continue };
        if a <= addr && addr - a < 0x10000 && best.is_none_or(|(b, _)| a > b) {
            best = Some((a, name));
        }
    }
    best.map(|(_, name)| name.to_string())
}

/// The inode of this process's network namespace (the host's, for the
/// DaemonSet's hostNetwork pod); 0 if unknown.
pub fn own_netns() -> u32 {
    use std::os::unix::fs::MetadataExt;
    fs::metadata("/proc/self/ns/net").map_or(0, |m| m.ino() as u32)
}

/// Listeners a refused probe's verdict names, at most.
const LISTENERS_MAX: usize = 32;
/// Processes looked at to find a pod's network namespace, at most.
const PROCESSES_MAX: usize = 100_000;

/// Finds the network namespace whose local addresses include `addr`, one
/// process per namespace (a pod's pause process holds it): the /proc
/// directory of a process in it.
pub(crate) fn namespace_dir(addr: IpAddr) -> Option<std::path::PathBuf> {
    let mut seen = std::collections::HashSet::new();
    for entry in fs::read_dir("/proc").ok()?.flatten().take(PROCESSES_MAX) {
        let name = entry.file_name();
        if !name.to_string_lossy().bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let dir = entry.path();
        let Ok(netns) = fs::read_link(dir.join("ns/net")) else { continue };
        if !seen.insert(netns) {
            continue;
        }
        let owns = match addr {
            IpAddr::V4(v4) => fs::read_to_string(dir.join("net/fib_trie")).is_ok_and(|t| local_ipv4(&t).contains(&v4)),
            IpAddr::V6(v6) => fs::read_to_string(dir.join("net/if_inet6")).is_ok_and(|t| local_ipv6(&t).contains(&v6)),
        };
        if owns {
            return Some(dir);
        }
    }
    None
}

/// The local (`host LOCAL`) IPv4 addresses in a `/proc/net/fib_trie`.
pub fn local_ipv4(fib_trie: &str) -> Vec<Ipv4Addr> {
    let mut last = None;
    let mut out = Vec::new();
    for line in fib_trie.lines() {
        let t = line.trim_start();
        if let Some(a) = t.strip_prefix("|-- ") {
            last = a.trim().parse::<Ipv4Addr>().ok();
        } else if t.contains("host LOCAL")
            && let Some(a) = last
            && !out.contains(&a)
        {
            out.push(a);
        }
    }
    out
}

/// The addresses in a `/proc/net/if_inet6`.
pub fn local_ipv6(if_inet6: &str) -> Vec<std::net::Ipv6Addr> {
    if_inet6
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter_map(|hex| u128::from_str_radix(hex, 16).ok())
        .map(std::net::Ipv6Addr::from)
        .collect()
}

/// Listening sockets (state 0A) in a `/proc/net/tcp` or `tcp6`.
pub fn parse_tcp_listeners(text: &str) -> Vec<Listener> {
    parse_tcp_listener_inodes(text).into_iter().map(|(l, _)| l).collect()
}

/// [`parse_tcp_listeners`] with each socket's inode (what a process's
/// `fd/N -> socket:[inode]` names).
pub fn parse_tcp_listener_inodes(text: &str) -> Vec<(Listener, u64)> {
    parse_tcp_table(text)
        .into_iter()
        .filter(|r| r.state == TCP_LISTEN)
        .map(|r| (Listener { addr: r.local.ip(), port: r.local.port() }, r.inode))
        .collect()
}

/// The first of a process's descriptors (`proc_dir`/fd, `fds_max` looked
/// at) that is one of `inodes` of `kind` (its link reads `kind:[inode]`:
/// `socket`, `pipe`).
pub(crate) fn fd_holding(proc_dir: &Path, kind: &str, inodes: &[u64], fds_max: usize) -> Option<u32> {
    fs::read_dir(proc_dir.join("fd")).ok()?.flatten().take(fds_max).find_map(|e| {
        let fd = e.file_name().to_str()?.parse::<u32>().ok()?;
        inodes.contains(&fd_link_inode(&fs::read_link(e.path()).ok()?, kind)?).then_some(fd)
    })
}

/// `socket:[12345]` (a descriptor's link in /proc, of `kind` socket) -> 12345.
pub(crate) fn fd_link_inode(link: &Path, kind: &str) -> Option<u64> {
    link.to_str()?.strip_prefix(kind)?.strip_prefix(":[")?.strip_suffix(']')?.parse().ok()
}

/// One socket of a `/proc/net/tcp` or `tcp6`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpRow {
    pub local: SocketAddr,
    pub remote: SocketAddr,
    pub state: u8,
    /// For a listener, its accept queue's length.
    pub rx_queue: u32,
    /// The socket's inode: 0 while no file owns it (not yet accepted).
    pub inode: u64,
}

use tracer_common::tcp_state::{TCP_CLOSE_WAIT, TCP_ESTABLISHED, TCP_LISTEN};

/// Every socket in a `/proc/net/tcp` or `tcp6`, whose addresses are
/// printed as native-endian 32-bit words.
pub fn parse_tcp_table(text: &str) -> Vec<TcpRow> {
    let endpoint = |s: &str| -> Option<SocketAddr> {
        let (addr, port) = s.split_once(':')?;
        let port = u16::from_str_radix(port, 16).ok()?;
        let words: Option<Vec<[u8; 4]>> = (0..addr.len() / 8)
            .map(|i| addr.get(i * 8..i * 8 + 8).and_then(|w| u32::from_str_radix(w, 16).ok()).map(u32::to_le_bytes))
            .collect();
        let ip = match words.as_deref() {
            Some([w]) => IpAddr::V4(Ipv4Addr::from(*w)),
            Some(ws) if ws.len() == 4 => {
                let mut b = [0u8; 16];
                for (i, w) in ws.iter().enumerate() {
                    b[i * 4..i * 4 + 4].copy_from_slice(w);
                }
                let v6 = std::net::Ipv6Addr::from(b);
                v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4)
            }
            _ => return None,
        };
        Some(SocketAddr::new(ip, port))
    };
    let mut out = Vec::new();
    for line in text.lines().skip(1) {
        let cols: Vec<&str> = line.split_whitespace().collect();
        let (Some(local), Some(remote), Some(state)) = (cols.get(1), cols.get(2), cols.get(3)) else { continue };
        let (Some(local), Some(remote), Ok(state)) = (endpoint(local), endpoint(remote), u8::from_str_radix(state, 16)) else {
            continue;
        };
        let rx_queue = cols.get(4).and_then(|q| q.split_once(':')).and_then(|(_, rx)| u32::from_str_radix(rx, 16).ok()).unwrap_or(0);
        let inode = cols.get(9).and_then(|i| i.parse().ok()).unwrap_or(0);
        out.push(TcpRow { local, remote, state, rx_queue, inode });
    }
    out
}

/// The accept queue of the listener `dest` reaches (its own address or
/// the wildcard), and whether `peer`'s connection to it waits unaccepted.
pub fn listen_queue_in(rows: &[TcpRow], dest: SocketAddr, peer: SocketAddr, overflows: Option<u64>) -> Option<ListenQueue> {
    let reaches = |l: &SocketAddr| l.port() == dest.port() && (l.ip() == dest.ip() || l.ip().is_unspecified());
    let listener = rows
        .iter()
        .filter(|r| r.state == TCP_LISTEN && reaches(&r.local))
        // The exact address wins over a wildcard, as in the kernel's lookup.
        .max_by_key(|r| r.local.ip() == dest.ip())?;
    let probe_waiting = rows.iter().any(|r| {
        r.local == dest && r.remote == peer && r.inode == 0 && matches!(r.state, TCP_ESTABLISHED | TCP_CLOSE_WAIT)
    });
    Some(ListenQueue {
        listener: Listener { addr: listener.local.ip(), port: listener.local.port() },
        waiting: listener.rx_queue,
        probe_waiting,
        listen_overflows: overflows,
    })
}

/// `/proc/net/netstat` (or `snmp`): header and value lines in pairs,
/// as `Prefix.Name` -> value.
pub fn parse_netstat(text: &str) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    let lines: Vec<&str> = text.lines().collect();
    for pair in lines.chunks(2) {
        let [names, values] = pair else { continue };
        let (Some((prefix, names)), Some((prefix2, values))) = (names.split_once(':'), values.split_once(':')) else { continue };
        if prefix != prefix2 {
            continue;
        }
        for (name, value) in names.split_whitespace().zip(values.split_whitespace()) {
            if let Ok(v) = value.parse() {
                out.insert(format!("{prefix}.{name}"), v);
            }
        }
    }
    out
}

/// `net.ipv4.ip_local_port_range` ("32768\t60999").
pub fn ephemeral_port_range() -> Option<RangeInclusive<u16>> {
    let text = fs::read_to_string(PORT_RANGE_SYSCTL).ok()?;
    let mut it = text.split_whitespace().map(|p| p.parse::<u16>().ok());
    Some(it.next()??..=it.next()??)
}

/// A fixed view for tests and replays.
#[derive(Debug, Clone, Default)]
pub struct StaticNetwork {
    pub reserved: PortRanges,
    pub services: Vec<IpvsService>,
    /// The pod namespaces' listeners, by the pod's address.
    pub listeners: Vec<(IpAddr, Vec<Listener>)>,
    /// Kernel symbols: (address, name), and namespaces by address.
    pub symbols: Vec<(u64, String)>,
    pub netns: Vec<(IpAddr, u32)>,
    /// Serving cgroups by destination, and each one's readings over time
    /// (by cgroup path).
    pub serving: Vec<((IpAddr, u16), ServingCgroup)>,
    pub readings: Vec<(String, Vec<CpuReading>)>,
    /// Accept queues by the pod's address and port.
    pub listen_queues: Vec<((IpAddr, u16), ListenQueue)>,
    /// `TcpExt` counters by namespace (`None`: the node's).
    pub tcp_ext: Vec<(Option<IpAddr>, BTreeMap<String, u64>)>,
    /// Node interfaces' rp_filter modes.
    pub rp_filter: Vec<(String, u8)>,
}

impl NetworkFacts for StaticNetwork {
    fn reserved_ports(&self) -> PortRanges {
        self.reserved.clone()
    }
    fn ipvs_services(&self) -> Vec<IpvsService> {
        self.services.clone()
    }
    fn listeners(&self, addr: IpAddr) -> Option<Vec<Listener>> {
        self.listeners.iter().find(|(a, _)| *a == addr).map(|(_, l)| l.clone())
    }
    fn netns_of(&self, addr: IpAddr) -> Option<u32> {
        self.netns.iter().find(|(a, _)| *a == addr).map(|(_, n)| *n)
    }
    fn symbol(&self, addr: u64) -> Option<String> {
        self.symbols.iter().filter(|(a, _)| *a <= addr).max_by_key(|(a, _)| *a).map(|(_, n)| n.clone())
    }
    fn serving_cgroup(&self, addr: IpAddr, port: u16) -> Option<ServingCgroup> {
        self.serving.iter().find(|(d, _)| *d == (addr, port)).map(|(_, c)| c.clone())
    }
    fn cpu_reading(&self, cgroup: &ServingCgroup, now_ns: u64) -> Option<CpuReading> {
        let (_, readings) = self.readings.iter().find(|(p, _)| *p == cgroup.path)?;
        readings.iter().rev().find(|r| r.ts_ns <= now_ns).copied()
    }
    fn listen_queue(&self, addr: IpAddr, port: u16, _peer: (IpAddr, u16)) -> Option<ListenQueue> {
        self.listen_queues.iter().find(|(k, _)| *k == (addr, port)).map(|(_, q)| q.clone())
    }
    fn tcp_ext(&self, pod: Option<IpAddr>) -> BTreeMap<String, u64> {
        self.tcp_ext.iter().find(|(k, _)| *k == pod).map(|(_, c)| c.clone()).unwrap_or_default()
    }
    fn rp_filter(&self, interface: &str) -> Option<u8> {
        self.rp_filter.iter().find(|(i, _)| i == interface).map(|(_, v)| *v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_reserved_ports() {
        let r = PortRanges::parse("30000-32767,40000\n").unwrap();
        assert!(r.contains(31055) && r.contains(40000) && !r.contains(40001));
        assert!(r.covers(&(30000..=32767)));
        assert_eq!(PortRanges::parse("").unwrap(), PortRanges::default());
        assert!(PortRanges::parse("5-1").is_none());
    }

    // Recorded in the VM from `ipvsadm -A -t 10.200.0.1:31055 -s rr;
    // ipvsadm -a -t 10.200.0.1:31055 -r 10.200.2.2:80 -m`.
    const PROC_IP_VS_SAMPLE: &str = "IP Virtual Server version 1.2.1 (size=4096)
Prot LocalAddress:Port Scheduler Flags
  -> RemoteAddress:Port Forward Weight ActiveConn InActConn
TCP  0AC80001:794F rr
  -> 0AC80202:0050      Masq    1      0          1
";

    // From a network namespace with `busybox httpd -p 127.0.0.1:8080` and
    // a listener on [::]:9090.
    const PROC_NET_TCP: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 123 1 0000000000000000 100 0 0 10 0
   1: 0201C80A:1F90 0101C80A:9C40 01 00000000:00000000 00:00000000 00000000     0        0 0 1 0000000000000000 20 4 30 10 -1
";
    const PROC_NET_TCP6: &str = "  sl  local_address                         remote_address                        st
   0: 00000000000000000000000000000000:2382 00000000000000000000000000000000:0000 0A 00000000:00000000
";
    const FIB_TRIE: &str = "Main:
  +-- 0.0.0.0/0 3 0 5
     +-- 10.200.1.0/30 2 0 2
        |-- 10.200.1.0
           /30 link UNICAST
        |-- 10.200.1.2
           /32 host LOCAL
     +-- 127.0.0.0/8 2 0 2
        |-- 127.0.0.1
           /32 host LOCAL
Local:
  +-- 0.0.0.0/0 3 0 5
        |-- 10.200.1.2
           /32 host LOCAL
";

    #[test]
    fn finds_listeners_and_local_addresses_in_a_namespaces_proc_files() {
        let v4 = parse_tcp_listeners(PROC_NET_TCP);
        assert_eq!(v4, vec![Listener { addr: "127.0.0.1".parse().unwrap(), port: 8080 }]);
        let v6 = parse_tcp_listeners(PROC_NET_TCP6);
        assert_eq!(v6, vec![Listener { addr: "::".parse().unwrap(), port: 9090 }]);
        assert_eq!(v6[0].to_string(), "[::]:9090");
        let local = local_ipv4(FIB_TRIE);
        assert_eq!(local, vec!["10.200.1.2".parse::<Ipv4Addr>().unwrap(), "127.0.0.1".parse().unwrap()]);
        let v6 = local_ipv6("fd000000000000000000000000000002 03 40 00 80     eth0\n");
        assert_eq!(v6, vec!["fd00::2".parse::<std::net::Ipv6Addr>().unwrap()]);
    }

    #[test]
    fn parses_proc_ip_vs() {
        let s = parse_proc_ip_vs(PROC_IP_VS_SAMPLE);
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].vip, "10.200.0.1".parse::<IpAddr>().unwrap());
        assert_eq!(s[0].vport, 31055);
        assert_eq!(s[0].reals, vec![("10.200.2.2".parse().unwrap(), 80)]);
    }

    // The bare 6.18, a pod namespace whose listener on 10.200.9.2:9000
    // (backlog 1) never accepts: two connections wait in CLOSE_WAIT, no
    // file owns them (inode 0); one more was accepted (an inode).
    const LISTEN_FULL: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0209C80A:2328 00000000:0000 0A 00000000:00000002 00:00000000 00000000     0        0 1257504 3 000000002f325451 100 0 0 10 0
   1: 0209C80A:2328 0109C80A:E8CE 08 00000000:0000001C 00:00000000 00000000     0        0 0 1 000000001327b161 20 4 28 10 -1
   2: 0209C80A:2328 0109C80A:ED9A 08 00000000:0000001C 00:00000000 00000000     0        0 0 1 00000000c73c2fbf 20 4 28 10 -1
   3: 0209C80A:2328 0109C80A:9C40 01 00000000:00000000 00:00000000 00000000     0        0 1257999 1 00000000c73c2fc0 20 4 28 10 -1
";
    const NETSTAT: &str = "TcpExt: SyncookiesSent EmbryonicRsts ListenOverflows ListenDrops IPReversePathFilter
TcpExt: 0 0 3 3 0
IpExt: InNoRoutes InTruncatedPkts
IpExt: 0 5
";

    #[test]
    fn reads_a_listeners_accept_queue_and_who_waits_in_it() {
        let rows = parse_tcp_table(LISTEN_FULL);
        assert_eq!(rows.len(), 4);
        assert_eq!((rows[0].state, rows[0].rx_queue, rows[0].inode), (0x0a, 2, 1257504));
        assert_eq!(rows[1].remote, "10.200.9.1:59598".parse().unwrap());
        let dest: SocketAddr = "10.200.9.2:9000".parse().unwrap();
        let counters = parse_netstat(NETSTAT);
        assert_eq!(counters["TcpExt.ListenOverflows"], 3);
        assert_eq!(counters["IpExt.InTruncatedPkts"], 5);
        let overflows = counters.get("TcpExt.ListenOverflows").copied();
        let q = listen_queue_in(&rows, dest, "10.200.9.1:59598".parse().unwrap(), overflows).unwrap();
        assert_eq!(q, ListenQueue { listener: Listener { addr: dest.ip(), port: 9000 }, waiting: 2, probe_waiting: true, listen_overflows: Some(3) });
        // An accepted connection is no longer waiting.
        let q = listen_queue_in(&rows, dest, "10.200.9.1:40000".parse().unwrap(), None).unwrap();
        assert!(!q.probe_waiting);
        // No listener on that port.
        assert!(listen_queue_in(&rows, "10.200.9.2:9001".parse().unwrap(), "10.200.9.1:1".parse().unwrap(), None).is_none());
        // A wildcard listener in tcp6 takes IPv4 too.
        let v6 = parse_tcp_table(PROC_NET_TCP6);
        let q = listen_queue_in(&v6, "10.200.9.2:9090".parse().unwrap(), "10.200.9.1:1".parse().unwrap(), None).unwrap();
        assert_eq!(q.listener.to_string(), "[::]:9090");
    }
}

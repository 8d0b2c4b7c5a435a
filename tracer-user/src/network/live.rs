//! [`LiveNetwork`]: the node read from procfs and sysctls, and the
//! helpers that find a pod's network namespace (by its address) and a
//! process's descriptor of a socket or pipe.

use std::{
    collections::{BTreeMap, HashMap},
    fs,
    net::{IpAddr, SocketAddr},
    ops::RangeInclusive,
    path::Path,
};

use super::{
    IpvsService, ListenQueue, Listener, NetworkFacts, PortRanges,
    proc_parsers::{
        listen_queue_in, local_ipv4, local_ipv6, parse_netstat, parse_proc_ip_vs, parse_tcp_listeners, parse_tcp_table,
        symbol_in,
    },
};
use crate::cgroup_cpu::{self, CpuReading, ServingCgroup};

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

/// `net.ipv4.ip_local_port_range` ("32768\t60999").
pub fn ephemeral_port_range() -> Option<RangeInclusive<u16>> {
    let text = fs::read_to_string(PORT_RANGE_SYSCTL).ok()?;
    let mut it = text.split_whitespace().map(|p| p.parse::<u16>().ok());
    Some(it.next()??..=it.next()??)
}

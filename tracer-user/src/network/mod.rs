//! Facts about the node's network that explain a probe verdict: port
//! ranges, reserved ports, the IPVS table, listeners and accept queues per
//! network namespace, rp_filter, and the cgroup serving a pod's port (with
//! its CPU counters). Read from procfs; behind [`NetworkFacts`] so the
//! diagnosis is tested with recorded values.
//!
//! Here: the trait and what it answers with. `live` reads the node;
//! `proc_parsers` parses procfs text (pure, fuzzed); `recorded` answers
//! with fixed values (tests, replay).

use std::{collections::BTreeMap, net::IpAddr, ops::RangeInclusive};

use crate::cgroup_cpu::{CpuReading, ServingCgroup};

mod live;
mod proc_parsers;
mod recorded;

pub use live::{LiveNetwork, PORT_RANGE_SYSCTL, PROC_IP_VS, RESERVED_PORTS_SYSCTL, ephemeral_port_range, own_netns};
pub(crate) use live::{fd_holding, fd_link_inode, namespace_dir};
pub use proc_parsers::{
    TcpRow, listen_queue_in, local_ipv4, local_ipv6, parse_netstat, parse_proc_ip_vs, parse_tcp_listener_inodes,
    parse_tcp_listeners, parse_tcp_table, symbol_in,
};
pub use recorded::StaticNetwork;

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
}

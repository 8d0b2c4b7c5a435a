//! [`StaticNetwork`]: recorded answers, for tests and replays.

use std::{collections::BTreeMap, net::IpAddr};

use super::{IpvsService, ListenQueue, Listener, NetworkFacts, PortRanges};
use crate::cgroup_cpu::{CpuReading, ServingCgroup};

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

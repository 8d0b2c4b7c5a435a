//! Where a probe's packets died: the kernel's dropped packets
//! (`Body::PacketDrop`, let through by the kernel side's filter), matched
//! to a failed probe by its exact tuple, grouped, and told in one phrase.

use std::{collections::VecDeque, net::IpAddr, sync::Arc};

use serde::Serialize;

use crate::{
    events::{PacketDrop, TcpInfo},
    node::NodeView,
};

/// Drops kept for matching, at most, and for how long.
const RECENT_MAX: usize = 1024;
const RECENT_NS: u64 = 300_000_000_000;

/// What names a drop: the running kernel's reason names (BTF's `enum
/// skb_drop_reason`) and the host's network namespace.
#[derive(Debug, Clone, Default)]
pub struct DropNames {
    pub reasons: Arc<std::collections::BTreeMap<u32, String>>,
    pub host_netns: u32,
}

/// Drops seen lately, oldest first.
#[derive(Debug, Default)]
pub(super) struct RecentDrops {
    drops: VecDeque<(u64, PacketDrop)>,
}

impl RecentDrops {
    pub(super) fn push(&mut self, ts_ns: u64, drop: PacketDrop) {
        while self.drops.len() >= RECENT_MAX
            || self.drops.front().is_some_and(|(t, _)| ts_ns.saturating_sub(*t) > RECENT_NS)
        {
            self.drops.pop_front();
        }
        self.drops.push_back((ts_ns, drop));
    }

    /// The drops of the probe with `tuple` (socket `skaddr`) between its
    /// connect and its end: to the pod or from it, by the exact tuple (a
    /// source port still unknown matches any), or by the prober's socket.
    pub(super) fn of(&self, tuple: &TcpInfo, from_ns: u64, to_ns: u64) -> Vec<PacketDrop> {
        let port_ok = |p: u16| tuple.sport == 0 || p == tuple.sport;
        self.drops
            .iter()
            .filter(|(t, _)| (from_ns..=to_ns).contains(t))
            .map(|(_, d)| d.clone())
            .filter(|d| {
                let to_pod = d.daddr == tuple.daddr && d.dport == tuple.dport && port_ok(d.sport);
                let from_pod = d.saddr == tuple.daddr && d.sport == tuple.dport && port_ok(d.dport);
                d.sk == tuple.skaddr || to_pod || from_pod
            })
            .collect()
    }
}

/// Drops of one kind: where and why, how many.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DropSummary {
    /// `to_pod` (the SYN, the request) or `from_pod` (the SYN-ACK, the
    /// response).
    pub direction: &'static str,
    /// The kernel's reason (`NETFILTER_DROP`...); null before 5.17.
    pub reason: Option<String>,
    /// The function that dropped it.
    pub location: String,
    pub count: u32,
    /// `host`, `pod` (the namespace that owns the pod's address), or
    /// `other`/`unknown`.
    pub netns: &'static str,
}

/// The probe's drops, grouped by kind, most frequent first.
pub(super) fn summarize(drops: &[PacketDrop], tuple: &TcpInfo, names: &DropNames, node: &impl NodeView) -> Vec<DropSummary> {
    let pod_netns = if drops.is_empty() { None } else { node.netns_of(tuple.daddr) };
    let mut out: Vec<DropSummary> = Vec::new();
    for d in drops {
        let direction = if d.daddr == tuple.daddr && d.dport == tuple.dport { "to_pod" } else { "from_pod" };
        let reason = d.reason.map(|r| reason_name(names, r));
        let location = node.symbol(d.location).unwrap_or_else(|| format!("{:#x}", d.location));
        let netns = match d.netns {
            0 => "unknown",
            n if n == names.host_netns => "host",
            n if Some(n) == pod_netns => "pod",
            _ => "other",
        };
        match out.iter_mut().find(|s| s.direction == direction && s.reason == reason && s.location == location && s.netns == netns) {
            Some(s) => s.count += 1,
            None => out.push(DropSummary { direction, reason, location, count: 1, netns }),
        }
    }
    out.sort_by(|a, b| b.count.cmp(&a.count));
    out
}

/// A reason's name; since 6.4 the high 16 bits name a subsystem whose
/// reasons are another enum's.
fn reason_name(names: &DropNames, reason: u32) -> String {
    match names.reasons.get(&reason) {
        Some(name) => name.clone(),
        None if reason >> 16 != 0 => format!("subsystem {} reason {}", reason >> 16, reason & 0xffff),
        None => format!("reason {reason}"),
    }
}

/// "the SYN was dropped by netfilter (NETFILTER_DROP in nf_hook_slow) in
/// the pod's network namespace: ...", for the most frequent drop.
pub(super) fn sentence(first: &DropSummary, connected: bool, addr: IpAddr) -> String {
    let packet = match (first.direction, connected) {
        ("to_pod", false) => "the SYN",
        ("from_pod", false) => "the pod's SYN-ACK",
        ("to_pod", true) => "the request",
        _ => "the pod's response",
    };
    let times = if first.count > 1 { format!(" ({} times)", first.count) } else { String::new() };
    let reason = first.reason.as_deref();
    let by = if reason == Some("NETFILTER_DROP") { "by netfilter" } else { "by the kernel" };
    let why = match reason {
        Some(r) => format!("{r} in {}", first.location),
        None => format!("in {}; this kernel gives no reason", first.location),
    };
    let ns = match first.netns {
        "host" => "the node's network namespace".to_string(),
        "pod" => format!("the pod's network namespace ({addr})"),
        other => format!("an{} network namespace", if other == "other" { "other" } else { " unknown" }),
    };
    let fix = fix(reason, first.netns);
    format!("{packet} was dropped{times} {by} ({why}) in {ns}{fix}")
}

/// What to do, for the reasons that say.
fn fix(reason: Option<&str>, netns: &str) -> String {
    let place = if netns == "pod" { "in the pod's namespace" } else { "on the node" };
    match reason {
        Some("NETFILTER_DROP") => format!(
            ": a firewall or NetworkPolicy rule drops the probe; check the iptables/nftables rules {place} for the probe's port"
        ),
        Some("IP_RPFILTER") => ": reverse-path filtering drops it (the route back to the sender leaves by another interface); \
             set net.ipv4.conf.<interface>.rp_filter=2 (loose) on the interface that received it, or fix the route"
            .to_string(),
        Some("TCP_LISTEN_OVERFLOW") | Some("SOCKET_BACKLOG") => ": the application's listen queue is full; raise its listen \
             backlog (and net.core.somaxconn) or make it accept faster"
            .to_string(),
        Some("NO_SOCKET") => ": no socket takes the packet (nothing listens, or the connection is gone)".to_string(),
        Some("NEIGH_FAILED") | Some("NEIGH_QUEUEFULL") => ": the next hop does not answer ARP/ND: the pod's address is not on the node's network".to_string(),
        _ => String::new(),
    }
}

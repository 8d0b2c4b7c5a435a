//! Where a probe's packets died: the kernel's dropped packets
//! (`Body::PacketDrop`, let through by the kernel side's filter), matched
//! to a failed probe by its exact tuple, grouped, and told in one phrase.

use std::{collections::VecDeque, net::IpAddr, sync::Arc};

use serde::Serialize;

use crate::{
    events::{PacketDrop, TcpInfo},
    network::NetworkFacts,
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
    /// The device it was on, where it had one.
    pub interface: Option<String>,
}

/// The probe's drops, grouped by kind: those that can explain a failure
/// first, then the most frequent, then the earliest.
pub(super) fn summarize(drops: &[PacketDrop], tuple: &TcpInfo, names: &DropNames, node: &impl NetworkFacts) -> Vec<DropSummary> {
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
        let interface = (!d.interface.is_empty()).then(|| d.interface.clone());
        let same = |s: &&mut DropSummary| {
            s.direction == direction && s.reason == reason && s.location == location && s.netns == netns && s.interface == interface
        };
        match out.iter_mut().find(same) {
            Some(s) => s.count += 1,
            None => out.push(DropSummary { direction, reason, location, count: 1, netns, interface }),
        }
    }
    // Stable: equal keys keep the order they were first seen in.
    out.sort_by_key(|s| (echo(s), std::cmp::Reverse(s.count)));
    out
}

/// Drops that follow from another failure rather than cause one: a
/// retransmitted SYN freed by the pod's TCP while its SYN-ACK is lost
/// elsewhere (no reason given), a SYN-ACK retransmit reaching a prober
/// that has already connected (TCP_INVALID_SYN).
fn echo(s: &DropSummary) -> bool {
    match s.reason.as_deref() {
        Some("NOT_SPECIFIED") | Some("TCP_INVALID_SYN") => true,
        Some(_) => false,
        // Before 5.17: by the place alone.
        None => matches!(s.location.as_str(), "tcp_v4_rcv" | "tcp_v6_rcv" | "tcp_validate_incoming"),
    }
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

/// What else the node says about a drop: for reverse-path filtering,
/// the interface's mode and the namespace's counter.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct DropContext {
    /// The effective rp_filter of the interface it arrived on (the
    /// node's interfaces only: a pod's sysctls are not readable here).
    pub rp_filter: Option<u8>,
    /// `TcpExtIPReversePathFilter` of the namespace it died in.
    pub rp_filter_drops: Option<u64>,
}

impl DropContext {
    pub(super) fn of(first: &DropSummary, pod: IpAddr, node: &impl NetworkFacts) -> Self {
        let routing = first.reason.as_deref() == Some("IP_RPFILTER") || (first.reason.is_none() && route_input(&first.location));
        if !routing {
            return Self::default();
        }
        let ns = match first.netns {
            "host" => None,
            "pod" => Some(pod),
            _ => return Self::default(),
        };
        Self {
            rp_filter: if ns.is_none() { first.interface.as_deref().and_then(|i| node.rp_filter(i)) } else { None },
            rp_filter_drops: node.tcp_ext(ns).get("IPReversePathFilter").copied(),
        }
    }

    /// Before 5.17 there is no reason: a packet freed where the input
    /// route is decided, on an interface in reverse-path filtering mode,
    /// with the namespace counting such drops.
    fn infers_rp_filter(&self) -> bool {
        self.rp_filter.is_some_and(|m| m > 0) || self.rp_filter_drops.is_some_and(|n| n > 0)
    }
}

/// Where IPv4 input routing (and its reverse-path check) frees a packet.
fn route_input(location: &str) -> bool {
    ["ip_rcv_finish", "ip_list_rcv_finish", "ip_sublist_rcv", "ip_route_input"].iter().any(|f| location.starts_with(f))
}

/// "the SYN was dropped by netfilter (NETFILTER_DROP in nf_hook_slow) in
/// the pod's network namespace: ...", for the first drop.
pub(super) fn sentence(first: &DropSummary, connected: bool, addr: IpAddr, ctx: &DropContext) -> String {
    let packet = match (first.direction, connected) {
        ("to_pod", false) => "the SYN",
        ("from_pod", false) => "the pod's SYN-ACK",
        ("to_pod", true) => "the request",
        _ => "the pod's response",
    };
    let times = if first.count > 1 { format!(" ({} times)", first.count) } else { String::new() };
    let reason = first.reason.as_deref();
    let rp_filter = reason == Some("IP_RPFILTER") || (reason.is_none() && ctx.infers_rp_filter());
    let by = match reason {
        Some("NETFILTER_DROP") => "by netfilter",
        Some(_) if rp_filter => "by reverse-path filtering",
        // Inferred from the place and the node's settings.
        None if rp_filter => "most likely by reverse-path filtering",
        _ => "by the kernel",
    };
    let why = match reason {
        Some(r) => format!("{r} in {}", first.location),
        None => format!("in {}; this kernel gives no reason", first.location),
    };
    let on = first.interface.as_deref().map(|i| format!(" on {i}")).unwrap_or_default();
    let ns = match first.netns {
        "host" => "the node's network namespace".to_string(),
        "pod" => format!("the pod's network namespace ({addr})"),
        other => format!("an{} network namespace", if other == "other" { "other" } else { " unknown" }),
    };
    let fix = if rp_filter {
        rp_filter_fix(first, ctx, addr)
    } else if echo(first) && first.direction == "to_pod" && !connected {
        ": a retransmitted SYN meeting the pod's half-open connection, so the pod did answer and its SYN-ACK is lost \
         on the way back to the node"
            .to_string()
    } else if echo(first) && first.direction == "from_pod" && connected {
        ": a retransmitted SYN-ACK reaching the prober after it connected, so the pod never got the handshake's last ACK"
            .to_string()
    } else {
        fix(reason, first.netns)
    };
    format!("{packet} was dropped{times} {by} ({why}){on} in {ns}{fix}")
}

/// Reverse-path filtering: what was measured, and the sysctl for the
/// interface it arrived on.
fn rp_filter_fix(first: &DropSummary, ctx: &DropContext, addr: IpAddr) -> String {
    let mode = match (ctx.rp_filter, first.interface.as_deref()) {
        (Some(m), Some(i)) => format!("rp_filter is {m} ({}) on {i} and ", ["off", "strict", "loose"][m.min(2) as usize]),
        _ => String::new(),
    };
    let sender = if first.direction == "from_pod" { format!("the pod ({addr})") } else { "the node".to_string() };
    let counted = ctx.rp_filter_drops.map(|n| format!(" (IPReversePathFilter: {n} in that namespace)")).unwrap_or_default();
    // sysctl spells a dot in an interface name (a VLAN's) as a slash.
    let sysctl = match first.interface.as_deref() {
        Some(i) => format!("net.ipv4.conf.{}.rp_filter=2", i.replace('.', "/")),
        None => "net.ipv4.conf.<interface>.rp_filter=2".to_string(),
    };
    let place = if first.netns == "pod" { " in the pod's network namespace" } else { "" };
    format!(
        ": {mode}the route back to {sender} leaves by another interface{counted}; sysctl -w {sysctl} (loose){place}, \
         or route the reply back the way the probe came"
    )
}

/// What to do, for the reasons that say.
fn fix(reason: Option<&str>, netns: &str) -> String {
    let place = if netns == "pod" { "in the pod's namespace" } else { "on the node" };
    match reason {
        Some("NETFILTER_DROP") => format!(
            ": a firewall or NetworkPolicy rule drops the probe; check the iptables/nftables rules {place} for the probe's port"
        ),
        Some("TCP_LISTEN_OVERFLOW") | Some("SOCKET_BACKLOG") => format!(": the application's listen queue is full; {LISTEN_FIX}"),
        Some("NO_SOCKET") => ": no socket takes the packet (nothing listens, or the connection is gone)".to_string(),
        Some("NEIGH_FAILED") | Some("NEIGH_QUEUEFULL") => ": the next hop does not answer ARP/ND: the pod's address is not on the node's network".to_string(),
        _ => String::new(),
    }
}

/// The fix for a listener whose accept queue overflows.
pub(super) const LISTEN_FIX: &str = "raise the application's listen backlog (listen(2), capped by net.core.somaxconn in the \
     pod's namespace) or make it accept connections faster (a stalled accept loop, too few workers)";

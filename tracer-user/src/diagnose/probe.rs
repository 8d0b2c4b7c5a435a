//! Prober TCP connections: what happened to each attempt, and why it failed.
//!
//! An attempt starts at `tcp_connect` (or the CLOSE->SYN_SENT tracepoint) and
//! ends at ESTABLISHED (success) or CLOSE (failure). A failure is:
//! - `synack_diverted`: IPVS created a connection for the reversed tuple: the
//!   pod's SYN-ACK went to a virtual service on the prober's source port
//!   (`observed`), or, where the IPVS hook could not attach, the attempt timed
//!   out with a source port that an IPVS service listens on (`inferred`);
//! - `probe_refused`: a RST arrived;
//! - `probe_timeout`: no SYN-ACK, with the number of SYN retransmits.

use std::{
    collections::{BTreeMap, HashMap},
    net::IpAddr,
    ops::RangeInclusive,
};

use serde::Serialize;

use super::Report;
use crate::{
    events::{Body, Event, IpvsConn, TcpInfo, tcp_state_name},
    node::{IpvsService, NodeView},
};

const TCP_ESTABLISHED: u8 = 1;
const TCP_SYN_SENT: u8 = 2;
const TCP_SYN_RECV: u8 = 3;
const TCP_CLOSE: u8 = 7;

#[derive(Debug, Clone)]
pub struct ProbeSettings {
    pub nodeport_range: RangeInclusive<u16>,
    /// The IPVS hook is attached: diversions are observed, not inferred.
    pub ipvs_observed: bool,
    /// Emit a `tcp_attempt` record for every finished attempt.
    pub attempt_records: bool,
    /// An attempt still in SYN-SENT this long at the end counts as timed out.
    pub pending_timeout_ns: u64,
}

impl Default for ProbeSettings {
    fn default() -> Self {
        Self {
            nodeport_range: 30000..=32767,
            ipvs_observed: true,
            attempt_records: true,
            pending_timeout_ns: 1_000_000_000,
        }
    }
}

/// Outcome of a finished attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Established,
    Refused,
    Timeout,
    Diverted,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Established => "established",
            Self::Refused => "refused",
            Self::Timeout => "timeout",
            Self::Diverted => "diverted",
        }
    }
}

#[derive(Debug, Clone)]
struct Attempt {
    started: Event,
    tuple: TcpInfo,
    syn_retransmits: u32,
    synack_seen: bool,
    reset: bool,
    diverted: bool,
}

/// Per-destination counts for the summary.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DestinationStats {
    pub established: u64,
    pub refused: u64,
    pub timeout: u64,
    pub diverted: u64,
}

pub struct ProbeCorrelator<N: NodeView> {
    settings: ProbeSettings,
    node: N,
    /// In-flight attempts by `struct sock` address.
    attempts: HashMap<u64, Attempt>,
    destinations: BTreeMap<(IpAddr, u16), DestinationStats>,
    /// Healthy probes the kernel counted (cumulative, as last read), when
    /// it counts them instead of sending records.
    kernel_established: HashMap<(IpAddr, u16), u64>,
}

impl<N: NodeView> ProbeCorrelator<N> {
    pub fn new(settings: ProbeSettings, node: N) -> Self {
        Self {
            settings,
            node,
            attempts: HashMap::new(),
            destinations: BTreeMap::new(),
            kernel_established: HashMap::new(),
        }
    }

    /// Takes in the kernel's cumulative healthy-probe counts per
    /// destination; returns how many are new since the last call.
    pub fn kernel_established(&mut self, counts: &[((IpAddr, u16), u64)]) -> u64 {
        let mut new = 0;
        for &(dest, total) in counts {
            let seen = self.kernel_established.entry(dest).or_default();
            let delta = total.saturating_sub(*seen);
            *seen = total.max(*seen);
            if delta > 0 {
                self.destinations.entry(dest).or_default().established += delta;
                new += delta;
            }
        }
        new
    }

    pub fn in_flight(&self) -> usize {
        self.attempts.len()
    }

    pub fn destinations(&self) -> &BTreeMap<(IpAddr, u16), DestinationStats> {
        &self.destinations
    }

    pub fn handle(&mut self, ev: &Event) -> Vec<Report> {
        match &ev.body {
            Body::TcpConnect(info) => {
                // The tracepoint and an fentry/kprobe can both report one
                // connect during attach; keep the first.
                let fresh = match self.attempts.get_mut(&info.skaddr) {
                    Some(a) if a.tuple.daddr == info.daddr && a.tuple.dport == info.dport => {
                        merge_tuple(&mut a.tuple, info);
                        false
                    }
                    _ => true,
                };
                if fresh {
                    let attempt = Attempt {
                        started: ev.clone(),
                        tuple: *info,
                        syn_retransmits: 0,
                        synack_seen: false,
                        reset: false,
                        diverted: false,
                    };
                    self.attempts.insert(info.skaddr, attempt);
                }
                Vec::new()
            }
            Body::TcpRetransmit(info) => {
                if let Some(a) = self.attempts.get_mut(&info.skaddr) {
                    merge_tuple(&mut a.tuple, info);
                    if info.newstate == TCP_SYN_SENT {
                        a.syn_retransmits += 1;
                    }
                }
                Vec::new()
            }
            Body::TcpReset(info) => {
                if let Some(a) = self.attempts.get_mut(&info.skaddr) {
                    merge_tuple(&mut a.tuple, info);
                    a.reset = true;
                }
                Vec::new()
            }
            Body::TcpSynSentRcv(info) => {
                if let Some(a) = self.attempts.get_mut(&info.skaddr) {
                    merge_tuple(&mut a.tuple, info);
                    a.synack_seen = true;
                }
                Vec::new()
            }
            Body::IpvsConn(conn) => self.on_ipvs_conn(ev, conn),
            Body::TcpState(info) => self.on_state(ev, info),
            _ => Vec::new(),
        }
    }

    /// Ends the run: attempts stuck in SYN-SENT long enough are timeouts.
    pub fn finish(&mut self, now_ns: u64) -> Vec<Report> {
        self.expire(now_ns, self.settings.pending_timeout_ns)
    }

    /// Judges attempts older than `min_age_ns` as timed out (still pending).
    pub fn expire(&mut self, now_ns: u64, min_age_ns: u64) -> Vec<Report> {
        let stale: Vec<u64> = self
            .attempts
            .iter()
            .filter(|(_, a)| now_ns.saturating_sub(a.started.ts_ns) >= min_age_ns)
            .map(|(k, _)| *k)
            .collect();
        let mut out = Vec::new();
        for skaddr in stale {
            if let Some(a) = self.attempts.remove(&skaddr) {
                let mut end = a.started.clone();
                end.ts_ns = now_ns;
                out.extend(self.close(a, &end, true));
            }
        }
        out
    }

    fn on_state(&mut self, ev: &Event, info: &TcpInfo) -> Vec<Report> {
        let Some(a) = self.attempts.get_mut(&info.skaddr) else { return Vec::new() };
        merge_tuple(&mut a.tuple, info);
        match info.newstate {
            TCP_ESTABLISHED => {
                let a = self.attempts.remove(&info.skaddr).expect("present");
                self.stats(&a).established += 1;
                self.attempt_record(&a, ev, Outcome::Established).into_iter().collect()
            }
            // Closed, or (after a simultaneous open) left SYN-RECV for a
            // closing state: the kernel stops tracking either way.
            new if new == TCP_CLOSE || info.oldstate == TCP_SYN_RECV => {
                let a = self.attempts.remove(&info.skaddr).expect("present");
                self.close(a, ev, false)
            }
            _ => Vec::new(),
        }
    }

    /// An attempt closed without ever being established.
    fn close(&mut self, a: Attempt, ev: &Event, still_pending: bool) -> Vec<Report> {
        let mut out = Vec::new();
        let outcome = if a.diverted {
            Outcome::Diverted // Its verdict went out when IPVS took the SYN-ACK.
        } else if a.reset {
            out.push(self.refused(&a, ev));
            Outcome::Refused
        } else if let Some(svc) = self.inferred_diversion(&a) {
            out.push(self.diverted(&a, ev, &svc.vip, svc.vport, svc.reals.first().copied(), "inferred"));
            Outcome::Diverted
        } else {
            out.push(self.timeout(&a, ev, still_pending));
            Outcome::Timeout
        };
        let stats = self.stats(&a);
        match outcome {
            Outcome::Diverted => stats.diverted += 1,
            Outcome::Refused => stats.refused += 1,
            _ => stats.timeout += 1,
        }
        out.extend(self.attempt_record(&a, ev, outcome));
        out
    }

    fn on_ipvs_conn(&mut self, ev: &Event, conn: &IpvsConn) -> Vec<Report> {
        // The reply of a prober connection: from daddr:dport to saddr:sport.
        let found = self.attempts.values_mut().find(|a| {
            a.tuple.daddr == conn.caddr
                && a.tuple.dport == conn.cport
                && a.tuple.saddr == conn.vaddr
                && a.tuple.sport == conn.vport
        });
        let Some(a) = found else { return Vec::new() };
        if a.diverted {
            return Vec::new();
        }
        a.diverted = true;
        let a = a.clone();
        vec![self.diverted(&a, ev, &conn.vaddr, conn.vport, Some((conn.daddr, conn.dport)), "observed")]
    }

    /// Without the IPVS hook: a timed-out attempt whose source port is the
    /// port of an IPVS virtual service on the prober's address.
    fn inferred_diversion(&self, a: &Attempt) -> Option<IpvsService> {
        if self.settings.ipvs_observed || a.synack_seen {
            return None;
        }
        self.node.ipvs_services().into_iter().find(|s| {
            s.protocol == "TCP"
                && s.vport == a.tuple.sport
                && (s.vip == a.tuple.saddr || s.vip.is_unspecified())
        })
    }

    fn stats(&mut self, a: &Attempt) -> &mut DestinationStats {
        self.destinations.entry((a.tuple.daddr, a.tuple.dport)).or_default()
    }

    fn base(&self, kind: &'static str, a: &Attempt, ev: &Event) -> Report {
        let mut r = Report::new(kind, &a.started);
        r.ts_ns = ev.ts_ns;
        r.with_ip("saddr", a.tuple.saddr)
            .with("sport", a.tuple.sport)
            .with_ip("daddr", a.tuple.daddr)
            .with("dport", a.tuple.dport)
    }

    fn attempt_record(&self, a: &Attempt, ev: &Event, outcome: Outcome) -> Option<Report> {
        if !self.settings.attempt_records {
            return None;
        }
        let state = if outcome == Outcome::Established { TCP_ESTABLISHED } else { TCP_CLOSE };
        let elapsed_ms = ev.ts_ns.saturating_sub(a.started.ts_ns) / 1_000_000;
        let r = self
            .base("tcp_attempt", a, ev)
            .with("state", tcp_state_name(state))
            .with("outcome", outcome.as_str())
            .with("syn_retransmits", a.syn_retransmits)
            .with("elapsed_ms", elapsed_ms);
        let message = format!(
            "{} {} {}: {} after {elapsed_ms} ms",
            who(a),
            tuple_text(a),
            outcome.as_str(),
            tcp_state_name(state)
        );
        Some(r.message(message))
    }

    fn diverted(
        &self,
        a: &Attempt,
        ev: &Event,
        vip: &IpAddr,
        vport: u16,
        real: Option<(IpAddr, u16)>,
        evidence: &'static str,
    ) -> Report {
        let sport = a.tuple.sport;
        let in_range = self.settings.nodeport_range.contains(&sport);
        let reserved = self.node.reserved_ports().contains(sport);
        let range = &self.settings.nodeport_range;
        let fix = if in_range {
            format!("sysctl -w net.ipv4.ip_local_reserved_ports={}-{}", range.start(), range.end())
        } else {
            format!("sysctl -w net.ipv4.ip_local_reserved_ports={sport}")
        };
        let mut r = self
            .base("synack_diverted", a, ev)
            .with_ip("ipvs_vip", *vip)
            .with("ipvs_vport", vport)
            .with("evidence", evidence)
            .with("sport_in_nodeport_range", in_range)
            .with("sport_reserved", reserved)
            .with("fix", fix.clone());
        let real_text = match real {
            Some((rip, rport)) => {
                r = r.with_ip("ipvs_rip", rip).with("ipvs_rport", rport);
                format!("{rip}:{rport}")
            }
            None => {
                r = r.with("ipvs_rip", serde_json::Value::Null).with("ipvs_rport", serde_json::Value::Null);
                "no real server".to_string()
            }
        };
        let how = if evidence == "observed" { "was taken" } else { "was most likely taken" };
        let why = if in_range {
            format!(
                "the ephemeral source port {sport} lies in the NodePort range {}-{}{}",
                range.start(),
                range.end(),
                if reserved { "" } else { " and is not in net.ipv4.ip_local_reserved_ports" }
            )
        } else {
            format!("the ephemeral source port {sport} is also the port of that IPVS service")
        };
        let message = format!(
            "{} {} will time out: the pod's SYN-ACK {how} by IPVS virtual service {vip}:{vport} and sent to {real_text}, because {why}; fix: {fix}",
            who(a),
            tuple_text(a),
        );
        r.message(message)
    }

    fn refused(&self, a: &Attempt, ev: &Event) -> Report {
        let message = format!(
            "{} {} was refused (RST): nothing listens on {}:{} or a firewall rejects it; check the probe's port and the container's listener",
            who(a),
            tuple_text(a),
            a.tuple.daddr,
            a.tuple.dport
        );
        self.base("probe_refused", a, ev).message(message)
    }

    fn timeout(&self, a: &Attempt, ev: &Event, still_pending: bool) -> Report {
        let elapsed_ms = ev.ts_ns.saturating_sub(a.started.ts_ns) / 1_000_000;
        let answer = if a.synack_seen {
            "got a SYN-ACK but never completed the handshake"
        } else {
            "got no SYN-ACK"
        };
        let message = format!(
            "{} {} timed out: {answer} ({} SYN retransmits, {} after {elapsed_ms} ms); the pod is not answering or the path to it drops packets",
            who(a),
            tuple_text(a),
            a.syn_retransmits,
            if still_pending { "still waiting" } else { "gave up" },
        );
        self.base("probe_timeout", a, ev)
            .with("syn_retransmits", a.syn_retransmits)
            .with("synack_seen", a.synack_seen)
            .with("elapsed_ms", elapsed_ms)
            .with("still_pending", still_pending)
            .message(message)
    }
}

/// Later events carry a fuller tuple: the tracepoint connect path sees no
/// source port yet.
fn merge_tuple(tuple: &mut TcpInfo, newer: &TcpInfo) {
    if tuple.sport == 0 && newer.sport != 0 {
        tuple.sport = newer.sport;
        tuple.saddr = newer.saddr;
    }
    if tuple.saddr.is_unspecified() && !newer.saddr.is_unspecified() {
        tuple.saddr = newer.saddr;
    }
}

fn who(a: &Attempt) -> String {
    format!("{} (pid {}) probe", a.started.comm, a.started.pid)
}

fn tuple_text(a: &Attempt) -> String {
    format!("{}:{} -> {}:{}", a.tuple.saddr, a.tuple.sport, a.tuple.daddr, a.tuple.dport)
}

#[cfg(test)]
mod tests;

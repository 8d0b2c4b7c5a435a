//! The reports a finished attempt gives: its verdict with the evidence
//! found on the node, or its `tcp_attempt` record.

use std::net::IpAddr;

use tracer_common::tcp_state::{TCP_CLOSE, TCP_ESTABLISHED};

use super::{Attempt, DestinationStats, Outcome, ProbeCorrelator, cpu_window, drops, phases::Phases};
use crate::{
    diagnose::{Connection, IpvsPath, Report},
    events::{Event, tcp_state_name},
    network::{IpvsService, ListenQueue, Listener, NetworkFacts},
};

impl<N: NetworkFacts> ProbeCorrelator<N> {
    /// The attempt's dropped packets as a `drops` field, and the phrase
    /// for the most frequent.
    fn drops_of(&self, a: &Attempt, ev: &Event, connected: bool) -> (serde_json::Value, Option<String>) {
        // IPVS took a diverted probe's SYN-ACK: whatever the kernel freed
        // after that (retransmitted SYNs the pod answers again) is no cause.
        if a.diverted {
            return (serde_json::json!([]), None);
        }
        let found = self.drops.of(&a.tuple_with_socket(), a.started.ts_ns, ev.ts_ns);
        let summary = drops::summarize(&found, &a.tuple, &self.settings.drop_names, &self.node);
        let phrase = summary.first().map(|d| {
            let ctx = drops::DropContext::of(d, a.tuple.daddr, &self.node);
            drops::sentence(d, connected, a.tuple.daddr, &ctx)
        });
        (serde_json::to_value(&summary).unwrap_or_default(), phrase)
    }

    /// The accept queue of the listener the probe went to, in the pod's
    /// network namespace.
    fn listen_queue(&self, a: &Attempt) -> Option<ListenQueue> {
        self.node.listen_queue(a.tuple.daddr, a.tuple.dport, (a.tuple.saddr, a.tuple.sport))
    }

    pub(super) fn no_response(&mut self, a: &Attempt, ev: &Event, p: &Phases) -> Report {
        let n = p.request_bytes;
        let queue = self.listen_queue(a);
        let why = match &queue {
            // The kernel completed the handshake and took the request; the
            // application never took the connection.
            Some(q) if p.request_acked && q.probe_waiting => format!(
                "the request ({n} bytes) reached the pod's kernel, but the application never accepted the \
                 connection: it waits in the accept queue of the listener on {} ({} waiting in all); the \
                 application does not call accept(): its accept loop is stuck or too slow; {}",
                q.listener,
                q.waiting,
                drops::LISTEN_FIX
            ),
            _ if p.request_acked => format!(
                "the request ({n} bytes) reached the pod's socket (its kernel acknowledged it) and the application \
                 wrote nothing in {} ms: the application is stalled, not the network; check its threads and CPU \
                 limit, or raise the probe's timeoutSeconds if it is only slow",
                p.elapsed_ms
            ),
            _ => format!(
                "the pod's kernel never acknowledged the request ({n} bytes, {} unacknowledged) in {} ms: it was lost \
                 on the way after the handshake; the network or a firewall between the node and the pod drops the \
                 probe's packets",
                p.unacked, p.elapsed_ms
            ),
        };
        let (drops, died) = self.drops_of(a, ev, true);
        let cpu = self.cpu_window(a, ev);
        // The handshake's last ACK and the request meeting a full accept
        // queue are dropped, with a reason only since 5.17 (and the
        // prober thinks it is connected).
        let overflow = (!p.request_acked).then(|| queue.as_ref().and_then(overflow_evidence)).flatten();
        // A connection never accepted is the application's; when its
        // container was throttled for most of the window, the throttling
        // is why its accept loop did not run, and leads.
        let never_accepted = p.request_acked && queue.as_ref().is_some_and(|q| q.probe_waiting);
        let limits = p.request_acked.then(|| cpu.explanation()).flatten();
        // The container's limits lead when they explain a request that
        // reached it; the network's drops lead otherwise.
        let why = match (died, overflow, limits) {
            (Some(d), Some(o), _) => format!("{d}; {o}"),
            (Some(d), None, _) => format!("{d}; {why}"),
            (None, Some(o), _) => format!("the pod's kernel never acknowledged the request ({n} bytes); {o}"),
            (None, None, Some(limits)) => format!("{limits}; {why}"),
            (None, None, None) if p.request_acked && !never_accepted => format!("{why}; {}", cpu.ruled_out()),
            (None, None, None) => why,
        };
        let message = format!("{} {} got no response: {why}", who(a), tuple_text(a));
        let r = p
            .add_to(self.base("probe_no_response", a, ev))
            .with("drops", drops)
            .with("listen_queue", serde_json::to_value(&queue).unwrap_or_default());
        cpu.add_to(r).message(message)
    }

    pub(super) fn http_error(&mut self, a: &Attempt, ev: &Event, p: &Phases, status: u16) -> Report {
        let after = p.response_ms.map(|ms| format!(" after {ms} ms")).unwrap_or_default();
        let mut message = format!(
            "{} {} failed: the application answered HTTP {status}{after}; the pod's own health handler reports \
             it unhealthy: check the application's log for the probe's path",
            who(a),
            tuple_text(a),
        );
        let r = p.add_to(self.base("probe_http_error", a, ev));
        if !p.slow() {
            return r.message(message);
        }
        let cpu = self.cpu_window(a, ev);
        if let Some(limits) = cpu.explanation() {
            message.push_str(&format!("; it answered slowly: {limits}"));
        }
        cpu.add_to(r).message(message)
    }

    /// The probed container's CPU over the attempt's window.
    pub(super) fn cpu_window(&mut self, a: &Attempt, ev: &Event) -> cpu_window::CpuWindow {
        self.cpu.window(&self.node, (a.tuple.daddr, a.tuple.dport), a.started.ts_ns, ev.ts_ns)
    }

    pub(super) fn dropped_by_pod(&self, a: &Attempt, ev: &Event, p: &Phases, reset: bool) -> Report {
        let (kind, what, why) = if reset {
            (
                "probe_reset",
                "reset the connection",
                "the application aborted its socket (a crash, SO_LINGER 0) or a proxy in the pod rejects the probe",
            )
        } else {
            (
                "probe_closed",
                "closed the connection",
                "the application accepted and closed it: another protocol on the port (TLS expected?) or it \
                 refuses the probe's request",
            )
        };
        let message = format!(
            "{} {} failed: the pod {what} {} ms after accepting it, before answering; {why}",
            who(a),
            tuple_text(a),
            p.after_ms
        );
        p.add_to(self.base(kind, a, ev)).with("after_ms", p.after_ms).message(message)
    }

    /// Without the IPVS hook: a timed-out attempt whose source port is the
    /// port of an IPVS virtual service on the prober's address.
    pub(super) fn inferred_diversion(&self, a: &Attempt) -> Option<IpvsService> {
        if self.settings.ipvs_observed || a.synack_seen {
            return None;
        }
        self.node.ipvs_services().into_iter().find(|s| {
            s.protocol == "TCP"
                && s.vport == a.tuple.sport
                && (s.vip == a.tuple.saddr || s.vip.is_unspecified())
        })
    }

    pub(super) fn stats(&mut self, a: &Attempt) -> &mut DestinationStats {
        self.destinations.entry((a.tuple.daddr, a.tuple.dport)).or_default()
    }

    fn base(&self, kind: &'static str, a: &Attempt, ev: &Event) -> Report {
        let mut r = Report::new(kind, &a.started);
        r.ts_ns = ev.ts_ns;
        r.connection = Some(Connection {
            saddr: a.tuple.saddr,
            sport: a.tuple.sport,
            daddr: a.tuple.daddr,
            dport: a.tuple.dport,
            elapsed_ms: ev.ts_ns.saturating_sub(a.started.ts_ns) / 1_000_000,
        });
        r
    }

    pub(super) fn attempt_record(&self, a: &Attempt, ev: &Event, outcome: Outcome) -> Option<Report> {
        if !self.settings.attempt_records {
            return None;
        }
        Some(self.attempt_record_always(a, ev, outcome))
    }

    /// [`Self::attempt_record`] even where attempts are not wanted: a slow
    /// answer's record is what `probe_near_timeout` is judged from.
    pub(super) fn attempt_record_always(&self, a: &Attempt, ev: &Event, outcome: Outcome) -> Report {
        let connected = !matches!(outcome, Outcome::Refused | Outcome::Timeout | Outcome::Diverted);
        let state = if connected { TCP_ESTABLISHED } else { TCP_CLOSE };
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
        r.message(message)
    }

    pub(super) fn diverted(
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
            .with("evidence", evidence)
            .with("sport_in_nodeport_range", in_range)
            .with("sport_reserved", reserved)
            .with("fix", fix.clone());
        r.ipvs = Some(IpvsPath { ipvs_vip: *vip, ipvs_vport: vport, ipvs_rip: real.map(|r| r.0), ipvs_rport: real.map(|r| r.1) });
        let real_text = match real {
            Some((rip, rport)) => format!("{rip}:{rport}"),
            None => "no real server".to_string(),
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

    pub(super) fn refused(&self, a: &Attempt, ev: &Event) -> Report {
        let (daddr, dport) = (a.tuple.daddr, a.tuple.dport);
        let listeners = self.node.listeners(daddr);
        let why = match &listeners {
            None => format!(
                "nothing listens on {daddr}:{dport} or a firewall rejects it; check the probe's port and the container's listener"
            ),
            Some(found) => refused_because(found, daddr, dport),
        };
        let message = format!("{} {} was refused (RST): {why}", who(a), tuple_text(a));
        let listed: Vec<String> = listeners.iter().flatten().map(|l| l.to_string()).collect();
        self.base("probe_refused", a, ev)
            .with("listeners", if listeners.is_some() { listed.into() } else { serde_json::Value::Null })
            .message(message)
    }

    pub(super) fn timeout(&self, a: &Attempt, ev: &Event, still_pending: bool) -> Report {
        let elapsed_ms = ev.ts_ns.saturating_sub(a.started.ts_ns) / 1_000_000;
        let answer = if a.synack_seen {
            "got a SYN-ACK but never completed the handshake"
        } else {
            "got no SYN-ACK"
        };
        let (drops, died) = self.drops_of(a, ev, false);
        // A full accept queue discards the SYN without a drop the kernel
        // reports (it consumes it): only the pod's counters tell.
        let queue = if died.is_none() && !a.synack_seen { self.listen_queue(a) } else { None };
        let why = died
            .or_else(|| queue.as_ref().and_then(overflow_evidence))
            .unwrap_or_else(|| "the pod is not answering or the path to it drops packets".to_string());
        let message = format!(
            "{} {} timed out: {answer} ({} SYN retransmits, {} after {elapsed_ms} ms); {why}",
            who(a),
            tuple_text(a),
            a.syn_retransmits,
            if still_pending { "still waiting" } else { "gave up" },
        );
        self.base("probe_timeout", a, ev)
            .with("drops", drops)
            .with("listen_queue", serde_json::to_value(&queue).unwrap_or_default())
            .with("syn_retransmits", a.syn_retransmits)
            .with("synack_seen", a.synack_seen)
            .with("elapsed_ms", elapsed_ms)
            .with("still_pending", still_pending)
            .message(message)
    }
}

/// A listener whose accept queue holds connections the application has
/// not taken while its namespace counts overflows: the phrase that says
/// so, measured.
fn overflow_evidence(q: &ListenQueue) -> Option<String> {
    let overflows = q.listen_overflows.filter(|n| *n > 0)?;
    if q.waiting == 0 {
        return None;
    }
    let s = |n: u64| if n == 1 { "" } else { "s" };
    Some(format!(
        "the pod's listener on {} has a full accept queue: {} connection{} the application has not accepted \
         wait{} in it, and its network namespace has counted {overflows} listen queue overflow{} \
         (TcpExtListenOverflows); the kernel turns the probe away without a reply; {}",
        q.listener,
        q.waiting,
        s(q.waiting.into()),
        if q.waiting == 1 { "s" } else { "" },
        s(overflows),
        drops::LISTEN_FIX
    ))
}

/// Why a refused probe was refused, from the listeners in the pod's network
/// namespace.
fn refused_because(found: &[Listener], daddr: IpAddr, dport: u16) -> String {
    let same_port: Vec<&Listener> = found.iter().filter(|l| l.port == dport).collect();
    if !same_port.is_empty() {
        let addrs: Vec<String> = same_port.iter().map(|l| l.to_string()).collect();
        let wildcard = if daddr.is_ipv4() { "0.0.0.0" } else { "::" };
        return format!(
            "the container listens on {} only, not on {daddr}; bind {wildcard} (all addresses) or the pod's address",
            addrs.join(", ")
        );
    }
    let mut near: Vec<&Listener> = found.iter().filter(|l| l.port.abs_diff(dport) <= 10).collect();
    near.sort_by_key(|l| l.port.abs_diff(dport));
    match near.first() {
        Some(l) => format!(
            "nothing listens on port {dport} in the pod's network namespace, but {l} does: check the probe's port \
             against the container's"
        ),
        None if found.is_empty() => {
            format!("nothing listens on any TCP port in the pod's network namespace ({daddr}): the application is not up")
        }
        None => format!(
            "nothing listens on port {dport} in the pod's network namespace; it listens on {}: check the probe's port",
            found.iter().take(5).map(|l| l.to_string()).collect::<Vec<_>>().join(", ")
        ),
    }
}

pub(super) fn who(a: &Attempt) -> String {
    format!("{} (pid {}) probe", a.started.comm, a.started.pid)
}

pub(super) fn tuple_text(a: &Attempt) -> String {
    format!("{}:{} -> {}:{}", a.tuple.saddr, a.tuple.sport, a.tuple.daddr, a.tuple.dport)
}


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
//!
//! Where the kernel follows a connected probe to its first close
//! ([`ProbeSettings::follows_close`]), an attempt that connected ends there,
//! and its phases say what failed after the handshake:
//! - `probe_no_response`: the prober gave up without a byte back (whether
//!   the pod's kernel acknowledged the request says network or application);
//! - `probe_http_error`: the answer's status line says 4xx or 5xx;
//! - `probe_reset`, `probe_closed`: the pod reset or closed the connection
//!   before answering.

use std::{
    collections::{BTreeMap, HashMap},
    net::IpAddr,
    ops::RangeInclusive,
};

use serde::Serialize;

use super::Report;

mod cpu_window;
mod drops;
pub use cpu_window::{CpuSampler, CpuWindow, SAMPLE_PERIOD_NS};
pub use drops::{DropNames, DropSummary};
use crate::{
    events::{Body, Event, IpvsConn, TcpClose, TcpInfo, tcp_state_name},
    node::{IpvsService, ListenQueue, Listener, NodeView},
};

use tracer_common::tcp_state::{TCP_CLOSE, TCP_CLOSE_WAIT, TCP_ESTABLISHED, TCP_FIN_WAIT1, TCP_SYN_RECV, TCP_SYN_SENT};
const ECONNRESET: i32 = 104;

#[derive(Debug, Clone)]
pub struct ProbeSettings {
    pub nodeport_range: RangeInclusive<u16>,
    /// The IPVS hook is attached: diversions are observed, not inferred.
    pub ipvs_observed: bool,
    /// Emit a `tcp_attempt` record for every finished attempt.
    pub attempt_records: bool,
    /// An attempt still in SYN-SENT this long at the end counts as timed out.
    pub pending_timeout_ns: u64,
    /// The kernel follows a connected probe to its first close and reports
    /// it ([`Body::TcpClosed`]): ESTABLISHED is not the end of an attempt.
    pub follows_close: bool,
    /// The received-segment hook is attached: a close without a response
    /// byte means none came.
    pub responses_observed: bool,
    /// What names a dropped packet (the kernel's reasons, the host's
    /// namespace).
    pub drop_names: DropNames,
}

impl Default for ProbeSettings {
    fn default() -> Self {
        Self {
            nodeport_range: 30000..=32767,
            ipvs_observed: true,
            attempt_records: true,
            pending_timeout_ns: 1_000_000_000,
            follows_close: false,
            responses_observed: true,
            drop_names: DropNames::default(),
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
    /// Connected, then no byte came back before the prober gave up.
    NoResponse,
    /// Answered with an HTTP status of 400 or more.
    HttpError,
    /// Connected, then the pod reset or closed it before answering.
    Reset,
    Closed,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Established => "established",
            Self::Refused => "refused",
            Self::Timeout => "timeout",
            Self::Diverted => "diverted",
            Self::NoResponse => "no_response",
            Self::HttpError => "http_error",
            Self::Reset => "reset",
            Self::Closed => "closed",
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
    /// When it reached ESTABLISHED, while it waits for its close.
    established_ns: Option<u64>,
    /// A retransmit in ESTABLISHED came first: it connected, and the
    /// kernel keeps when for the close record.
    connected: bool,
}

/// Per-destination counts for the summary.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DestinationStats {
    pub established: u64,
    pub refused: u64,
    pub timeout: u64,
    pub diverted: u64,
    pub no_response: u64,
    pub http_error: u64,
    /// Reset or closed by the pod before answering.
    pub dropped_by_pod: u64,
}

impl DestinationStats {
    pub fn add(&mut self, other: &Self) {
        self.established += other.established;
        self.refused += other.refused;
        self.timeout += other.timeout;
        self.diverted += other.diverted;
        self.no_response += other.no_response;
        self.http_error += other.http_error;
        self.dropped_by_pod += other.dropped_by_pod;
    }
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
    /// Dropped packets that may be probes', for the verdicts of probes
    /// that time out or get no answer.
    drops: drops::RecentDrops,
    /// The probed containers' CPU counters, for the verdicts of probes
    /// that got no answer or a slow one.
    cpu: CpuSampler,
}

/// An answer this slow is worth its container's CPU window (and the
/// kernel sends its record rather than counting it as healthy).
pub const SLOW_ANSWER_MS: u64 = 500;

impl<N: NodeView> ProbeCorrelator<N> {
    pub fn new(settings: ProbeSettings, node: N) -> Self {
        Self {
            settings,
            node,
            attempts: HashMap::new(),
            destinations: BTreeMap::new(),
            kernel_established: HashMap::new(),
            drops: Default::default(),
            cpu: CpuSampler::default(),
        }
    }

    /// Samples the probed containers' CPU counters (every
    /// [`SAMPLE_PERIOD_NS`]).
    pub fn sample_cpu(&mut self, now_ns: u64) {
        self.cpu.tick(&self.node, now_ns);
    }

    pub fn cpu_sampler(&self) -> &CpuSampler {
        &self.cpu
    }

    /// Takes in the kernel's cumulative healthy-probe counts per
    /// destination; returns how many are new since the last call.
    pub fn kernel_established(&mut self, counts: &[((IpAddr, u16), u64)], now_ns: u64) -> u64 {
        let mut new = 0;
        for &(dest, total) in counts {
            let seen = self.kernel_established.entry(dest).or_default();
            let delta = total.saturating_sub(*seen);
            *seen = total.max(*seen);
            if delta > 0 {
                self.destinations.entry(dest).or_default().established += delta;
                self.cpu.note(dest, now_ns);
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

    /// Takes a destination's counts out (pod-IP churn: Aggregator keeps
    /// their sum).
    pub fn forget_destination(&mut self, key: &(IpAddr, u16)) -> Option<DestinationStats> {
        self.destinations.remove(key)
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
                    self.cpu.note((info.daddr, info.dport), ev.ts_ns);
                    let attempt = Attempt {
                        started: ev.clone(),
                        tuple: *info,
                        syn_retransmits: 0,
                        synack_seen: false,
                        reset: false,
                        diverted: false,
                        established_ns: None,
                        connected: false,
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
                    a.connected |= info.newstate == TCP_ESTABLISHED;
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
            Body::TcpClosed(close) => self.on_closed(ev, close),
            Body::PacketDrop(drop) => {
                self.drops.push(ev.ts_ns, drop.clone());
                Vec::new()
            }
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
                if a.established_ns.is_some() || a.connected {
                    // Connected, and its close never came (the kernel lost
                    // the socket, or the tracer stops first).
                    self.stats(&a).established += 1;
                    out.extend(self.attempt_record(&a, &end, Outcome::Established));
                } else {
                    out.extend(self.close(a, &end, true));
                }
            }
        }
        out
    }

    fn on_state(&mut self, ev: &Event, info: &TcpInfo) -> Vec<Report> {
        let Some(a) = self.attempts.get_mut(&info.skaddr) else { return Vec::new() };
        merge_tuple(&mut a.tuple, info);
        match info.newstate {
            TCP_ESTABLISHED if self.settings.follows_close && info.oldstate == TCP_SYN_SENT => {
                a.established_ns = Some(ev.ts_ns);
                Vec::new()
            }
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

    /// A connected attempt's first close: its phases decide.
    fn on_closed(&mut self, ev: &Event, close: &TcpClose) -> Vec<Report> {
        let Some(mut a) = self.attempts.remove(&close.info.skaddr) else { return Vec::new() };
        merge_tuple(&mut a.tuple, &close.info);
        let phases = Phases::of(&a, ev, close, self.settings.responses_observed);
        let (outcome, verdict) = match phases.failure() {
            None => (Outcome::Established, None),
            Some(Failure::NoResponse) => (Outcome::NoResponse, Some(self.no_response(&a, ev, &phases))),
            Some(Failure::HttpError(status)) => (Outcome::HttpError, Some(self.http_error(&a, ev, &phases, status))),
            Some(Failure::DroppedByPod) => {
                let reset = phases.closed_with == "rst";
                (if reset { Outcome::Reset } else { Outcome::Closed }, Some(self.dropped_by_pod(&a, ev, &phases, reset)))
            }
        };
        let stats = self.stats(&a);
        match outcome {
            Outcome::NoResponse => stats.no_response += 1,
            Outcome::HttpError => stats.http_error += 1,
            Outcome::Reset | Outcome::Closed => stats.dropped_by_pod += 1,
            _ => stats.established += 1,
        }
        let mut out: Vec<Report> = verdict.into_iter().collect();
        let record = if phases.slow() { Some(self.attempt_record_always(&a, ev, outcome)) } else { self.attempt_record(&a, ev, outcome) };
        out.extend(record.map(|r| {
            let mut message = format!("{} {} {}: {}", who(&a), tuple_text(&a), outcome.as_str(), phases.text());
            let r = phases.add_to(r);
            if !phases.slow() {
                return r.message(message);
            }
            let cpu = self.cpu_window(&a, ev);
            if let Some(limits) = cpu.explanation() {
                message.push_str(&format!("; slow: {limits}"));
            }
            cpu.add_to(r).message(message)
        }));
        out
    }

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

    fn no_response(&mut self, a: &Attempt, ev: &Event, p: &Phases) -> Report {
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

    fn http_error(&mut self, a: &Attempt, ev: &Event, p: &Phases, status: u16) -> Report {
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
    fn cpu_window(&mut self, a: &Attempt, ev: &Event) -> cpu_window::CpuWindow {
        self.cpu.window(&self.node, (a.tuple.daddr, a.tuple.dport), a.started.ts_ns, ev.ts_ns)
    }

    fn dropped_by_pod(&self, a: &Attempt, ev: &Event, p: &Phases, reset: bool) -> Report {
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
        Some(self.attempt_record_always(a, ev, outcome))
    }

    /// [`Self::attempt_record`] even where attempts are not wanted: a slow
    /// answer's record is what `probe_near_timeout` is judged from.
    fn attempt_record_always(&self, a: &Attempt, ev: &Event, outcome: Outcome) -> Report {
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

    fn timeout(&self, a: &Attempt, ev: &Event, still_pending: bool) -> Report {
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

impl Attempt {
    /// The tuple with the socket's address, which outgoing packets carry.
    fn tuple_with_socket(&self) -> TcpInfo {
        TcpInfo { skaddr: self.tuple.skaddr, ..self.tuple }
    }
}

/// What failed after the handshake.
enum Failure {
    NoResponse,
    HttpError(u16),
    /// Reset or closed by the pod before answering.
    DroppedByPod,
}

/// A connected probe's phases, from its close.
struct Phases {
    connect_ms: u64,
    /// From the connect to the close.
    elapsed_ms: u64,
    /// From ESTABLISHED to the close.
    after_ms: u64,
    request_bytes: u64,
    request_acked: bool,
    unacked: u64,
    response_bytes: u64,
    /// From ESTABLISHED to the first response byte, where seen.
    response_ms: Option<u64>,
    http_status: Option<u16>,
    closed_by: &'static str,
    closed_with: &'static str,
    responses_observed: bool,
    still_open: bool,
}

impl Phases {
    /// An answer slow enough to be worth its container's CPU window.
    fn slow(&self) -> bool {
        self.response_ms.is_some_and(|ms| ms >= SLOW_ANSWER_MS)
    }

    fn of(a: &Attempt, ev: &Event, close: &TcpClose, responses_observed: bool) -> Self {
        let ms = |from: u64, to: u64| to.saturating_sub(from) / 1_000_000;
        let established = a.established_ns.unwrap_or(close.established_ts_ns);
        let (closed_by, closed_with) = match close.info.newstate {
            TCP_FIN_WAIT1 => ("prober", "fin"),
            TCP_CLOSE_WAIT => ("pod", "fin"),
            TCP_CLOSE if close.sk_err == ECONNRESET => ("pod", "rst"),
            TCP_CLOSE => ("prober", "rst"),
            _ => ("nobody", "none"),
        };
        Self {
            connect_ms: ms(a.started.ts_ns, established),
            elapsed_ms: ms(a.started.ts_ns, ev.ts_ns),
            after_ms: ms(established, ev.ts_ns),
            request_bytes: close.request_bytes,
            request_acked: close.request_acked,
            unacked: close.request_unacked,
            response_bytes: close.response_bytes,
            response_ms: close.first_response_ts_ns.map(|t| ms(established, t)),
            http_status: close.http_status(),
            closed_by,
            closed_with,
            responses_observed,
            still_open: close.still_open(),
        }
    }

    /// A TCP probe (nothing sent) passes by connecting; one that sent a
    /// request fails without an answer or with an HTTP error.
    fn failure(&self) -> Option<Failure> {
        if self.request_bytes == 0 || self.still_open {
            return None;
        }
        if let Some(status) = self.http_status.filter(|s| *s >= 400) {
            return Some(Failure::HttpError(status));
        }
        if self.response_bytes > 0 {
            return None;
        }
        match self.closed_by {
            "pod" => Some(Failure::DroppedByPod),
            _ => Some(Failure::NoResponse),
        }
    }

    /// The phases in words, for the attempt's record.
    fn text(&self) -> String {
        let answer = match (self.response_bytes, self.response_ms, self.http_status) {
            (0, _, _) if !self.responses_observed => "nothing back that the kernel could see".to_string(),
            (0, _, _) => "nothing back".to_string(),
            (n, ms, status) => format!(
                "{n} bytes back{}{}",
                status.map(|s| format!(" (HTTP {s})")).unwrap_or_default(),
                ms.map(|ms| format!(" after {ms} ms")).unwrap_or_default()
            ),
        };
        let closed = if self.still_open {
            "still open: not a probe".to_string()
        } else {
            format!("closed by the {} ({}) at {} ms", self.closed_by, self.closed_with.to_uppercase(), self.elapsed_ms)
        };
        format!("connected in {} ms, sent {} bytes, {answer}, {closed}", self.connect_ms, self.request_bytes)
    }

    fn add_to(&self, r: Report) -> Report {
        let r = r
            .with("request_bytes", self.request_bytes)
            .with("request_acked", self.request_acked)
            .with("response_bytes", self.response_bytes)
            .with("response_ms", self.response_ms)
            .with("connect_ms", self.connect_ms)
            .with("elapsed_ms", self.elapsed_ms)
            .with("closed_by", self.closed_by)
            .with("closed_with", self.closed_with);
        let r = r.with("http_status", self.http_status);
        if self.responses_observed { r } else { r.with("response_observed", false) }
    }
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

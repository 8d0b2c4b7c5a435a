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
//!
//! Here the correlator and its events' entry; [`follow`]ing an attempt
//! through the kernel's records, its [`phases`] after the handshake, the
//! [`verdicts`] it gives, with the [`drops`] and the [`cpu_window`] they cite.

use std::{
    collections::{BTreeMap, HashMap},
    net::IpAddr,
    ops::RangeInclusive,
};

use serde::Serialize;

use super::Report;

mod cpu_window;
mod drops;
mod follow;
mod phases;
mod verdicts;
pub use cpu_window::{CpuSampler, CpuWindow, SAMPLE_PERIOD_NS};
pub use drops::{DropNames, DropSummary};
use crate::{
    events::{Body, Event, TcpInfo},
    network::NetworkFacts,
};

use tracer_common::tcp_state::{TCP_ESTABLISHED, TCP_SYN_SENT};
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

pub struct ProbeCorrelator<N: NetworkFacts> {
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

impl<N: NetworkFacts> ProbeCorrelator<N> {
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

    /// Takes a destination's counts out (pod-IP churn: Correlators keeps
    /// their sum).
    pub fn forget_destination(&mut self, key: &(IpAddr, u16)) -> Option<DestinationStats> {
        self.destinations.remove(key)
    }

    pub fn handle(&mut self, ev: &Event) -> Vec<Report> {
        match &ev.body {
            Body::TcpConnect(info) => self.on_connect(ev, info),
            Body::TcpRetransmit(info) => self.note(info, |a| {
                if info.newstate == TCP_SYN_SENT {
                    a.syn_retransmits += 1;
                }
                a.connected |= info.newstate == TCP_ESTABLISHED;
            }),
            Body::TcpReset(info) => self.note(info, |a| a.reset = true),
            Body::TcpSynSentRcv(info) => self.note(info, |a| a.synack_seen = true),
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

    fn on_connect(&mut self, ev: &Event, info: &TcpInfo) -> Vec<Report> {
        // The tracepoint and an fentry/kprobe can both report one connect
        // during attach; keep the first.
        if let Some(a) = self.attempts.get_mut(&info.skaddr)
            && a.tuple.daddr == info.daddr
            && a.tuple.dport == info.dport
        {
            merge_tuple(&mut a.tuple, info);
            return Vec::new();
        }
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
        Vec::new()
    }

    /// What a record says of a followed attempt (no report on its own).
    fn note(&mut self, info: &TcpInfo, update: impl FnOnce(&mut Attempt)) -> Vec<Report> {
        if let Some(a) = self.attempts.get_mut(&info.skaddr) {
            merge_tuple(&mut a.tuple, info);
            update(a);
        }
        Vec::new()
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
}

impl Attempt {
    /// The tuple with the socket's address, which outgoing packets carry.
    fn tuple_with_socket(&self) -> TcpInfo {
        TcpInfo { skaddr: self.tuple.skaddr, ..self.tuple }
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

#[cfg(test)]
mod tests;

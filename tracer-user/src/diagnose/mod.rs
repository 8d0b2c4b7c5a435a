//! Correlation and diagnosis: plain Rust over decoded [`Event`]s, no kernel
//! in the loop. Each correlator turns a stream of events into [`Report`]s:
//! verdicts (something failed, and why) and per-attempt records.

pub(crate) mod catalogue;
pub mod exec;
pub(crate) mod near_timeout;
pub mod oom;
pub mod probe;
mod report;
#[cfg(test)]
mod soak;

use std::{
    collections::{BTreeMap, HashMap},
    hash::Hash,
    net::IpAddr,
};

use serde::Serialize;

use crate::events::{Body, Event};

pub use report::{Answer, Connection, IpvsPath, KubeNames, ProbeNamed, ProbeOfSpec, Report, Slot, Workload};

/// A map whose oldest entries can be dropped: see [`bound_oldest`].
pub(crate) trait AgedMap<V> {
    fn size(&self) -> usize;
    fn drop_oldest(&mut self, n: usize, age: &dyn Fn(&V) -> u64);
}

impl<K: Clone + Eq + Hash, V> AgedMap<V> for HashMap<K, V> {
    fn size(&self) -> usize {
        self.len()
    }
    fn drop_oldest(&mut self, n: usize, age: &dyn Fn(&V) -> u64) {
        let mut keys: Vec<(u64, K)> = self.iter().map(|(k, v)| (age(v), k.clone())).collect();
        keys.sort_unstable_by_key(|(t, _)| *t);
        for (_, k) in keys.into_iter().take(n) {
            self.remove(&k);
        }
    }
}

impl<K: Clone + Ord, V> AgedMap<V> for BTreeMap<K, V> {
    fn size(&self) -> usize {
        self.len()
    }
    fn drop_oldest(&mut self, n: usize, age: &dyn Fn(&V) -> u64) {
        let mut keys: Vec<(u64, K)> = self.iter().map(|(k, v)| (age(v), k.clone())).collect();
        keys.sort_unstable_by_key(|(t, _)| *t);
        for (_, k) in keys.into_iter().take(n) {
            self.remove(&k);
        }
    }
}

/// Keeps `map` at most `max` entries: past it, the oldest (by `age`, a
/// timestamp) go, down to three quarters of `max` so the sort is rare.
pub(crate) fn bound_oldest<V>(map: &mut impl AgedMap<V>, max: usize, age: impl Fn(&V) -> u64) {
    if map.size() > max {
        let n = map.size() - max * 3 / 4;
        map.drop_oldest(n, &age);
    }
}

/// Per-destination counts (the summary's `destinations`) of a destination
/// with no new attempt for this long are folded into `retired`: pod IPs
/// churn, and a daemon runs for weeks.
pub const DESTINATION_IDLE_NS: u64 = 3600 * 1_000_000_000;
/// At most this many destinations are itemised.
pub const MAX_DESTINATIONS: usize = 4096;

/// All correlators behind one `handle`: what `run`, `daemon` and `replay`
/// feed events into.
pub struct Correlators<N: crate::network::NetworkFacts, H: crate::processes::ProcessFacts + Clone> {
    pub probe: probe::ProbeCorrelator<N>,
    pub exec: exec::ExecCorrelator<H>,
    pub oom: oom::OomCorrelator<H>,
    pub events: u64,
    pub verdict_counts: BTreeMap<&'static str, u64>,
    /// Per destination: its attempt total when last looked at, and when
    /// that total last changed.
    destination_seen: HashMap<(IpAddr, u16), (u64, u64)>,
    /// Counts of destinations no longer itemised (still in the totals).
    retired: probe::DestinationStats,
    /// When destinations were last looked over (once a minute is plenty
    /// for an hour's idleness).
    retired_at_ns: Option<u64>,
}

impl<N: crate::network::NetworkFacts, H: crate::processes::ProcessFacts + Clone> Correlators<N, H> {
    pub fn new(probe_settings: probe::ProbeSettings, node: N, exec_settings: exec::ExecSettings, host: H) -> Self {
        Self {
            probe: probe::ProbeCorrelator::new(probe_settings, node),
            exec: exec::ExecCorrelator::new(exec_settings, host.clone()),
            oom: oom::OomCorrelator::new(host),
            events: 0,
            verdict_counts: Default::default(),
            destination_seen: HashMap::new(),
            retired: Default::default(),
            retired_at_ns: None,
        }
    }

    /// Folds idle destinations (and the idlest past MAX_DESTINATIONS) into
    /// the retired totals.
    fn retire_destinations(&mut self, now_ns: u64) {
        if self.retired_at_ns.is_some_and(|t| now_ns.saturating_sub(t) < 60 * 1_000_000_000) {
            return;
        }
        self.retired_at_ns = Some(now_ns);
        let mut live: Vec<((IpAddr, u16), u64)> = Vec::new();
        for (key, s) in self.probe.destinations() {
            let total = attempts_total(s);
            let seen = self.destination_seen.entry(*key).or_insert((total, now_ns));
            if seen.0 != total {
                *seen = (total, now_ns);
            }
            live.push((*key, seen.1));
        }
        let mut retire: Vec<(IpAddr, u16)> =
            live.iter().filter(|(_, t)| now_ns.saturating_sub(*t) >= DESTINATION_IDLE_NS).map(|(k, _)| *k).collect();
        if live.len() - retire.len() > MAX_DESTINATIONS {
            let mut busy: Vec<&((IpAddr, u16), u64)> = live.iter().filter(|(_, t)| now_ns.saturating_sub(*t) < DESTINATION_IDLE_NS).collect();
            busy.sort_unstable_by_key(|(_, t)| *t);
            let excess = busy.len() - MAX_DESTINATIONS * 3 / 4;
            retire.extend(busy.into_iter().take(excess).map(|(k, _)| *k));
        }
        for key in retire {
            if let Some(s) = self.probe.forget_destination(&key) {
                self.retired.add(&s);
            }
            self.destination_seen.remove(&key);
        }
        let known = self.probe.destinations();
        self.destination_seen.retain(|k, _| known.contains_key(k));
    }

    /// Entries held by every correlator's maps (the soak test bounds them).
    #[cfg(test)]
    pub(crate) fn state_sizes(&self) -> Vec<(&'static str, usize)> {
        let mut sizes = self.exec.state_sizes();
        sizes.push(("destinations", self.probe.destinations().len()));
        sizes.push(("destination_seen", self.destination_seen.len()));
        sizes.push(("attempts", self.probe.in_flight()));
        sizes.push(("oom_pending", self.oom.pending()));
        sizes
    }

    pub fn handle(&mut self, ev: &Event) -> Vec<Report> {
        self.events += 1;
        if let Some(reports) = self.oom.handle(ev) {
            return self.count(reports);
        }
        let reports = match &ev.body {
            Body::Exec(_) | Body::Fork { .. } | Body::SyscallFailed { .. } | Body::Exit { .. } | Body::Signal { .. } => {
                self.exec.handle(ev)
            }
            _ => self.probe.handle(ev),
        };
        self.count(reports)
    }

    /// Periodic housekeeping: attempts stuck far longer than any prober
    /// waits are judged now rather than held forever.
    pub fn expire(&mut self, now_ns: u64, min_age_ns: u64) -> Vec<Report> {
        let mut reports = self.probe.expire(now_ns, min_age_ns);
        self.retire_destinations(now_ns);
        reports.extend(self.exec.expire(now_ns));
        reports.extend(self.oom.expire(now_ns));
        self.count(reports)
    }

    /// End of the run.
    pub fn finish(&mut self, now_ns: u64) -> Vec<Report> {
        let mut reports = self.probe.finish(now_ns);
        reports.extend(self.exec.finish(now_ns));
        reports.extend(self.oom.finish());
        self.count(reports)
    }

    fn count(&mut self, reports: Vec<Report>) -> Vec<Report> {
        for r in reports.iter().filter(|r| r.is_verdict()) {
            *self.verdict_counts.entry(r.kind).or_default() += 1;
        }
        reports
    }

    /// Summary fields shared by text and JSON output.
    pub fn summary(&self) -> Summary {
        let mut attempts = self.retired.clone();
        let destinations = self
            .probe
            .destinations()
            .iter()
            .map(|(&(daddr, dport), s)| {
                attempts.add(s);
                DestinationSummary { daddr, dport, stats: s.clone() }
            })
            .collect();
        Summary {
            events: self.events,
            attempts,
            in_flight: self.probe.in_flight() as u64,
            runtime_invocations: RuntimeInvocations {
                judged: self.exec.finished,
                failed: self.exec.failed,
                in_flight: self.exec.in_flight() as u64,
            },
            runtime_latency: self.exec.latency_summary(),
            verdicts: self.verdict_counts.clone(),
            destinations,
            kernel: None,
            throttled: None,
        }
    }
}

fn attempts_total(s: &probe::DestinationStats) -> u64 {
    [s.established, s.refused, s.timeout, s.diverted, s.no_response, s.http_error, s.dropped_by_pod]
        .iter()
        .fold(0u64, |a, b| a.saturating_add(*b))
}

/// The `summary` record: what was seen, in total and per destination.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub(crate) events: u64,
    /// Prober connections by outcome, all destinations together.
    pub(crate) attempts: probe::DestinationStats,
    pub(crate) in_flight: u64,
    pub(crate) runtime_invocations: RuntimeInvocations,
    pub(crate) runtime_latency: BTreeMap<String, exec::LatencyStats>,
    pub(crate) verdicts: BTreeMap<&'static str, u64>,
    pub(crate) destinations: Vec<DestinationSummary>,
    /// What the kernel side counted; `run` and `daemon` only (a replay has
    /// no kernel).
    #[serde(flatten)]
    pub(crate) kernel: Option<KernelSummary>,
    /// Reports the per-source rate limit held back (`run`, `daemon`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) throttled: Option<u64>,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct RuntimeInvocations {
    pub(crate) judged: u64,
    pub(crate) failed: u64,
    pub(crate) in_flight: u64,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct DestinationSummary {
    pub(crate) daddr: IpAddr,
    pub(crate) dport: u16,
    #[serde(flatten)]
    pub(crate) stats: probe::DestinationStats,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct KernelSummary {
    /// Records the ring buffer had no room for.
    pub(crate) lost_events: u64,
    /// Sockets or pids the tracking maps could not take.
    pub(crate) tracking_map_full: u64,
    /// Sockets or pids the LRU tracking maps evicted; `None` where the
    /// maps' counts cannot be read.
    pub(crate) tracking_map_evictions: Option<u64>,
    /// Program runs the kernel skipped; `None` where it does not count them.
    pub(crate) missed_program_runs: Option<u64>,
    /// Ring-buffer records that did not decode.
    pub(crate) undecodable_events: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(kernel: Option<KernelSummary>) -> Summary {
        let stats = probe::DestinationStats { established: 3, refused: 1, timeout: 0, diverted: 2, ..Default::default() };
        Summary {
            events: 9,
            attempts: stats.clone(),
            in_flight: 1,
            runtime_invocations: RuntimeInvocations { judged: 4, failed: 1, in_flight: 0 },
            runtime_latency: BTreeMap::from([("exec".to_string(), exec::LatencyStats { count: 0, p50_ms: 0.0, p99_ms: 0.0, max_ms: 0.0 })]),
            verdicts: BTreeMap::from([("probe_refused", 1), ("synack_diverted", 2)]),
            destinations: vec![DestinationSummary { daddr: [10, 200, 1, 2].into(), dport: 8080, stats }],
            kernel,
            throttled: None,
        }
    }

    #[test]
    fn the_summary_keeps_its_json_shape_and_order() {
        let replayed = serde_json::to_string(&summary(None)).unwrap();
        assert_eq!(
            replayed,
            r#"{"events":9,"attempts":{"established":3,"refused":1,"timeout":0,"diverted":2,"no_response":0,"http_error":0,"dropped_by_pod":0},"in_flight":1,"#.to_string()
                + r#""runtime_invocations":{"judged":4,"failed":1,"in_flight":0},"runtime_latency":{"exec":{"count":0,"p50_ms":0.0,"p99_ms":0.0,"max_ms":0.0}},"#
                + r#""verdicts":{"probe_refused":1,"synack_diverted":2},"#
                + r#""destinations":[{"daddr":"10.200.1.2","dport":8080,"established":3,"refused":1,"timeout":0,"diverted":2,"no_response":0,"http_error":0,"dropped_by_pod":0}]}"#
        );
        let kernel = KernelSummary { lost_events: 5, tracking_map_full: 0, tracking_map_evictions: Some(0), missed_program_runs: None, undecodable_events: 1 };
        let traced = serde_json::to_value(summary(Some(kernel))).unwrap();
        let keys: Vec<&str> = traced.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(
            keys[7..],
            ["lost_events", "tracking_map_full", "tracking_map_evictions", "missed_program_runs", "undecodable_events"]
        );
        assert!(traced["missed_program_runs"].is_null());
    }
}

//! How long runtime calls take: durations by subcommand, percentiles per
//! interval, and `runtime_slow`.

use super::*;

/// Durations of runc calls by subcommand, with the slowest few.
#[derive(Debug, Clone, Default)]
pub(super) struct LatencyWindow {
    pub(super) started_ns: u64,
    pub(super) by_subcommand: BTreeMap<String, Vec<u64>>,
    /// (duration, pid, container) of the slowest calls, slowest first.
    pub(super) slowest: Vec<(u64, u32, String, Option<String>)>,
}

impl LatencyWindow {
    pub(super) fn add(&mut self, sub: &str, ns: u64, pid: u32, container: Option<String>) {
        let samples = self.by_subcommand.entry(sub.to_string()).or_default();
        // Bounded for a daemon that runs for weeks: percentiles over the
        // most recent calls.
        if samples.len() >= MAX_SAMPLES {
            samples.drain(..MAX_SAMPLES / 2);
        }
        samples.push(ns);
        self.slowest.push((ns, pid, sub.to_string(), container));
        self.slowest.sort_by_key(|s| std::cmp::Reverse(s.0));
        self.slowest.truncate(3);
    }

    /// Percentiles per subcommand.
    pub(super) fn stats(&self) -> BTreeMap<String, LatencyStats> {
        let stats = |durations: &Vec<u64>| {
            let mut d = durations.clone();
            d.sort_unstable();
            LatencyStats {
                count: d.len(),
                p50_ms: ms(percentile(&d, 50)),
                p99_ms: ms(percentile(&d, 99)),
                max_ms: ms(*d.last().unwrap_or(&0)),
            }
        };
        self.by_subcommand.iter().map(|(sub, d)| (sub.clone(), stats(d))).collect()
    }
}

/// One subcommand's durations in a window (or the whole run).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct LatencyStats {
    pub count: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

/// Durations kept per subcommand.
const MAX_SAMPLES: usize = 10_000;

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[u64], p: usize) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (p * sorted.len()).div_ceil(100).max(1);
    sorted[rank - 1]
}

fn ms(ns: u64) -> f64 {
    (ns as f64 / 1e6 * 10.0).round() / 10.0
}
impl<H: ProcessFacts> ExecCorrelator<H> {
    /// Durations of runc calls that ended since the last call.
    pub fn take_durations(&mut self) -> Vec<(String, u64)> {
        std::mem::take(&mut self.recent)
    }

    /// Runtime latency over the whole run, for the summary.
    pub fn latency_summary(&self) -> BTreeMap<String, LatencyStats> {
        self.total.stats()
    }

    /// Called periodically: closes the latency interval once it is long
    /// enough and judges it.
    pub fn tick(&mut self, now_ns: u64) -> Option<Report> {
        if self.interval.started_ns == 0 {
            // Nothing ended yet: a stuck call opens the interval, so it is
            // reported once per interval, not on every tick.
            if !self.backlog(now_ns).is_empty() {
                self.interval.started_ns = now_ns;
            }
            return None;
        }
        if now_ns.saturating_sub(self.interval.started_ns) < self.settings.latency_interval_ns {
            return None;
        }
        self.close_latency_interval(now_ns)
    }

    /// runc calls still running past the slow threshold: (pid, subcommand, age).
    fn backlog(&self, now_ns: u64) -> Vec<(u32, String, u64)> {
        self.invocations
            .values()
            .map(|inv| (inv.started.pid, inv.command.subcommand.clone().unwrap_or_default(), now_ns.saturating_sub(inv.started.ts_ns)))
            .filter(|(_, sub, age)| *age >= self.settings.slow_threshold_ns && !matches!(sub.as_str(), "run" | "events"))
            .collect()
    }

    /// `runtime_slow` when a subcommand's p99 in the interval, or a call
    /// still running, is past the threshold: kubelet's relist (PLEG) waits
    /// on these calls, and the node goes NotReady when a relist takes more
    /// than 3 minutes.
    pub(super) fn close_latency_interval(&mut self, now_ns: u64) -> Option<Report> {
        let window = std::mem::take(&mut self.interval);
        let threshold = self.settings.slow_threshold_ns;
        let backlog = self.backlog(now_ns);
        let slow: Vec<(String, u64, usize)> = window
            .by_subcommand
            .iter()
            .map(|(sub, d)| {
                let mut d = d.clone();
                d.sort_unstable();
                (sub.clone(), percentile(&d, 99), d.len())
            })
            .filter(|(_, p99, _)| *p99 >= threshold)
            .collect();
        if slow.is_empty() && backlog.is_empty() {
            return None;
        }
        let mut parts: Vec<String> = slow
            .iter()
            .map(|(sub, p99, n)| format!("runc {sub} p99 {} ms over {n} calls", ms(*p99)))
            .collect();
        if !backlog.is_empty() {
            let oldest = backlog.iter().map(|b| b.2).max().unwrap_or(0);
            parts.push(format!("{} runc calls still running, the oldest for {} ms", backlog.len(), ms(oldest)));
        }
        let slowest: Vec<serde_json::Value> = window
            .slowest
            .iter()
            .map(|(d, pid, sub, c)| json!({ "pid": pid, "subcommand": sub, "container_id": c, "ms": ms(*d) }))
            .collect();
        let message = format!(
            "the container runtime is slow: {} (threshold {} ms); kubelet's pod lifecycle relist waits on such calls and the node turns NotReady (\"PLEG is not healthy\") when a relist passes 3 minutes: look at the runtime's load, its disk and the number of containers",
            parts.join("; "),
            ms(threshold)
        );
        let anchor = Event {
            ts_ns: now_ns,
            pid: window.slowest.first().map_or(0, |s| s.1),
            tid: 0,
            comm: "runc".into(),
            cgroup_id: 0,
            mode: crate::events::Mode::Tracepoint,
            body: Body::Fork { child_tid: 0 },
        };
        Some(
            Report::new("runtime_slow", &anchor)
                .with("threshold_ms", ms(threshold))
                .with("interval_ms", ms(now_ns.saturating_sub(window.started_ns.min(now_ns))))
                .with("latency", serde_json::to_value(window.stats()).unwrap_or_default())
                .with("slowest", slowest)
                .with("backlog", backlog.len())
                .message(message),
        )
    }
}

//! Pieces the benchmarks share: the conditions compared in one run, the
//! bpftrace peer, medians.

use std::{
    fmt,
    io::{BufRead, BufReader},
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

/// What runs alongside the workload in one measurement.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Condition {
    Baseline,
    ProbeTracer,
    Bpftrace,
}

impl Condition {
    pub const ALL: [Condition; 3] = [Condition::Baseline, Condition::ProbeTracer, Condition::Bpftrace];

    pub fn name(self) -> &'static str {
        match self {
            Condition::Baseline => "baseline",
            Condition::ProbeTracer => "probe-tracer",
            Condition::Bpftrace => "bpftrace",
        }
    }
}

/// Starts `bpftrace -e SCRIPT` and returns once its probes are attached.
pub fn start_bpftrace(script: &str) -> Child {
    let mut child = Command::new("bpftrace")
        .args(["-e", script])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("bpftrace (apt-get install bpftrace)");
    // It prints "Attaching N probes..." once attached.
    let mut reader = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        line.clear();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            panic!("bpftrace exited before attaching");
        }
        if line.contains("Attaching") {
            break;
        }
    }
    thread::sleep(Duration::from_millis(500));
    thread::spawn(move || for _ in reader.lines() {});
    child
}

pub fn stop_bpftrace(mut child: Child) {
    // SAFETY: plain kill(2) on our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let _ = child.wait();
}

pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

/// Throughput windows measured in run order, a baseline window between any
/// two others. This machine's throughput drifts by 10-20 % over tens of
/// seconds (host noise), more than the 2 % being measured, so each tracer
/// window is compared with the mean of the baselines right before and after
/// it, and the paired ratios are summarised by median and quartiles.
#[derive(Default)]
pub struct Windows {
    runs: Vec<(Condition, f64)>,
}

/// Paired ratios of one condition to its neighbouring baselines.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct RatioSummary {
    pub windows: usize,
    pub median: f64,
    pub p25: f64,
    pub p75: f64,
}

/// `median [p25-p75]`, padded to the requested width.
impl fmt::Display for RatioSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&format!("{:.3} [{:.3}-{:.3}]", self.median, self.p25, self.p75))
    }
}

impl Windows {
    pub fn push(&mut self, condition: Condition, rate: f64) {
        self.runs.push((condition, rate));
    }

    pub fn rates(&self, condition: Condition) -> Vec<f64> {
        self.runs.iter().filter(|(c, _)| *c == condition).map(|(_, r)| *r).collect()
    }

    pub fn paired_ratios(&self, condition: Condition) -> Vec<f64> {
        let mut ratios = Vec::new();
        for (i, (c, rate)) in self.runs.iter().enumerate() {
            if *c != condition || condition == Condition::Baseline {
                continue;
            }
            let before = self.runs[..i].iter().rev().find(|(c, _)| *c == Condition::Baseline);
            let after = self.runs[i + 1..].iter().find(|(c, _)| *c == Condition::Baseline);
            let base = match (before, after) {
                (Some((_, b)), Some((_, a))) => (a + b) / 2.0,
                (Some((_, b)), None) | (None, Some((_, b))) => *b,
                (None, None) => continue,
            };
            ratios.push(rate / base);
        }
        ratios
    }

    pub fn summary(&self, condition: Condition) -> Option<RatioSummary> {
        let mut r = self.paired_ratios(condition);
        if r.is_empty() {
            return None;
        }
        r.sort_by(|a, b| a.partial_cmp(b).unwrap());
        let at = |q: f64| r[((r.len() - 1) as f64 * q).round() as usize];
        Some(RatioSummary { windows: r.len(), median: at(0.5), p25: at(0.25), p75: at(0.75) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratios_are_paired_with_the_neighbouring_baselines() {
        let mut w = Windows::default();
        // Drift from 100 to 200: a tracer costing 10 % reads 0.90 in both
        // windows, though its raw rate rose with the drift.
        for (c, r) in [(Condition::Baseline, 100.0), (Condition::ProbeTracer, 99.0), (Condition::Baseline, 120.0),
            (Condition::Bpftrace, 110.0), (Condition::Baseline, 200.0), (Condition::ProbeTracer, 180.0), (Condition::Baseline, 200.0)]
        {
            w.push(c, r);
        }
        let ours = w.paired_ratios(Condition::ProbeTracer);
        assert_eq!(ours.len(), 2);
        assert!((ours[0] - 0.9).abs() < 1e-9 && (ours[1] - 0.9).abs() < 1e-9, "{ours:?}");
        assert_eq!(w.paired_ratios(Condition::Bpftrace), vec![110.0 / 160.0]);
        assert!(w.paired_ratios(Condition::Baseline).is_empty());
        let s = w.summary(Condition::ProbeTracer).unwrap();
        assert_eq!(s.windows, 2);
        assert!((s.median - 0.9).abs() < 1e-9);
        assert_eq!(format!("{s:>21}"), "  0.900 [0.900-0.900]");
    }
}

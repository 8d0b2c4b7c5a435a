//! What the probed container's CPU went through in a probe's window,
//! measured: its cgroup's throttling and pressure counters sampled every
//! [`SAMPLE_PERIOD_NS`] while it is being probed, the window taken from the
//! last sample before the probe's connect to a reading at its verdict.
//!
//! A probe's record reaches userspace only when it ends, so its start
//! cannot be read then: the sampler runs ahead, for the destinations probes
//! went to in the last [`IDLE_NS`] and no others (a container no one probes
//! costs nothing).

use std::{
    collections::{HashMap, VecDeque},
    net::IpAddr,
};

use serde_json::json;

use crate::{
    cgroup_cpu::{CpuReading, ServingCgroup, same_life},
    diagnose::{Report, Slot},
    network::NetworkFacts,
};

pub const SAMPLE_PERIOD_NS: u64 = 100_000_000;
/// Samples kept per container: windows longer than this are not measured.
const HISTORY_NS: u64 = 35_000_000_000;
/// A destination no probe went to for this long is no longer sampled.
const IDLE_NS: u64 = 120_000_000_000;
/// A destination whose serving process was not found is looked for again
/// after this long.
const LOOK_AGAIN_NS: u64 = 10_000_000_000;
/// Containers sampled at once, at most (the least recently probed go).
const TARGETS_MAX: usize = 64;

/// Throttled or waiting for this share of the window explains a stall.
const EXPLAINS: f64 = 0.5;

type Dest = (IpAddr, u16);

#[derive(Debug, Default)]
struct Target {
    cgroup: Option<ServingCgroup>,
    looked_ns: Option<u64>,
    samples: VecDeque<CpuReading>,
    probed_ns: u64,
}

#[derive(Debug, Default)]
pub struct CpuSampler {
    targets: HashMap<Dest, Target>,
    /// Destinations dropped to keep within [`TARGETS_MAX`].
    pub evicted: u64,
    last_tick_ns: u64,
}

/// The window's numbers, or why there are none.
#[derive(Debug, Clone, PartialEq)]
pub enum CpuWindow {
    Measured(Measured),
    /// Why not: said in the verdict rather than guessed; the serving
    /// cgroup where known.
    Unmeasured(&'static str, Option<String>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Measured {
    pub cgroup: String,
    /// From the sample before the probe's start to the reading after its
    /// end (a little longer than the probe's own window).
    pub window_ms: u64,
    pub throttled_ms: u64,
    pub throttled_periods: u64,
    pub periods: u64,
    pub cpu_limit: Option<f64>,
    pub cpu_pressure_ms: Option<u64>,
    pub memory_pressure_ms: Option<u64>,
}

impl CpuSampler {
    /// A probe went to `dest`: sample its container from now on.
    pub fn note(&mut self, dest: Dest, now_ns: u64) {
        if !self.targets.contains_key(&dest)
            && self.targets.len() >= TARGETS_MAX
            && let Some(oldest) = self.targets.iter().min_by_key(|(_, t)| t.probed_ns).map(|(d, _)| *d)
        {
            self.targets.remove(&oldest);
            self.evicted += 1;
        }
        let t = self.targets.entry(dest).or_default();
        t.probed_ns = t.probed_ns.max(now_ns);
    }

    /// The newest sample's time over all targets (recorded sequences step
    /// the sampler up to each event).
    #[cfg(test)]
    pub fn targets_sampled_until(&self) -> u64 {
        self.last_tick_ns
    }

    pub fn sampled(&self) -> usize {
        self.targets.values().filter(|t| t.cgroup.is_some()).count()
    }

    /// One sample of every probed container.
    pub fn tick<N: NetworkFacts>(&mut self, node: &N, now_ns: u64) {
        self.last_tick_ns = now_ns;
        self.targets.retain(|_, t| now_ns.saturating_sub(t.probed_ns) < IDLE_NS);
        for (&(addr, port), t) in &mut self.targets {
            if t.cgroup.is_none() {
                if t.looked_ns.is_some_and(|l| now_ns.saturating_sub(l) < LOOK_AGAIN_NS) {
                    continue;
                }
                t.looked_ns = Some(now_ns);
                t.cgroup = node.serving_cgroup(addr, port);
            }
            let Some(cgroup) = &t.cgroup else { continue };
            match node.cpu_reading(cgroup, now_ns) {
                // A restarted container: a new cgroup, maybe at the same path.
                Some(r) if t.samples.back().is_some_and(|last| !same_life(last, &r)) => {
                    t.samples.clear();
                    t.samples.push_back(r);
                }
                Some(r) => t.samples.push_back(r),
                None => {
                    t.cgroup = None;
                    t.samples.clear();
                }
            }
            while t.samples.front().is_some_and(|s| now_ns.saturating_sub(s.ts_ns) > HISTORY_NS) {
                t.samples.pop_front();
            }
        }
    }

    /// The container's CPU from before `start_ns` to now (the verdict, at
    /// `end_ns`). A destination not looked up yet is looked up now, for
    /// the cgroup's name: its sampling starts with this verdict.
    pub fn window<N: NetworkFacts>(&mut self, node: &N, dest: Dest, start_ns: u64, end_ns: u64) -> CpuWindow {
        let Some(t) = self.targets.get_mut(&dest) else { return CpuWindow::Unmeasured("no_sampler", None) };
        if t.cgroup.is_none() && t.looked_ns.is_none() {
            t.looked_ns = Some(end_ns);
            t.cgroup = node.serving_cgroup(dest.0, dest.1);
        }
        let Some(cgroup) = &t.cgroup else { return CpuWindow::Unmeasured("serving_process_not_found", None) };
        let path = || Some(cgroup.path.clone());
        let Some(before) = t.samples.iter().rev().find(|s| s.ts_ns <= start_ns) else {
            return CpuWindow::Unmeasured("no_sample_before_the_probe", path());
        };
        // `between` says cgroup_gone for a reading of another life.
        let Some(after) = node.cpu_reading(cgroup, end_ns).or_else(|| t.samples.back().copied()) else {
            return CpuWindow::Unmeasured("cgroup_gone", path());
        };
        CpuWindow::between(cgroup, before, &after)
    }
}

impl CpuWindow {
    /// What the cgroup went through from one reading to a later one.
    pub fn between(cgroup: &ServingCgroup, before: &CpuReading, after: &CpuReading) -> Self {
        if after.ts_ns <= before.ts_ns || !same_life(before, after) {
            return Self::Unmeasured("cgroup_gone", Some(cgroup.path.clone()));
        }
        let pressure = |b: Option<u64>, a: Option<u64>| Some(a?.saturating_sub(b?) / 1000);
        Self::Measured(Measured {
            cgroup: cgroup.path.clone(),
            window_ms: after.ts_ns.saturating_sub(before.ts_ns) / 1_000_000,
            throttled_ms: after.throttled_us.saturating_sub(before.throttled_us) / 1000,
            throttled_periods: after.nr_throttled.saturating_sub(before.nr_throttled),
            periods: after.nr_periods.saturating_sub(before.nr_periods),
            cpu_limit: after.cpu_limit,
            cpu_pressure_ms: pressure(before.cpu_some_us, after.cpu_some_us),
            memory_pressure_ms: pressure(before.memory_some_us, after.memory_some_us),
        })
    }

    /// The fields every probe verdict with a window carries.
    pub fn add_to(&self, r: Report) -> Report {
        let cgroup = match self {
            Self::Measured(m) => Some(&m.cgroup),
            Self::Unmeasured(_, c) => c.as_ref(),
        };
        let mut r = self.add_counters_to(r);
        if let Some(c) = cgroup {
            r.workload.cgroup = Slot::Known(c.clone());
        }
        r
    }

    /// The same without `cgroup`, for verdicts that name it already.
    pub fn add_counters_to(&self, r: Report) -> Report {
        match self {
            Self::Measured(m) => r
                .with("cpu_window_ms", m.window_ms)
                .with("cpu_throttled_ms", m.throttled_ms)
                .with("cpu_throttled_periods", m.throttled_periods)
                .with("cpu_periods", m.periods)
                .with("cpu_limit", json!(m.cpu_limit.map(round3)))
                .with("cpu_pressure_ms", json!(m.cpu_pressure_ms))
                .with("memory_pressure_ms", json!(m.memory_pressure_ms))
                .with("cpu_measured", "sampled"),
            Self::Unmeasured(why, _) => r
                .with("cpu_throttled_ms", json!(null))
                .with("cpu_throttled_periods", json!(null))
                .with("cpu_limit", json!(null))
                .with("cpu_pressure_ms", json!(null))
                .with("memory_pressure_ms", json!(null))
                .with("cpu_measured", *why),
        }
    }

    /// The phrase that explains a stall, when the container's limits do.
    pub fn explanation(&self) -> Option<String> {
        let Self::Measured(m) = self else { return None };
        let window = m.window_ms.max(1) as f64;
        let limit = m.cpu_limit.map(|l| format!(" at a limit of {} CPU", round3(l))).unwrap_or_default();
        // Throttled time is summed over the CPUs the container ran on (it
        // can exceed the window); the share of periods throttled cannot.
        let periods_share = m.throttled_periods as f64 / m.periods.max(1) as f64;
        if periods_share >= EXPLAINS || m.throttled_ms as f64 >= EXPLAINS * window {
            return Some(format!(
                "its container was CPU-throttled in {} of {} periods of the {} ms around the probe ({} ms throttled \
                 over its CPUs){limit}: raise resources.limits.cpu or the probe's timeoutSeconds",
                m.throttled_periods, m.periods, m.window_ms, m.throttled_ms
            ));
        }
        if let Some(p) = m.cpu_pressure_ms.filter(|p| *p as f64 >= EXPLAINS * window) {
            return Some(format!(
                "its container waited for CPU for {p} ms of the {} ms around the probe (cpu pressure; throttled {} ms): \
                 the node's CPUs are contended; raise resources.requests.cpu or move the pod",
                m.window_ms, m.throttled_ms
            ));
        }
        if let Some(p) = m.memory_pressure_ms.filter(|p| *p as f64 >= EXPLAINS * window) {
            return Some(format!(
                "its container stalled on memory for {p} ms of the {} ms around the probe (memory pressure): raise \
                 resources.limits.memory or find what fills it",
                m.window_ms
            ));
        }
        None
    }

    /// The clause that rules the container's limits out, or says they
    /// could not be measured.
    pub fn ruled_out(&self) -> String {
        match self {
            Self::Measured(m) => {
                format!("its container was not held back by its limits ({} ms CPU-throttled of {} ms)", m.throttled_ms, m.window_ms)
            }
            Self::Unmeasured(why, _) => format!("its container's CPU in the window is unknown ({})", why.replace('_', " ")),
        }
    }
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::network::StaticNetwork;

    const S: u64 = 1_000_000_000;
    const MS: u64 = 1_000_000;

    fn cgroup(path: &str) -> ServingCgroup {
        ServingCgroup { pid: 7, path: path.into(), cpu_dir: PathBuf::from(path), psi_dir: None, v1: false }
    }

    fn reading(ts_ns: u64, throttled_ms: u64, periods: u64) -> CpuReading {
        CpuReading {
            ts_ns,
            throttled_us: throttled_ms * 1000,
            nr_throttled: periods,
            nr_periods: periods + 1,
            cpu_some_us: Some(throttled_ms * 1000),
            memory_some_us: Some(0),
            cpu_limit: Some(0.01),
        }
    }

    fn node(readings: Vec<CpuReading>) -> StaticNetwork {
        let pod: IpAddr = [10, 200, 1, 2].into();
        StaticNetwork { serving: vec![((pod, 8080), cgroup("/kubepods/pod1/c1"))], readings: vec![("/kubepods/pod1/c1".into(), readings)], ..Default::default() }
    }

    #[test]
    fn a_probed_container_is_sampled_and_its_window_measured() {
        let dest = ([10, 200, 1, 2].into(), 8080);
        let n = node((0..30).map(|i| reading(i * 100 * MS, i * 90, i)).collect());
        let mut s = CpuSampler::default();
        s.note(dest, 0);
        for i in 0..30 {
            s.tick(&n, i * 100 * MS);
        }
        // A probe from 1.05 s to 2.05 s: from the 1.0 s sample to the
        // reading at 2.0 s (the newest at or before the verdict).
        let CpuWindow::Measured(m) = s.window(&n, dest, S + 50 * MS, 2 * S + 50 * MS) else { panic!() };
        assert_eq!((m.window_ms, m.throttled_ms, m.throttled_periods, m.cpu_limit), (1000, 900, 10, Some(0.01)));
        let why = CpuWindow::Measured(m).explanation().unwrap();
        assert!(why.contains("CPU-throttled in 10 of 10 periods of the 1000 ms") && why.contains("limit of 0.01 CPU"), "{why}");
    }

    #[test]
    fn no_sample_before_the_probe_is_said_not_guessed() {
        let dest = ([10, 200, 1, 2].into(), 8080);
        let n = node(vec![reading(5 * S, 0, 0)]);
        let mut s = CpuSampler::default();
        assert_eq!(s.window(&n, dest, S, 2 * S), CpuWindow::Unmeasured("no_sampler", None));
        s.note(dest, 5 * S);
        s.tick(&n, 5 * S);
        let named = Some("/kubepods/pod1/c1".to_string());
        assert_eq!(s.window(&n, dest, S, 6 * S), CpuWindow::Unmeasured("no_sample_before_the_probe", named));
        // Another destination: no serving process known.
        let other = ([10, 200, 1, 3].into(), 80);
        s.note(other, 5 * S);
        s.tick(&n, 5 * S);
        assert_eq!(s.window(&n, other, S, 6 * S), CpuWindow::Unmeasured("serving_process_not_found", None));
    }

    #[test]
    fn an_unthrottled_container_is_ruled_out_and_idle_ones_are_dropped() {
        let dest = ([10, 200, 1, 2].into(), 8080);
        let n = node((0..30).map(|i| reading(i * 100 * MS, 0, 0)).collect());
        let mut s = CpuSampler::default();
        s.note(dest, 0);
        for i in 0..30 {
            s.tick(&n, i * 100 * MS);
        }
        let w = s.window(&n, dest, S, 2 * S);
        assert_eq!(w.explanation(), None);
        assert!(w.ruled_out().contains("not held back"), "{}", w.ruled_out());
        s.tick(&n, 200 * S);
        assert_eq!(s.targets.len(), 0, "no probe for two minutes: not sampled");
    }

    #[test]
    fn the_sampled_set_is_bounded() {
        let mut s = CpuSampler::default();
        for i in 0..(TARGETS_MAX as u16 + 10) {
            s.note(([10, 0, 0, 1].into(), i), u64::from(i));
        }
        assert_eq!(s.targets.len(), TARGETS_MAX);
        assert_eq!(s.evicted, 10);
        assert!(!s.targets.contains_key(&([10, 0, 0, 1].into(), 0)), "the least recently probed went");
    }
}

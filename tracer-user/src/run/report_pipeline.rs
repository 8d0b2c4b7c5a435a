//! The report pipeline: what becomes of each ring-buffer record, from
//! decoding to the written report, and the once-a-second housekeeping
//! (lost events, stale attempts, the kernel's counts) that feeds it too.

use std::{
    fs::File,
    io::{BufWriter, Write},
    sync::Arc,
};

use anyhow::Result;
use aya::maps::{MapData, RingBuf};
use serde_json::json;

use super::STALE_ATTEMPT_NS;
use crate::{
    diagnose::{
        Correlators, Report, Slot, Workload,
        catalogue::{Class, Subject},
    },
    enrich::Enricher,
    events,
    processes::LiveProcesses,
    k8s::client::EventPoster,
    loader::Tracer,
    metrics::Metrics,
    network::LiveNetwork,
    output::{Clock, Output, text},
    throttle::{Admit, LossTracker, RateLimiter},
};

/// The way from a ring-buffer record to a written report: decoded,
/// recorded if asked, diagnosed, then each report marked, counted,
/// rate-limited, enriched, posted and written.
pub(super) struct ReportPipeline {
    pub(super) agg: Correlators<LiveNetwork, LiveProcesses>,
    pub(super) out: Output,
    pub(super) recorder: Option<BufWriter<File>>,
    pub(super) undecodable: u64,
    pub(super) metrics: Option<Arc<Metrics>>,
    /// Print attempt records (`tcp_attempt`; not with --verdicts-only).
    pub(super) print_attempts: bool,
    pub(super) enricher: Enricher<LiveProcesses>,
    /// Set with --emit-events.
    pub(super) poster: Option<EventPoster>,
    /// Per-source limit on what is printed, enriched and posted.
    pub(super) limiter: RateLimiter,
    pub(super) loss: LossTracker,
    /// The kernel counts healthy probes instead of sending their records.
    pub(super) established_in_kernel: bool,
}

impl ReportPipeline {
    /// Once a second: lost events, the rate limit's memory, stale attempts,
    /// the kernel's healthy-probe counts, the metrics' kernel gauges.
    pub(super) fn housekeeping(&mut self, tracer: &mut Tracer) -> Result<()> {
        let now = Clock::monotonic_now_ns();
        let c = tracer.counters()?;
        self.lost(c.events_lost(), now)?;
        self.limiter.prune(now);
        for r in self.agg.expire(Clock::monotonic_now_ns(), STALE_ATTEMPT_NS) {
            self.emit(r)?;
        }
        if self.established_in_kernel {
            self.kernel_established(tracer)?;
        }
        if let Some(m) = &self.metrics {
            m.kernel(&c, c.ringbuf_high_water as f64 / tracer.ringbuf_bytes() as f64);
            tracer.reset_high_water()?;
            m.heartbeat();
        }
        Ok(())
    }

    /// Handles up to `budget` records; true when the buffer was emptied.
    pub(super) fn drain(&mut self, rb: &mut RingBuf<MapData>, budget: usize) -> Result<bool> {
        let mut emptied = false;
        for _ in 0..budget {
            let Some(item) = rb.next() else {
                emptied = true;
                break;
            };
            let Some(decoded) = events::decode(&item) else {
                self.undecodable += 1;
                continue;
            };
            for ev in decoded {
                if let Some(rec) = self.recorder.as_mut() {
                    serde_json::to_writer(&mut *rec, &ev)?;
                    rec.write_all(b"\n")?;
                }
                for r in self.agg.handle(&ev) {
                    self.emit(r)?;
                }
            }
        }
        self.drained()?;
        Ok(emptied)
    }

    /// After a drain: slow exec probe commands judged, the runtime call
    /// durations and event count to the metrics.
    fn drained(&mut self) -> Result<()> {
        // Exec probe commands that came near their timeout: judged here,
        // where the pod's spec is.
        for done in self.agg.exec.take_commands_done() {
            if let Some(warning) = self.enricher.exec_near_timeout(done) {
                self.emit(warning)?;
            }
        }
        // Taken on every drain, so they do not pile up when no one reads them.
        let durations = self.agg.exec.take_durations();
        if let Some(m) = &self.metrics {
            for (sub, ns) in durations {
                m.runtime_call(&sub, ns);
            }
            m.events(self.agg.events.saturating_sub(self.counted_events()));
        }
        Ok(())
    }

    /// Takes in the healthy probes the kernel counted since the last call.
    pub(super) fn kernel_established(&mut self, tracer: &Tracer) -> Result<()> {
        let new = self.agg.probe.kernel_established(&tracer.established_counts()?, Clock::monotonic_now_ns());
        if let Some(m) = &self.metrics {
            m.established(new);
        }
        Ok(())
    }

    fn counted_events(&self) -> u64 {
        self.metrics.as_ref().map_or(0, |m| m.events_seen())
    }

    /// The kernel's cumulative lost-event count: an `events_lost` record
    /// when loss starts (then at most once a minute while it goes on).
    pub(super) fn lost(&mut self, lost_total: u64, now_ns: u64) -> Result<()> {
        if let Some(rec) = self.loss.observe(lost_total, now_ns) {
            let text = text::events_lost(rec.lost, rec.lost_total, STALE_ATTEMPT_NS / 1_000_000_000);
            self.out.record("events_lost", json!({ "lost": rec.lost, "lost_total": rec.lost_total, "message": text }), &text)?;
        }
        Ok(())
    }

    /// A report on its way out: marked incomplete after a loss, counted,
    /// then (an attempt) warned about near its timeout and written only if
    /// attempts are printed, or (anything else) let through the per-source
    /// rate limit; then enriched, posted and written.
    pub(super) fn emit(&mut self, mut r: Report) -> Result<()> {
        let now = Clock::monotonic_now_ns();
        self.mark_incomplete(&mut r, now);
        self.count(&r);
        let attempt = r.catalogued().is_some_and(|k| k.class == Class::Attempt);
        if attempt {
            self.warn_near_timeout(&r, now)?;
            if !self.print_attempts {
                return Ok(());
            }
        } else if !self.admit(&r, now)? {
            return Ok(());
        }
        self.publish(r)
    }

    /// A verdict within STALE_ATTEMPT_NS of lost events says it may be
    /// incomplete.
    fn mark_incomplete(&self, r: &mut Report, now: u64) {
        let verdict = r.is_verdict();
        if verdict && self.loss.incomplete(now) {
            r.incomplete = true;
            r.message.push_str(text::INCOMPLETE);
        }
    }

    /// The metrics count every report, throttled or not, printed or not.
    fn count(&self, r: &Report) {
        if let Some(m) = &self.metrics {
            m.report(r);
        }
    }

    /// A slow answer that the pod's spec says is near its timeout: a
    /// warning, whether attempts are printed or not.
    fn warn_near_timeout(&mut self, r: &Report, now: u64) -> Result<()> {
        if let Some(warning) = self.enricher.near_timeout(r, now) {
            self.emit(warning)?;
        }
        Ok(())
    }

    /// Whether `r` is within its source's budget, so one container's flood
    /// cannot drown the rest. The first report held back is written as a
    /// `throttled` record instead; the others only counted.
    fn admit(&mut self, r: &Report, now: u64) -> Result<bool> {
        let source = source_of(r);
        match self.limiter.admit(&source, now) {
            Admit::Pass => Ok(true),
            Admit::Dropped => {
                self.count_throttled();
                Ok(false)
            }
            Admit::ThrottlingStarted => {
                self.count_throttled();
                let mut t = throttled_record(r, source);
                self.enricher.enrich(&mut t);
                self.out.report(&t)?;
                Ok(false)
            }
        }
    }

    fn count_throttled(&self) {
        if let Some(m) = &self.metrics {
            m.throttled();
        }
    }

    /// Pod names added, the Kubernetes Event posted (--emit-events), the
    /// report written.
    fn publish(&mut self, mut r: Report) -> Result<()> {
        let event = self.enricher.enrich(&mut r);
        if let (Some(poster), Some(event)) = (&self.poster, event) {
            poster.post(event);
        }
        self.out.report(&r)
    }
}

/// Whose reports these are, for the rate limit: the probed pod (by its
/// address) for a prober's connection, the container's cgroup for what
/// happens in one, the node for node-wide reports.
fn source_of(r: &Report) -> String {
    match r.catalogued().map(|k| k.subject) {
        Some(Subject::Probe) => match &r.connection {
            Some(c) => format!("pod address {}", c.daddr),
            None => "pod address ?".to_string(),
        },
        Some(Subject::Node) => format!("node ({})", r.kind),
        Some(Subject::Container) | None if r.cgroup_id != 0 => format!("cgroup {}", r.cgroup_id),
        Some(Subject::Container) | None => format!("pid {}", r.pid),
    }
}

/// The `throttled` record that stands for `r` and the reports from `source`
/// held back after it. It keeps the first held-back report's identity (pid,
/// cgroup, addresses), so enrichment names the pod.
fn throttled_record(r: &Report, source: String) -> Report {
    let mut t = Report::on_same_process("throttled", r).with("source", source.clone()).with("throttled_kind", r.kind);
    if let Some(c) = &r.connection {
        t = t.with("daddr", c.daddr.to_string());
    }
    // The event's cgroup, not the workload's cgroup_id: the record names
    // the source it throttles.
    let cgroup_id = if r.cgroup_id != 0 { Slot::Known(r.cgroup_id) } else { Slot::Absent };
    t.workload = Workload { cgroup_id, ..r.workload.clone() };
    t.message = text::throttled(&source, r.kind);
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        diagnose::probe::ProbeSettings,
        output::Format,
        run::LOSS_RECORD_EVERY_NS,
    };

    struct Shared(Arc<std::sync::Mutex<Vec<u8>>>);
    impl Write for Shared {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().write(b)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn test_pipeline() -> (ReportPipeline, Arc<std::sync::Mutex<Vec<u8>>>, Arc<Metrics>) {
        let buf = Arc::new(std::sync::Mutex::new(Vec::new()));
        let metrics = Metrics::new();
        let host = LiveProcesses::default();
        let pipeline = ReportPipeline {
            agg: Correlators::new(ProbeSettings::default(), LiveNetwork, Default::default(), host.clone()),
            out: Output::to_writer(Format::Json, Clock::now(), Box::new(Shared(buf.clone()))),
            recorder: None,
            undecodable: 0,
            metrics: Some(metrics.clone()),
            print_attempts: false,
            enricher: Enricher::new(Default::default(), host),
            poster: None,
            limiter: RateLimiter::default(),
            loss: LossTracker::new(STALE_ATTEMPT_NS, LOSS_RECORD_EVERY_NS),
            established_in_kernel: false,
        };
        (pipeline, buf, metrics)
    }

    fn fork_failed(cgroup_id: u64) -> Report {
        let ev = crate::events::Event {
            ts_ns: 1,
            pid: 9,
            tid: 9,
            comm: "runc:[2:INIT]".into(),
            cgroup_id,
            mode: crate::events::Mode::Tracepoint,
            body: crate::events::Body::Fork { child_tid: 10 },
        };
        Report::new("fork_failed", &ev).with("errno_name", "EAGAIN").message("fork failed".into())
    }

    #[test]
    fn a_throttled_record_keeps_the_container_and_names_the_events_cgroup() {
        let mut r = fork_failed(666);
        r.workload = Workload { container_id: Slot::Known("ab".repeat(32)), cgroup_id: Slot::Known(5), ..Default::default() };
        let t = throttled_record(&r, "cgroup 666".into()).to_json();
        assert_eq!((&t["container_id"], &t["cgroup_id"]), (&serde_json::json!("ab".repeat(32)), &serde_json::json!(666)));
        // Without the event's cgroup, none (as before typed reports).
        let mut r = fork_failed(0);
        r.workload.cgroup_id = Slot::Known(5);
        assert!(throttled_record(&r, "pid 9".into()).to_json().get("cgroup_id").is_none());
    }

    fn lines(buf: &Arc<std::sync::Mutex<Vec<u8>>>) -> Vec<serde_json::Value> {
        String::from_utf8(buf.lock().unwrap().clone()).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
    }

    #[test]
    fn a_flooding_cgroup_is_throttled_and_counted_while_another_cgroups_verdict_comes_through() {
        let (mut pipeline, buf, metrics) = test_pipeline();
        for _ in 0..500 {
            pipeline.emit(fork_failed(666)).unwrap();
        }
        pipeline.emit(fork_failed(42)).unwrap();
        let out = lines(&buf);
        let forks = out.iter().filter(|v| v["kind"] == "fork_failed").count();
        let throttled: Vec<_> = out.iter().filter(|v| v["kind"] == "throttled").collect();
        assert_eq!(forks, 21, "20 from the flood, 1 from the other cgroup");
        assert_eq!(throttled.len(), 1, "one record when throttling starts");
        assert_eq!(throttled[0]["source"], "cgroup 666");
        assert_eq!(throttled[0]["throttled_kind"], "fork_failed");
        assert_eq!(pipeline.limiter.suppressed, 480);
        let text = metrics.encode();
        assert!(text.contains("probe_tracer_throttled_reports_total 480"), "{text}");
        // Metrics still count every verdict.
        assert!(text.contains(r#"probe_tracer_verdicts_total{kind="fork_failed",reason="EAGAIN"} 501"#), "{text}");
    }

    #[test]
    fn loss_gives_one_events_lost_record_and_marks_verdicts_incomplete() {
        let (mut pipeline, buf, _) = test_pipeline();
        pipeline.emit(fork_failed(1)).unwrap();
        let now = Clock::monotonic_now_ns();
        pipeline.lost(0, now).unwrap();
        pipeline.lost(12, now).unwrap();
        pipeline.lost(20, now + 1).unwrap();
        pipeline.emit(fork_failed(2)).unwrap();
        let out = lines(&buf);
        let kinds: Vec<&str> = out.iter().map(|v| v["kind"].as_str().unwrap()).collect();
        assert_eq!(kinds, ["fork_failed", "events_lost", "fork_failed"]);
        assert!(out[0].get("incomplete").is_none(), "{}", out[0]);
        assert_eq!(out[1]["lost"], 12);
        assert_eq!(out[2]["incomplete"], true);
    }
}

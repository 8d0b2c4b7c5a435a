//! `probe-tracer run`: load, attach, stream events through the aggregator
//! until --duration, Ctrl-C or SIGTERM, then print a summary.

use std::{
    fs::File,
    io::{BufWriter, Write},
    path::PathBuf,
    time::Duration,
};

use anyhow::{Context, Result};
use aya::maps::{MapData, RingBuf};
use serde_json::json;
use tokio::{
    io::unix::AsyncFd,
    signal::unix::{Signal, SignalKind, signal},
    time::{Instant, Interval, MissedTickBehavior, interval, sleep_until},
};

use std::sync::Arc;

use crate::{
    cli::{DaemonArgs, RunArgs, Switch},
    diagnose::{
        Aggregator, KernelSummary, Report,
        catalogue::{Class, Subject},
        probe::ProbeSettings,
    },
    throttle::{Admit, LossTracker, RateLimiter},
    metrics::Metrics,
    events,
    kernel::info::KernelInfo,
    loader::{HookStatus, LoadOptions, Tracer},
    host::ProcHost,
    enrich::Enricher,
    k8s::{
        background::Background,
        client::{EventPoster, EventResults},
        directory::Directory,
    },
    node::ProcNode,
    output::{Clock, Format, Output, text},
};

/// Attempts older than this are judged even if the kernel never closed them
/// (the default SYN retry budget is about two minutes).
const STALE_ATTEMPT_NS: u64 = 180 * 1_000_000_000;

/// How often the ring buffer is drained without a wakeup from the kernel:
/// the most a lone verdict waits. Each tick is a wakeup of an otherwise idle
/// process (about 125 us of CPU on these virtual machines): every 50 ms that
/// was 2.7 ms of CPU a second with nothing to trace.
const DRAIN_PERIOD: Duration = Duration::from_millis(200);

/// Most ring-buffer records handled per drain before the loop yields to
/// signals, timers and housekeeping; the rest wait for the next pass.
const DRAIN_BUDGET: usize = 1024;

/// An `events_lost` record at most this often; verdicts within
/// STALE_ATTEMPT_NS of a loss carry `incomplete: true` (a lost record
/// can change a verdict that long after).
const LOSS_RECORD_EVERY_NS: u64 = 60 * 1_000_000_000;

pub async fn run(args: RunArgs) -> Result<()> {
    session(args, None).await
}

/// `probe-tracer daemon`: `run` without an end, JSON verdicts on stdout,
/// Prometheus metrics and /healthz on `metrics_addr`.
pub async fn daemon(args: DaemonArgs) -> Result<()> {
    let metrics = Metrics::new();
    let addr = args.metrics_addr().map_err(anyhow::Error::msg)?;
    crate::metrics::serve(addr, metrics.clone(), crate::metrics::ServerLimits::default())?;
    session(daemon_defaults(args.run), Some(metrics)).await
}

/// What `daemon` changes in `run`'s defaults.
fn daemon_defaults(mut run: RunArgs) -> RunArgs {
    run.format = Some(Format::Json);
    run.verdicts_only = true;
    // It runs for weeks: a syscall tracepoint's node-wide cost is not for
    // it to impose unasked (see RunArgs::syscall_tracepoints).
    run.syscall_tracepoints.get_or_insert(Switch::Off);
    run
}

async fn session(args: RunArgs, metrics: Option<Arc<Metrics>>) -> Result<()> {
    // A ready file left by an earlier run (killed, or the host restarted)
    // must not announce this one before its programs are attached.
    let ready = ReadyFile::clear(args.ready_file.clone())?;
    let (background, info, mut tracer) = load(&args, &metrics).await?;
    let clock = Clock::now();
    let mut out = Output::stdout(Format::auto(args.format), clock);
    let recorder = recorder(&args, &clock)?;

    // Nobody reads a healthy probe's record (it is neither printed nor
    // recorded): the kernel counts those per destination instead.
    let established_in_kernel = args.verdicts_only && args.record.is_none();
    if established_in_kernel {
        tracer.count_established_in_kernel()?;
    }
    let host = ProcHost::default();
    let settings = probe_settings(&args, &tracer, metrics.is_some());
    let agg = Aggregator::new(settings, ProcNode, args.diagnose.exec_settings(), host.clone());
    let mut kubernetes = Kubernetes::start(background).await;
    let enricher = Enricher::new(kubernetes.directory.clone(), host);
    // Loading parsed the kernel's BTF twice (ours and aya's): tens of MiB
    // now free. Hand them back so the daemon's RSS is its working set.
    // SAFETY: malloc_trim only releases free heap memory.
    unsafe { libc::malloc_trim(0) };
    started(&mut out, &info, &tracer.hooks, &args.prober_comms)?;

    let ring = poll_ring(&mut tracer)?;
    let mut signals = Signals::new(args.pause_signals)?;
    ready.create()?;

    let mut timers = Timers::new(args.duration);
    if let Some(m) = &metrics {
        m.hooks(&tracer.hooks);
    }
    let mut sink = Sink {
        agg,
        out,
        recorder,
        undecodable: 0,
        metrics,
        print_attempts: !args.verdicts_only,
        enricher,
        poster: kubernetes.poster.take(),
        limiter: RateLimiter::default(),
        loss: LossTracker::new(STALE_ATTEMPT_NS, LOSS_RECORD_EVERY_NS),
        established_in_kernel,
    };
    let mut running = Running { ring, tracer, ready: &ready };
    running.event_loop(&mut sink, &mut signals, &mut timers).await?;
    running.stop(&mut sink)?;
    summarize(sink, &running.tracer, kubernetes).await
}

/// The Kubernetes thread with its client (not contacted yet), the kernel,
/// and the tracer loaded and attached. Configuration problems are reported
/// before anything is loaded.
async fn load(args: &RunArgs, metrics: &Option<Arc<Metrics>>) -> Result<(Option<Background>, KernelInfo, Tracer)> {
    let emit_events = args.kubernetes.emit_events;
    let results = metrics.clone().map(|m| Arc::new(move |result: &str| m.kubernetes_event(result)) as EventResults);
    let kube = Background::start(args.kubernetes.options(), emit_events, results).await?;
    if kube.is_none() && emit_events {
        anyhow::bail!("--emit-events needs the Kubernetes API: run in a pod with a service account, or pass --kubeconfig or --kube-api");
    }
    let info = KernelInfo::probe();
    if let Some(blocker) = info.blocker() {
        anyhow::bail!(blocker);
    }
    let tracer = Tracer::load(&LoadOptions {
        groups: args.groups.clone(),
        allowed_modes: args.allowed_modes.clone(),
        syscall_tracepoints: args.syscall_tracepoints != Some(Switch::Off),
        prober_comms: args.prober_comms.clone(),
        runtime_comms: args.diagnose.runtime_comms.clone(),
        ringbuf_bytes: args.ringbuf_size,
    })?;
    Ok((kube, info, tracer))
}

/// The tracer's ring buffer, registered with the async runtime.
fn poll_ring(tracer: &mut Tracer) -> Result<AsyncFd<RingBuf<MapData>>> {
    let ring = tracer.take_ring_buffer()?;
    // SAFETY: the ring buffer owns its fd and moves into the AsyncFd, so the
    // fd stays open for as long as it is registered.
    unsafe { AsyncFd::register(ring) }.map_err(|e| anyhow::anyhow!("cannot poll the ring buffer: {e}"))
}

/// `--record`: the file, its header written.
fn recorder(args: &RunArgs, clock: &Clock) -> Result<Option<BufWriter<File>>> {
    let Some(path) = &args.record else { return Ok(None) };
    let mut file = BufWriter::new(File::create(path).with_context(|| format!("cannot create {}", path.display()))?);
    serde_json::to_writer(&mut file, &clock.header())?;
    file.write_all(b"\n")?;
    Ok(Some(file))
}

/// What the probe correlator is told about this run's hooks and output.
fn probe_settings(args: &RunArgs, tracer: &Tracer, daemon: bool) -> ProbeSettings {
    ProbeSettings {
        nodeport_range: args.diagnose.nodeport_range.clone(),
        ipvs_observed: tracer.ipvs_observed(),
        // The daemon counts every attempt's outcome without printing it.
        attempt_records: !args.verdicts_only || daemon,
        follows_close: true,
        responses_observed: tracer.hook_mode("tcp_recvmsg").is_some(),
        drop_names: crate::diagnose::probe::DropNames {
            reasons: std::sync::Arc::new(tracer.drop_reasons.clone()),
            host_netns: crate::node::own_netns(),
        },
        ..Default::default()
    }
}

/// The API server's side of a run: pod names kept current and Events
/// posted (--emit-events), on the Kubernetes thread.
struct Kubernetes {
    directory: Arc<std::sync::RwLock<Directory>>,
    /// Taken by the sink, which posts.
    poster: Option<EventPoster>,
    background: Option<Background>,
}

impl Kubernetes {
    /// Waits for the first pod lists (a few seconds at most).
    async fn start(mut background: Option<Background>) -> Self {
        let directory = match background.as_mut() {
            Some(b) => {
                b.listed().await;
                b.directory.clone()
            }
            None => Default::default(),
        };
        let poster = background.as_mut().and_then(|b| b.poster.take());
        Self { directory, poster, background }
    }

    async fn stop(self) {
        drop(self.poster);
        if let Some(b) = self.background {
            b.stop().await;
        }
    }
}

/// The signals a run answers. Both streams live across loop iterations: a
/// fresh `ctrl_c()` future per iteration misses a signal delivered while
/// another branch runs. They are set up before the ready file appears:
/// whoever waits on it may signal at once, and an unhandled SIGINT kills
/// without a summary.
struct Signals {
    term: Signal,
    int: Signal,
    /// --pause-signals: SIGUSR1 and SIGUSR2.
    pause: Option<Signal>,
    resume: Option<Signal>,
}

impl Signals {
    fn new(pause_signals: bool) -> Result<Self> {
        let term = signal(SignalKind::terminate())?;
        let int = signal(SignalKind::interrupt())?;
        let (pause, resume) = if pause_signals {
            (Some(signal(SignalKind::user_defined1())?), Some(signal(SignalKind::user_defined2())?))
        } else {
            (None, None)
        };
        Ok(Self { term, int, pause, resume })
    }
}

/// What wakes the loop besides the ring buffer and signals.
struct Timers {
    deadline: Option<Instant>,
    housekeeping: Interval,
    /// The kernel side wakes us only once a batch has built up; this timer
    /// picks up the rest, so a lone verdict is printed within DRAIN_PERIOD.
    drain: Interval,
    /// The probed containers' CPU counters, ahead of their probes' verdicts.
    cpu_sampler: Interval,
}

impl Timers {
    fn new(duration: Option<f64>) -> Self {
        // `--duration inf` (or 1e20) has no deadline rather than a panic.
        let deadline = duration.and_then(|s| crate::cli::deadline(Instant::now().into_std(), s)).map(Instant::from_std);
        let mut housekeeping = interval(Duration::from_secs(1));
        housekeeping.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut drain = interval(DRAIN_PERIOD);
        drain.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut cpu_sampler = interval(Duration::from_nanos(crate::diagnose::probe::SAMPLE_PERIOD_NS));
        cpu_sampler.set_missed_tick_behavior(MissedTickBehavior::Skip);
        Self { deadline, housekeeping, drain, cpu_sampler }
    }
}

/// The attached tracer and its ring buffer while the run lasts (the ring
/// buffer is dropped first, as the fields are).
struct Running<'a> {
    ring: AsyncFd<RingBuf<MapData>>,
    tracer: Tracer,
    ready: &'a ReadyFile,
}

impl Running<'_> {
    /// Until the deadline, SIGINT or SIGTERM.
    async fn event_loop(&mut self, sink: &mut Sink, signals: &mut Signals, timers: &mut Timers) -> Result<()> {
        loop {
            tokio::select! {
                guard = self.ring.readable_mut() => {
                    let mut guard = guard?;
                    // Readiness is cleared only once the buffer is empty: a
                    // flood is taken DRAIN_BUDGET records at a time, with the
                    // other branches (signals, housekeeping) between.
                    if sink.drain(guard.get_inner_mut(), DRAIN_BUDGET)? {
                        guard.clear_ready();
                    }
                    drop(guard);
                    tokio::task::yield_now().await;
                }
                _ = timers.drain.tick() => {
                    sink.drain(self.ring.get_mut(), DRAIN_BUDGET)?;
                }
                _ = timers.cpu_sampler.tick() => {
                    sink.agg.probe.sample_cpu(Clock::monotonic_now_ns());
                }
                _ = timers.housekeeping.tick() => sink.housekeeping(&mut self.tracer)?,
                _ = sleep_until_opt(timers.deadline) => break,
                _ = signals.int.recv() => break,
                _ = signals.term.recv() => break,
                // --pause-signals: the ready file exists exactly while attached,
                // so whoever signals waits for it to go or come back.
                _ = recv_opt(&mut signals.pause) => {
                    sink.drain(self.ring.get_mut(), usize::MAX)?;
                    self.tracer.pause();
                    self.ready.remove();
                }
                _ = recv_opt(&mut signals.resume) => {
                    self.tracer.resume()?;
                    self.ready.create()?;
                }
            }
        }
        Ok(())
    }

    /// After the loop: nothing new is traced; what arrived meanwhile is
    /// taken in and what is left judged.
    fn stop(&mut self, sink: &mut Sink) -> Result<()> {
        // The file says so before the summary does (its guard would remove
        // it on an error return too).
        self.ready.remove();
        // Drain what arrived before we stopped, then judge what is left.
        sink.drain(self.ring.get_mut(), usize::MAX)?;
        let c = self.tracer.counters()?;
        sink.lost(c.events_lost(), Clock::monotonic_now_ns())?;
        if sink.established_in_kernel {
            sink.kernel_established(&self.tracer)?;
        }
        for r in sink.agg.finish(Clock::monotonic_now_ns()) {
            sink.emit(r)?;
        }
        Ok(())
    }
}

/// The `summary` record, once the Kubernetes side had its moment.
async fn summarize(sink: Sink, tracer: &Tracer, kubernetes: Kubernetes) -> Result<()> {
    let Sink { agg, mut out, mut recorder, undecodable, poster, limiter, .. } = sink;
    drop(poster);
    kubernetes.stop().await;
    if let Some(rec) = recorder.as_mut() {
        rec.flush()?;
    }
    let counters = tracer.counters()?;
    let sink_in_flight = agg.probe.in_flight();
    let mut summary = agg.summary();
    // Attempts younger than their first retransmit are known only to the
    // kernel so far: still in flight.
    let unreported = tracer.unreported_probes(Clock::monotonic_now_ns(), STALE_ATTEMPT_NS)?;
    summary.in_flight = (sink_in_flight + unreported) as u64;
    summary.throttled = Some(limiter.suppressed);
    summary.kernel = Some(KernelSummary {
        lost_events: counters.ringbuf_full,
        tracking_map_full: counters.map_full,
        tracking_map_evictions: counters.map_evictions,
        missed_program_runs: counters.missed_runs,
        undecodable_events: undecodable,
    });
    let text = text::summary(&summary);
    out.record("summary", summary, &text)?;
    Ok(())
}

/// `--ready-file`: it exists exactly while every program is attached.
/// Whoever waits on it (a test, a benchmark, a readiness probe) may act the
/// moment it appears, so a stale one is removed before loading, and this
/// run's is removed when it stops, however it stops.
struct ReadyFile {
    path: Option<PathBuf>,
}

impl ReadyFile {
    fn clear(path: Option<PathBuf>) -> Result<Self> {
        if let Some(p) = &path {
            match std::fs::remove_file(p) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => anyhow::bail!("cannot remove the stale ready file {}: {e}", p.display()),
            }
        }
        Ok(Self { path })
    }

    fn create(&self) -> Result<()> {
        if let Some(p) = &self.path {
            File::create(p).with_context(|| format!("cannot create ready file {}", p.display()))?;
        }
        Ok(())
    }

    fn remove(&self) {
        if let Some(p) = &self.path {
            let _ = std::fs::remove_file(p);
        }
    }
}

impl Drop for ReadyFile {
    fn drop(&mut self) {
        self.remove();
    }
}

/// Where ring-buffer records go: decoded, recorded if asked, diagnosed,
/// and the resulting reports written.
struct Sink {
    agg: Aggregator<ProcNode, ProcHost>,
    out: Output,
    recorder: Option<BufWriter<File>>,
    undecodable: u64,
    metrics: Option<Arc<Metrics>>,
    /// Print attempt records (`tcp_attempt`; not with --verdicts-only).
    print_attempts: bool,
    enricher: Enricher<ProcHost>,
    /// Set with --emit-events.
    poster: Option<EventPoster>,
    /// Per-source limit on what is printed, enriched and posted.
    limiter: RateLimiter,
    loss: LossTracker,
    /// The kernel counts healthy probes instead of sending their records.
    established_in_kernel: bool,
}

impl Sink {
    /// Once a second: lost events, the rate limit's memory, stale attempts,
    /// the kernel's healthy-probe counts, the metrics' kernel gauges.
    fn housekeeping(&mut self, tracer: &mut Tracer) -> Result<()> {
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
    fn drain(&mut self, rb: &mut RingBuf<MapData>, budget: usize) -> Result<bool> {
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
    fn kernel_established(&mut self, tracer: &Tracer) -> Result<()> {
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
    fn lost(&mut self, lost_total: u64, now_ns: u64) -> Result<()> {
        if let Some(rec) = self.loss.observe(lost_total, now_ns) {
            let text = text::events_lost(rec.lost, rec.lost_total, STALE_ATTEMPT_NS / 1_000_000_000);
            self.out.record("events_lost", json!({ "lost": rec.lost, "lost_total": rec.lost_total, "message": text }), &text)?;
        }
        Ok(())
    }

    fn emit(&mut self, mut r: Report) -> Result<()> {
        let now = Clock::monotonic_now_ns();
        let verdict = r.is_verdict();
        if verdict && self.loss.incomplete(now) {
            r.fields.insert("incomplete".into(), json!(true));
            r.message.push_str(text::INCOMPLETE);
        }
        if let Some(m) = &self.metrics {
            m.report(&r);
        }
        let attempt = r.catalogued().is_some_and(|k| k.class == Class::Attempt);
        // A slow answer that the pod's spec says is near its timeout: a
        // warning, whether attempts are printed or not.
        if attempt && let Some(warning) = self.enricher.near_timeout(&r, now) {
            self.emit(warning)?;
        }
        if attempt && !self.print_attempts {
            return Ok(());
        }
        // Counted above; printed, enriched and posted within a per-source
        // budget, so one container's flood cannot drown the rest.
        if !attempt {
            let source = source_of(&r);
            match self.limiter.admit(&source, now) {
                Admit::Pass => {}
                Admit::Dropped => {
                    if let Some(m) = &self.metrics {
                        m.throttled();
                    }
                    return Ok(());
                }
                Admit::ThrottlingStarted => {
                    if let Some(m) = &self.metrics {
                        m.throttled();
                    }
                    // The first held-back report's identity (pid, cgroup,
                    // addresses), so enrichment names the pod.
                    let mut t = Report { kind: "throttled", fields: Default::default(), grouped: false, ..r.clone() }
                        .with("source", source.clone())
                        .with("throttled_kind", r.kind);
                    if r.cgroup_id != 0 {
                        t = t.with("cgroup_id", r.cgroup_id);
                    }
                    for key in ["cgroup", "container_id", "pod_uid", "daddr"] {
                        if let Some(v) = r.fields.get(key) {
                            t.fields.insert(key.into(), v.clone());
                        }
                    }
                    t.message = text::throttled(&source, r.kind);
                    self.enricher.enrich(&mut t);
                    return self.out.report(&t);
                }
            }
        }
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
        Some(Subject::Probe) => format!("pod address {}", r.field_str("daddr").unwrap_or("?")),
        Some(Subject::Node) => format!("node ({})", r.kind),
        Some(Subject::Container) | None if r.cgroup_id != 0 => format!("cgroup {}", r.cgroup_id),
        Some(Subject::Container) | None => format!("pid {}", r.pid),
    }
}

/// The next signal from a stream that may not exist (then never).
async fn recv_opt(signal: &mut Option<Signal>) {
    match signal {
        Some(s) => drop(s.recv().await),
        None => std::future::pending().await,
    }
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(d) => sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// The `tracer_started` record.
fn started(out: &mut Output, info: &KernelInfo, hooks: &[HookStatus], comms: &[String]) -> Result<()> {
    let notes = text::cost_notes(hooks);
    let text = text::started(&info.release, comms, hooks, &notes);
    out.record(
        "tracer_started",
        json!({ "kernel": info.release, "prober_comms": comms, "hooks": hooks, "notes": notes }),
        &text,
    )
}





#[cfg(test)]
mod tests {
    use super::*;

    struct Shared(Arc<std::sync::Mutex<Vec<u8>>>);
    impl Write for Shared {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().write(b)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn test_sink() -> (Sink, Arc<std::sync::Mutex<Vec<u8>>>, Arc<Metrics>) {
        let buf = Arc::new(std::sync::Mutex::new(Vec::new()));
        let metrics = Metrics::new();
        let host = ProcHost::default();
        let sink = Sink {
            agg: Aggregator::new(ProbeSettings::default(), ProcNode, Default::default(), host.clone()),
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
        (sink, buf, metrics)
    }

    fn fork_failed(cgroup_id: u64) -> Report {
        let ev = crate::events::Event {
            ts_ns: 1,
            pid: 9,
            tid: 9,
            comm: "runc:[2:INIT]".into(),
            cgroup_id,
            mode: crate::events::HookMode::Tracepoint,
            body: crate::events::Body::Fork { child_tid: 10 },
        };
        Report::new("fork_failed", &ev).with("errno_name", "EAGAIN").message("fork failed".into())
    }

    fn lines(buf: &Arc<std::sync::Mutex<Vec<u8>>>) -> Vec<serde_json::Value> {
        String::from_utf8(buf.lock().unwrap().clone()).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
    }

    #[test]
    fn a_flooding_cgroup_is_throttled_and_counted_while_another_cgroups_verdict_comes_through() {
        let (mut sink, buf, metrics) = test_sink();
        for _ in 0..500 {
            sink.emit(fork_failed(666)).unwrap();
        }
        sink.emit(fork_failed(42)).unwrap();
        let out = lines(&buf);
        let forks = out.iter().filter(|v| v["kind"] == "fork_failed").count();
        let throttled: Vec<_> = out.iter().filter(|v| v["kind"] == "throttled").collect();
        assert_eq!(forks, 21, "20 from the flood, 1 from the other cgroup");
        assert_eq!(throttled.len(), 1, "one record when throttling starts");
        assert_eq!(throttled[0]["source"], "cgroup 666");
        assert_eq!(throttled[0]["throttled_kind"], "fork_failed");
        assert_eq!(sink.limiter.suppressed, 480);
        let text = metrics.encode();
        assert!(text.contains("probe_tracer_throttled_reports_total 480"), "{text}");
        // Metrics still count every verdict.
        assert!(text.contains(r#"probe_tracer_verdicts_total{kind="fork_failed",reason="EAGAIN"} 501"#), "{text}");
    }

    #[test]
    fn loss_gives_one_events_lost_record_and_marks_verdicts_incomplete() {
        let (mut sink, buf, _) = test_sink();
        sink.emit(fork_failed(1)).unwrap();
        let now = Clock::monotonic_now_ns();
        sink.lost(0, now).unwrap();
        sink.lost(12, now).unwrap();
        sink.lost(20, now + 1).unwrap();
        sink.emit(fork_failed(2)).unwrap();
        let out = lines(&buf);
        let kinds: Vec<&str> = out.iter().map(|v| v["kind"].as_str().unwrap()).collect();
        assert_eq!(kinds, ["fork_failed", "events_lost", "fork_failed"]);
        assert!(out[0].get("incomplete").is_none(), "{}", out[0]);
        assert_eq!(out[1]["lost"], 12);
        assert_eq!(out[2]["incomplete"], true);
    }

    #[test]
    fn the_daemon_leaves_syscall_tracepoints_off_unless_asked() {
        use clap::Parser;
        let parse = |args: &[&str]| crate::cli::Cli::try_parse_from(args.iter().copied()).unwrap();
        let resolved = |cli: crate::cli::Cli| match cli.command {
            crate::cli::Command::Run(run) => run.syscall_tracepoints,
            crate::cli::Command::Daemon(d) => daemon_defaults(d.run).syscall_tracepoints,
            other => panic!("{other:?}"),
        };
        assert_eq!(resolved(parse(&["probe-tracer", "run"])), None, "run: on unless --syscall-tracepoints off");
        assert_eq!(resolved(parse(&["probe-tracer", "daemon"])), Some(Switch::Off));
        assert_eq!(resolved(parse(&["probe-tracer", "daemon", "--syscall-tracepoints", "on"])), Some(Switch::On));
    }
}

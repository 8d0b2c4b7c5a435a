//! `probe-tracer run`: load, attach, stream events through the aggregator
//! until --duration, Ctrl-C or SIGTERM, then print a summary.

use std::{
    fs::File,
    io::{BufWriter, Write},
    sync::Arc,
    time::Duration,
};

use anyhow::{Context, Result};
use aya::maps::{MapData, RingBuf};
use serde_json::json;
use tokio::io::unix::AsyncFd;

use crate::{
    cli::{DaemonArgs, RunArgs, Switch},
    diagnose::{Correlators, KernelSummary, probe::ProbeSettings},
    throttle::{LossTracker, RateLimiter},
    metrics::Metrics,
    kernel::info::KernelInfo,
    loader::{HookStatus, LoadOptions, Sees, Tracer},
    processes::LiveProcesses,
    enrich::Enricher,
    k8s::{
        background::Background,
        client::{EventPoster, EventResults},
        directory::Directory,
    },
    network::LiveNetwork,
    output::{Clock, Format, Output, text},
};

mod event_loop;
mod ready_file;
mod report_pipeline;

use event_loop::{Running, Signals, Timers};
use ready_file::ReadyFile;
use report_pipeline::ReportPipeline;

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
    let host = LiveProcesses::default();
    let settings = probe_settings(&args, &tracer, metrics.is_some());
    let agg = Correlators::new(settings, LiveNetwork, args.diagnose.exec_settings(), host.clone());
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
    let mut pipeline = ReportPipeline {
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
    running.event_loop(&mut pipeline, &mut signals, &mut timers).await?;
    running.stop(&mut pipeline)?;
    summarize(pipeline, &running.tracer, kubernetes).await
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
    unsafe { AsyncFd::register(ring) }.context("cannot poll the ring buffer")
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
        responses_observed: tracer.sees(Sees::Responses),
        drop_names: crate::diagnose::probe::DropNames {
            reasons: std::sync::Arc::new(tracer.drop_reasons.clone()),
            host_netns: crate::network::own_netns(),
        },
        ..Default::default()
    }
}

/// The API server's side of a run: pod names kept current and Events
/// posted (--emit-events), on the Kubernetes thread.
struct Kubernetes {
    directory: Arc<std::sync::RwLock<Directory>>,
    /// Taken by the report pipeline, which posts.
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

/// The `summary` record, once the Kubernetes side had its moment.
async fn summarize(pipeline: ReportPipeline, tracer: &Tracer, kubernetes: Kubernetes) -> Result<()> {
    let ReportPipeline { agg, mut out, mut recorder, undecodable, poster, limiter, .. } = pipeline;
    drop(poster);
    kubernetes.stop().await;
    if let Some(rec) = recorder.as_mut() {
        rec.flush()?;
    }
    let counters = tracer.counters()?;
    let aggregator_in_flight = agg.probe.in_flight();
    let mut summary = agg.summary();
    // Attempts younger than their first retransmit are known only to the
    // kernel so far: still in flight.
    let unreported = tracer.unreported_probes(Clock::monotonic_now_ns(), STALE_ATTEMPT_NS)?;
    summary.in_flight = (aggregator_in_flight + unreported) as u64;
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

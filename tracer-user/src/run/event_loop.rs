//! The run's event loop: the ring buffer, the timers and the signals, until
//! the deadline, SIGINT or SIGTERM; then what is left is taken in and judged.

use std::time::Duration;

use anyhow::Result;
use aya::maps::{MapData, RingBuf};
use tokio::{
    io::unix::AsyncFd,
    signal::unix::{Signal, SignalKind, signal},
    time::{Instant, Interval, MissedTickBehavior, interval, sleep_until},
};

use super::{DRAIN_BUDGET, DRAIN_PERIOD, ready_file::ReadyFile, report_pipeline::ReportPipeline};
use crate::{loader::Tracer, output::Clock};

/// The signals a run answers. Both streams live across loop iterations: a
/// fresh `ctrl_c()` future per iteration misses a signal delivered while
/// another branch runs. They are set up before the ready file appears:
/// whoever waits on it may signal at once, and an unhandled SIGINT kills
/// without a summary.
pub(super) struct Signals {
    term: Signal,
    int: Signal,
    /// --pause-signals: SIGUSR1 and SIGUSR2.
    pause: Option<Signal>,
    resume: Option<Signal>,
}

impl Signals {
    pub(super) fn new(pause_signals: bool) -> Result<Self> {
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
pub(super) struct Timers {
    deadline: Option<Instant>,
    housekeeping: Interval,
    /// The kernel side wakes us only once a batch has built up; this timer
    /// picks up the rest, so a lone verdict is printed within DRAIN_PERIOD.
    drain: Interval,
    /// The probed containers' CPU counters, ahead of their probes' verdicts.
    cpu_sampler: Interval,
}

impl Timers {
    pub(super) fn new(duration: Option<f64>) -> Self {
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
pub(super) struct Running<'a> {
    pub(super) ring: AsyncFd<RingBuf<MapData>>,
    pub(super) tracer: Tracer,
    pub(super) ready: &'a ReadyFile,
}

impl Running<'_> {
    /// Until the deadline, SIGINT or SIGTERM.
    pub(super) async fn event_loop(&mut self, pipeline: &mut ReportPipeline, signals: &mut Signals, timers: &mut Timers) -> Result<()> {
        loop {
            tokio::select! {
                guard = self.ring.readable_mut() => {
                    let mut guard = guard?;
                    // Readiness is cleared only once the buffer is empty: a
                    // flood is taken DRAIN_BUDGET records at a time, with the
                    // other branches (signals, housekeeping) between.
                    if pipeline.drain(guard.get_inner_mut(), DRAIN_BUDGET)? {
                        guard.clear_ready();
                    }
                    drop(guard);
                    tokio::task::yield_now().await;
                }
                _ = timers.drain.tick() => {
                    pipeline.drain(self.ring.get_mut(), DRAIN_BUDGET)?;
                }
                _ = timers.cpu_sampler.tick() => {
                    pipeline.agg.probe.sample_cpu(Clock::monotonic_now_ns());
                }
                _ = timers.housekeeping.tick() => pipeline.housekeeping(&mut self.tracer)?,
                _ = sleep_until_opt(timers.deadline) => break,
                _ = signals.int.recv() => break,
                _ = signals.term.recv() => break,
                // --pause-signals: the ready file exists exactly while attached,
                // so whoever signals waits for it to go or come back.
                _ = recv_opt(&mut signals.pause) => {
                    pipeline.drain(self.ring.get_mut(), usize::MAX)?;
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
    pub(super) fn stop(&mut self, pipeline: &mut ReportPipeline) -> Result<()> {
        // The file says so before the summary does (its guard would remove
        // it on an error return too).
        self.ready.remove();
        // Drain what arrived before we stopped, then judge what is left.
        pipeline.drain(self.ring.get_mut(), usize::MAX)?;
        let c = self.tracer.counters()?;
        pipeline.lost(c.events_lost(), Clock::monotonic_now_ns())?;
        if pipeline.established_in_kernel {
            pipeline.kernel_established(&self.tracer)?;
        }
        for r in pipeline.agg.finish(Clock::monotonic_now_ns()) {
            pipeline.emit(r)?;
        }
        Ok(())
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

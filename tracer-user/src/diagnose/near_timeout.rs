//! `probe_near_timeout`: a probe that still passes, but in more than 80 %
//! of its timeoutSeconds. Only the pod's spec knows the timeout, so the
//! enricher decides which probe a slow answer or command is and whether to
//! say it (enrich.rs); the verdict and its sentence are built here.

use super::{Answer, ProbeOfSpec, Report, exec::shown_argv, probe::CpuWindow};

/// A probe whose answer takes more than this share of its timeoutSeconds
/// is near failing.
const NEAR: f64 = 0.8;

/// Whether `took_ms` is past 80 % of the probe's timeout.
pub(crate) fn is_near(took_ms: u64, spec: &ProbeOfSpec) -> bool {
    took_ms as f64 > NEAR * timeout_ms(spec) as f64
}

fn timeout_ms(spec: &ProbeOfSpec) -> u64 {
    u64::from(spec.timeout_s) * 1000
}

fn share_pct(took_ms: u64, spec: &ProbeOfSpec) -> u64 {
    took_ms * 100 / timeout_ms(spec).max(1)
}

/// The warning for an established probe's slow answer (`attempt` is its
/// `tcp_attempt` record).
pub(crate) fn slow_answer(attempt: &Report, answer: &Answer, spec: &ProbeOfSpec) -> Report {
    let (response_ms, share) = (answer.response_ms, share_pct(answer.response_ms, spec));
    let mut w = Report { kind: "probe_near_timeout", grouped: false, answer: None, ..attempt.clone() };
    w.fields.remove("outcome");
    w.fields.remove("state");
    let mut message = format!(
        "the {} probe of container {} answered in {response_ms} ms, {share} % of its timeoutSeconds ({}): the kubelet \
         fails it past {} ms; raise timeoutSeconds or find what slows the answer",
        spec.probe_type,
        spec.container,
        spec.timeout_s,
        timeout_ms(spec)
    );
    if let Some(limits) = &answer.slow_because {
        message.push_str(&format!(" ({limits})"));
    }
    w.message(message).with("answer_share_pct", share)
}

/// The warning for an exec probe's command that exited by itself (`done`
/// is its report with the command's fields), with the container's CPU
/// over the command's life.
pub(crate) fn slow_command(done: Report, argv: &[String], runtime_ms: u64, spec: ProbeOfSpec, cpu: &CpuWindow) -> Report {
    let share = share_pct(runtime_ms, &spec);
    let why = cpu.explanation().unwrap_or_else(|| cpu.ruled_out());
    let message = format!(
        "the {} exec probe of container {} (`{}`) took {runtime_ms} ms from the runtime's start to the command's exit, {share} % of \
         its timeoutSeconds ({}): the kubelet fails it past {} ms; raise timeoutSeconds or find what slows the command; {why}",
        spec.probe_type,
        spec.container,
        shown_argv(argv),
        spec.timeout_s,
        timeout_ms(&spec),
    );
    let mut w = cpu.add_counters_to(done).with("answer_share_pct", share).message(message);
    w.name_probe(Some(spec));
    w
}

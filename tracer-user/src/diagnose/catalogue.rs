//! Every kind of report probe-tracer writes, one row each: the JSON `kind`,
//! whether it is a verdict (and then its Kubernetes Event reason and the
//! field that is its metric's `reason` label) or a record, and what it is
//! about (a prober's connection, a container, the node).
//!
//! To add a kind, add a row to [`KINDS`] and emit it from a correlator with
//! `Report::new("its_name", ..)`. Enrichment, Events, metrics and
//! `Report::is_verdict` read this table; nothing else lists kinds. The
//! names and Event reasons are a contract (JSON consumers filter on `kind`,
//! people filter `kubectl get events` on the reason): never respell one.

/// One kind of report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Kind {
    /// The JSON `kind` (`synack_diverted`, `tcp_attempt`, ...).
    pub(crate) name: &'static str,
    pub(crate) class: Class,
    pub(crate) subject: Subject,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Class {
    /// Something failed, and why: counted in `probe_tracer_verdicts_total`
    /// and posted as a Kubernetes Event (with --emit-events).
    Verdict {
        /// The Event's reason, CamelCase (`ProbeSynAckDiverted`).
        event_reason: &'static str,
        /// The report field whose value is the metric's `reason` label (the
        /// cause in one word: errno name, evidence, OOM constraint); the
        /// label is empty without one.
        metric_reason: Option<&'static str>,
    },
    /// One prober connection and its outcome: counted in
    /// `probe_tracer_probe_connections_total{outcome}`, printed unless
    /// --verdicts-only.
    Attempt,
    /// Anything else worth a line (a container stopped as asked): printed,
    /// not counted.
    Record,
}

/// What a report is about: where enrichment looks for the pod, and what
/// its Event is posted on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Subject {
    /// A prober's connection: the pod is the one with the destination
    /// address `daddr` (the prober's own cgroup is the kubelet's).
    Probe,
    /// A process in a container: the pod is found by container ID, cgroup
    /// or pod UID.
    Container,
    /// The node as a whole: its Event is posted on the Node.
    Node,
}

use Class::{Attempt, Record, Verdict};
use Subject::{Container, Node, Probe};

const fn verdict(
    name: &'static str,
    subject: Subject,
    event_reason: &'static str,
    metric_reason: Option<&'static str>,
) -> Kind {
    Kind { name, class: Verdict { event_reason, metric_reason }, subject }
}

/// The catalogue.
pub(crate) const KINDS: &[Kind] = &[
    // A prober's TCP connection: sentences in probe/verdicts.rs (drops in
    // probe/drops.rs, the container's CPU in probe/cpu_window.rs).
    verdict("synack_diverted", Probe, "ProbeSynAckDiverted", Some("evidence")),
    verdict("probe_refused", Probe, "ProbeConnectionRefused", None),
    // With `drops` (where the kernel freed its packets, and why) and
    // `listen_queue` (the pod's accept queue, when it turns probes away).
    verdict("probe_timeout", Probe, "ProbeConnectionTimeout", None),
    // Connected, then failed (the kernel follows the probe to its close).
    verdict("probe_no_response", Probe, "ProbeNoResponse", None),
    verdict("probe_http_error", Probe, "ProbeHTTPError", None),
    verdict("probe_reset", Probe, "ProbeConnectionReset", None),
    verdict("probe_closed", Probe, "ProbeConnectionClosed", None),
    // Answered, but in more than 80 % of its timeoutSeconds (near_timeout.rs;
    // needs the pod's spec).
    verdict("probe_near_timeout", Probe, "ProbeNearTimeout", Some("probe_type")),
    Kind { name: "tcp_attempt", class: Attempt, subject: Probe },
    // An exec probe's runtime call: fork, setns, init and the story in
    // exec/story.rs; a stopped container in exec/stopped.rs.
    verdict("fork_failed", Container, "ExecProbeForkFailed", Some("errno_name")),
    verdict("setns_failed", Container, "ExecProbeSetnsFailed", Some("errno_name")),
    verdict("runc_init_died", Container, "ExecProbeRuncInitDied", None),
    verdict("container_init_exit", Container, "ContainerInitExited", None),
    verdict("exec_into_stopped_container", Container, "ExecProbeContainerStopped", Some("evidence")),
    verdict("runc_failed", Container, "ExecProbeFailed", None),
    // An exec's command the runtime killed at the exec's timeout
    // (exec/command.rs, as is the next).
    verdict("exec_probe_timeout", Container, "ExecProbeTimeout", Some("killed_by_comm")),
    // An exec's command done, its output held open by what it left running
    // (the holder's comm is the tenant's: no label).
    verdict("exec_probe_output_held", Container, "ExecProbeOutputHeld", None),
    Kind { name: "container_stopped", class: Record, subject: Container },
    // The OOM killer (diagnose/oom.rs).
    verdict("oom_kill", Container, "ContainerOOMKilled", Some("constraint")),
    // The runtime's latency over an interval (diagnose/exec/latency.rs).
    verdict("runtime_slow", Node, "ContainerRuntimeSlow", None),
    // The tracer's own state (run/report_pipeline.rs, throttle.rs): a source's reports are
    // being rate-limited; the kernel lost events (verdicts meanwhile carry
    // `incomplete: true`).
    Kind { name: "throttled", class: Record, subject: Container },
    Kind { name: "events_lost", class: Record, subject: Node },
];

/// The row for `name`, if it is catalogued.
pub(crate) fn find(name: &str) -> Option<&'static Kind> {
    KINDS.iter().find(|k| k.name == name)
}

/// The Event reason for a verdict kind (none for records and unknown
/// kinds).
pub(crate) fn event_reason(name: &str) -> Option<&'static str> {
    find(name)?.event_reason()
}

impl Kind {
    pub(crate) fn is_verdict(&self) -> bool {
        matches!(self.class, Verdict { .. })
    }

    pub(crate) fn event_reason(&self) -> Option<&'static str> {
        match self.class {
            Verdict { event_reason, .. } => Some(event_reason),
            Attempt | Record => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    fn verdict_kinds() -> impl Iterator<Item = &'static str> {
        KINDS.iter().filter(|k| k.is_verdict()).map(|k| k.name)
    }

    #[test]
    fn names_are_unique_snake_case() {
        let mut seen = HashSet::new();
        for k in KINDS {
            assert!(seen.insert(k.name), "{} is catalogued twice", k.name);
            assert!(
                !k.name.is_empty() && k.name.chars().all(|c| c.is_ascii_lowercase() || c == '_'),
                "{} is not snake_case",
                k.name
            );
            assert_eq!(find(k.name), Some(k));
        }
        assert_eq!(find("no_such_kind"), None);
    }

    #[test]
    fn event_reasons_are_unique_camel_case() {
        let mut seen = HashSet::new();
        for k in KINDS {
            let Verdict { event_reason, .. } = k.class else { continue };
            assert!(seen.insert(event_reason), "{event_reason} is the reason of two kinds");
            assert!(event_reason.starts_with(|c: char| c.is_ascii_uppercase()), "{event_reason}");
            assert!(event_reason.chars().all(|c| c.is_ascii_alphanumeric()), "{event_reason}");
        }
    }

    #[test]
    fn metric_reasons_name_fields_and_node_verdicts_have_no_pod() {
        for k in KINDS {
            if let Verdict { metric_reason: Some(field), .. } = k.class {
                assert!(field.chars().all(|c| c.is_ascii_lowercase() || c == '_'), "{}: {field}", k.name);
            }
            // The Node is an Event target only for verdicts; a record about
            // the tracer itself (events_lost) is about the node, never posted.
            if k.subject == Node {
                assert!(k.is_verdict() || k.class == Record, "{}", k.name);
            }
        }
    }

    #[test]
    fn every_verdict_has_an_event_reason() {
        for kind in verdict_kinds() {
            assert!(event_reason(kind).is_some(), "{kind}");
        }
        assert!(event_reason("tcp_attempt").is_none());
    }

    /// Users read the kinds and the Event reasons in the docs: a new row
    /// must reach them.
    #[test]
    fn every_verdict_and_event_reason_is_documented() {
        let (readme, verdicts) = (include_str!("../../../README.md"), include_str!("../../../docs/verdicts.md"));
        for kind in verdict_kinds() {
            assert!(verdicts.contains(&format!("`{kind}`")), "{kind} is not in docs/verdicts.md");
            let reason = event_reason(kind).unwrap();
            assert!(readme.contains(&format!("`{reason}`")), "{reason} is not in the README's list of Event reasons");
        }
    }
}

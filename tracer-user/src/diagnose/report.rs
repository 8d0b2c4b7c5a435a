//! [`Report`]: one line of output. What later stages read (enrichment, the
//! rate limiter, Events) is typed: the prober's connection, the IPVS path,
//! the workload, the command; what only the output reads is the kind's
//! own fields. Serialization keeps one JSON object per report, in the
//! order kind, connection, IPVS path, the kind's fields, workload,
//! Kubernetes names, probe spec, message.

use std::net::IpAddr;

use serde::{Serialize, Serializer, ser::SerializeMap};
use serde_json::{Map, Value};

use super::catalogue;
use crate::events::Event;

/// One line of output: a verdict or a record.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// `synack_diverted`, `probe_timeout`, ...: a row of [`catalogue::KINDS`].
    pub kind: &'static str,
    /// CLOCK_MONOTONIC ns of the event that decided it; rendered as `ts`.
    #[serde(skip)]
    pub ts_ns: u64,
    pub pid: u32,
    pub comm: String,
    /// The prober's connection, on probe reports.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub connection: Option<Connection>,
    /// The IPVS service that took a probe's SYN-ACK (`synack_diverted`).
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub ipvs: Option<IpvsPath>,
    /// The kind's own fields: written for the output; read elsewhere only
    /// as text by their JSON name (the metric's `reason`, a story's cause).
    #[serde(flatten)]
    pub(crate) fields: Map<String, Value>,
    /// The command a runtime ran in the container (exec reports), as argv.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    /// The container the report is about, where the kernel or the runtime
    /// showed it.
    #[serde(flatten)]
    pub workload: Workload,
    /// Kubernetes names, added by enrichment.
    #[serde(flatten)]
    pub kubernetes: KubeNames,
    /// The pod's probe this report is about, added by enrichment.
    #[serde(flatten)]
    pub probe: ProbeNamed,
    /// The verdicts a story (`runc_failed`) groups, first cause first.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub causes: Option<Vec<&'static str>>,
    /// Verdicts made while events were being lost.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub incomplete: bool,
    /// The one sentence a person on call reads.
    pub message: String,
    /// Part of a story told by a later report (`runc_failed`): JSON output
    /// writes it, text output leaves it to the story.
    #[serde(skip)]
    pub grouped: bool,
    /// An established probe's answer time, and the container's limits when
    /// they explain a slow one: what `probe_near_timeout` is judged from.
    #[serde(skip)]
    pub answer: Option<Answer>,
    /// The cgroup of the event that decided it: the source a flood is
    /// throttled by (run/report_pipeline.rs).
    #[serde(skip)]
    pub cgroup_id: u64,
}

/// A prober's TCP connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Connection {
    pub saddr: IpAddr,
    pub sport: u16,
    pub daddr: IpAddr,
    pub dport: u16,
    /// From the connect to the event that decided the report.
    #[serde(skip)]
    pub elapsed_ms: u64,
}

/// The IPVS connection a diverted SYN-ACK went to: the virtual service
/// and, where it was seen, its real server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct IpvsPath {
    pub ipvs_vip: IpAddr,
    pub ipvs_vport: u16,
    pub ipvs_rip: Option<IpAddr>,
    pub ipvs_rport: Option<u16>,
}

/// A value a report may carry: not one of its kind's fields (absent from
/// the JSON), one of them but not found (`null`), or found.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Slot<T> {
    #[default]
    Absent,
    Unknown,
    Known(T),
}

impl<T> Slot<T> {
    pub fn get(&self) -> Option<&T> {
        match self {
            Slot::Known(v) => Some(v),
            _ => None,
        }
    }

    pub fn is_absent(&self) -> bool {
        matches!(self, Slot::Absent)
    }

    /// The field, known or not.
    pub fn of(v: Option<T>) -> Self {
        v.map_or(Slot::Unknown, Slot::Known)
    }

    /// Fills a field that is not known yet.
    pub fn fill(&mut self, v: Option<T>) {
        if let (None, Some(v)) = (self.get(), v) {
            *self = Slot::Known(v);
        }
    }
}

impl<T: Serialize> Serialize for Slot<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Slot::Known(v) => v.serialize(s),
            _ => s.serialize_none(),
        }
    }
}

/// Where a report's container is: its cgroup and the IDs the runtime and
/// the kubelet put in it. Enrichment names the pod from these.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct Workload {
    #[serde(skip_serializing_if = "Slot::is_absent")]
    pub container_id: Slot<String>,
    #[serde(skip_serializing_if = "Slot::is_absent")]
    pub cgroup_id: Slot<u64>,
    #[serde(skip_serializing_if = "Slot::is_absent")]
    pub pod_uid: Slot<String>,
    #[serde(skip_serializing_if = "Slot::is_absent")]
    pub cgroup: Slot<String>,
}

/// The pod (and container) a report is about, and for a diverted SYN-ACK
/// the Service whose NodePort took it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct KubeNames {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ipvs_service: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pod: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
}

/// Which of the pod's probes a report is about.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum ProbeNamed {
    /// Not looked up (no API server, or not a probe report).
    #[default]
    NotLooked,
    /// Looked up, and no probe of the pod's spec matches: a verdict says
    /// `probe_type` and `timeout_s` are unknown rather than guess them.
    NoMatch,
    Spec(ProbeOfSpec),
}

/// A probe as the pod's spec declares it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeOfSpec {
    /// `liveness`, `readiness` or `startup`.
    pub probe_type: &'static str,
    pub container: String,
    pub timeout_s: u32,
    pub period_s: u32,
    pub failure_threshold: u32,
}

impl Serialize for ProbeNamed {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(None)?;
        match self {
            ProbeNamed::NotLooked => {}
            ProbeNamed::NoMatch => {
                map.serialize_entry("probe_type", &Value::Null)?;
                map.serialize_entry("timeout_s", &Value::Null)?;
            }
            ProbeNamed::Spec(spec) => {
                map.serialize_entry("probe_type", spec.probe_type)?;
                map.serialize_entry("probe_container", &spec.container)?;
                map.serialize_entry("timeout_s", &spec.timeout_s)?;
                map.serialize_entry("period_s", &spec.period_s)?;
                map.serialize_entry("failure_threshold", &spec.failure_threshold)?;
            }
        }
        map.end()
    }
}

/// An established probe's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub response_ms: u64,
    /// The container's limits, when they explain a slow answer.
    pub slow_because: Option<String>,
}

impl Report {
    pub fn new(kind: &'static str, ev: &Event) -> Self {
        Self::at(kind, ev.ts_ns, ev.pid, ev.comm.clone(), ev.cgroup_id)
    }

    /// A report of another kind on the same process at the same time, with
    /// none of `other`'s fields.
    pub fn on_same_process(kind: &'static str, other: &Report) -> Self {
        Self::at(kind, other.ts_ns, other.pid, other.comm.clone(), other.cgroup_id)
    }

    fn at(kind: &'static str, ts_ns: u64, pid: u32, comm: String, cgroup_id: u64) -> Self {
        // Unit tests run in the release profile (sharing the e2e build), so
        // the check is on for them as for debug builds.
        if cfg!(any(test, debug_assertions)) {
            assert!(catalogue::find(kind).is_some(), "report kind {kind} is not in diagnose/catalogue.rs");
        }
        Self {
            kind,
            ts_ns,
            pid,
            comm,
            connection: None,
            ipvs: None,
            fields: Map::new(),
            command: None,
            workload: Workload::default(),
            kubernetes: KubeNames::default(),
            probe: ProbeNamed::default(),
            incomplete: false,
            message: String::new(),
            grouped: false,
            causes: None,
            answer: None,
            cgroup_id,
        }
    }

    pub fn grouped(mut self) -> Self {
        self.grouped = true;
        self
    }

    /// One of the kind's own fields.
    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.fields.insert(key.to_string(), value.into());
        self
    }

    pub fn with_workload(mut self, workload: Workload) -> Self {
        self.workload = workload;
        self
    }

    pub fn with_command(mut self, argv: &[String]) -> Self {
        self.command = Some(argv.to_vec());
        self
    }

    pub fn message(mut self, message: String) -> Self {
        self.message = message;
        self
    }

    /// This report's row in the catalogue.
    pub(crate) fn catalogued(&self) -> Option<&'static catalogue::Kind> {
        catalogue::find(self.kind)
    }

    /// Verdicts say something failed; other reports are records.
    pub fn is_verdict(&self) -> bool {
        self.catalogued().is_some_and(catalogue::Kind::is_verdict)
    }

    /// One of the kind's own fields, as text: the metric's `reason` label
    /// (named by the catalogue) and a story's causes read theirs so.
    pub(crate) fn field_str(&self, key: &str) -> Option<&str> {
        self.fields.get(key).and_then(Value::as_str)
    }

    /// Names the pod (and container) the report is about, in its fields
    /// and at the end of its sentence.
    pub(crate) fn name_pod(&mut self, namespace: &str, pod: &str, container: Option<String>) {
        let c = container.as_ref().map(|c| format!(", container {c}")).unwrap_or_default();
        self.message.push_str(&format!(" [pod {namespace}/{pod}{c}]"));
        self.kubernetes.pod = Some(pod.to_string());
        self.kubernetes.namespace = Some(namespace.to_string());
        self.kubernetes.container = container;
    }

    /// Names the pod's probe this report is about; without one (no API
    /// server, or not a probe of the pod's spec) `probe_type` and
    /// `timeout_s` are null on a verdict: unknown, not guessed.
    pub(crate) fn name_probe(&mut self, spec: Option<ProbeOfSpec>) {
        let Some(spec) = spec else {
            if self.is_verdict() {
                self.probe = ProbeNamed::NoMatch;
            }
            return;
        };
        if self.is_verdict() {
            self.message.push_str(&format!(
                " [{} probe of container {}: timeoutSeconds {}, periodSeconds {}, failureThreshold {}]",
                spec.probe_type, spec.container, spec.timeout_s, spec.period_s, spec.failure_threshold
            ));
        }
        self.probe = ProbeNamed::Spec(spec);
    }

    /// A text field by its JSON name, wherever the report keeps it: the
    /// catalogue names a verdict's metric `reason` field so.
    pub(crate) fn text_of(&self, key: &str) -> Option<&str> {
        match (key, &self.probe) {
            ("probe_type", ProbeNamed::Spec(spec)) => Some(spec.probe_type),
            _ => self.field_str(key),
        }
    }

    /// The JSON object the output writes (without `ts`).
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{Body, Mode};

    fn report(kind: &'static str) -> Report {
        let ev = Event { ts_ns: 1, pid: 7, tid: 7, comm: "kubelet".into(), cgroup_id: 3, mode: Mode::Tracepoint, body: Body::Fork { child_tid: 8 } };
        Report::new(kind, &ev)
    }

    #[test]
    fn typed_parts_keep_their_json_names_order_and_nulls() {
        let mut r = report("probe_timeout").with("elapsed_ms", 1000);
        let (saddr, daddr) = ([10, 0, 0, 1].into(), [10, 200, 1, 2].into());
        r.connection = Some(Connection { saddr, sport: 40000, daddr, dport: 8080, elapsed_ms: 1000 });
        r.workload.cgroup = Slot::Known("/kubepods/pod1/c1".into());
        r.kubernetes.pod = Some("web".into());
        r.probe = ProbeNamed::NoMatch;
        let json = serde_json::to_string(&r.message("timed out".into())).unwrap();
        assert_eq!(
            json,
            r#"{"kind":"probe_timeout","pid":7,"comm":"kubelet","saddr":"10.0.0.1","sport":40000,"daddr":"10.200.1.2","dport":8080,"#
                .to_string()
                + r#""elapsed_ms":1000,"cgroup":"/kubepods/pod1/c1","pod":"web","probe_type":null,"timeout_s":null,"message":"timed out"}"#
        );
        // A kind's workload field that was not found is null; one that is
        // not the kind's is absent.
        let mut r = report("fork_failed").with_workload(Workload { container_id: Slot::of(None), ..Default::default() });
        r.causes = Some(vec![]);
        let v = r.to_json();
        assert!(v["container_id"].is_null() && v.get("container_id").is_some());
        assert!(v.get("pod_uid").is_none() && v.get("incomplete").is_none());
        assert_eq!(v["causes"], serde_json::json!([]));
    }

    #[test]
    fn every_metric_reason_field_is_found_where_the_report_keeps_it() {
        let spec = ProbeOfSpec { probe_type: "readiness", container: "app".into(), timeout_s: 1, period_s: 10, failure_threshold: 3 };
        let mut r = report("probe_near_timeout").with("errno_name", "EAGAIN");
        assert_eq!(r.text_of("probe_type"), None);
        r.probe = ProbeNamed::Spec(spec);
        assert_eq!((r.text_of("probe_type"), r.text_of("errno_name")), (Some("readiness"), Some("EAGAIN")));
    }
}

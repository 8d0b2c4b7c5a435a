//! Adds Kubernetes names to a verdict: `pod`, `namespace`, `container`
//! (and `pod_uid`, `container_id` from the cgroup path even without an API
//! server), and `ipvs_service` for a diverted SYN-ACK.

use std::{
    net::IpAddr,
    sync::{Arc, RwLock},
};

use serde_json::json;

use super::{
    cgroup::ContainerRef,
    client::{EventRequest, EventTarget},
    directory::{Directory, PodInfo},
};
use crate::{diagnose::Report, host::HostView};

/// Verdicts about a prober's connection name the pod by its address; the
/// prober's own cgroup (the kubelet's) says nothing about the pod.
const PROBE_KINDS: &[&str] = &["synack_diverted", "probe_refused", "probe_timeout", "tcp_attempt"];

pub struct Enricher<H: HostView> {
    dir: Arc<RwLock<Directory>>,
    host: H,
}

impl<H: HostView> Enricher<H> {
    pub fn new(dir: Arc<RwLock<Directory>>, host: H) -> Self {
        Self { dir, host }
    }

    /// Adds what is known to `r` and returns the Event it deserves, if it
    /// is a verdict about a known pod (or the node).
    pub fn enrich(&self, r: &mut Report) -> Option<EventRequest> {
        let dir = self.dir.read().ok()?;
        let mut pod: Option<PodInfo> = None;
        let mut container: Option<String> = None;
        if PROBE_KINDS.contains(&r.kind) {
            if let Some(ip) = r.field_str("daddr").and_then(|s| s.parse::<IpAddr>().ok()) {
                pod = dir.pod_by_ip(ip).map(|p| (**p).clone());
            }
            if let Some(svc) = r.fields.get("ipvs_vport").and_then(|v| v.as_u64()).and_then(|p| dir.service_by_nodeport(p as u16)) {
                r.fields.insert("ipvs_service".into(), json!(format!("{}/{}", svc.namespace, svc.name)));
            }
        } else {
            let ids = self.container_ref(r);
            if r.fields.get("pod_uid").is_none_or(|v| v.is_null()) && ids.pod_uid.is_some() {
                r.fields.insert("pod_uid".into(), json!(ids.pod_uid));
            }
            let container_id = r.field_str("container_id").map(str::to_string).or(ids.container_id);
            if let Some(c) = container_id.as_deref().and_then(|id| dir.container(id)) {
                pod = Some((*c.pod).clone());
                container = Some(c.name.clone());
            } else if let Some(p) = r.field_str("pod_uid").and_then(|uid| dir.pod_by_uid(uid)) {
                pod = Some((**p).clone());
            }
        }
        if let Some(p) = &pod {
            r.fields.insert("pod".into(), json!(p.name));
            r.fields.insert("namespace".into(), json!(p.namespace));
            if let Some(c) = &container {
                r.fields.insert("container".into(), json!(c));
            }
            let c = container.as_ref().map(|c| format!(", container {c}")).unwrap_or_default();
            r.message.push_str(&format!(" [pod {}/{}{c}]", p.namespace, p.name));
        }
        // A story (`runc_failed`) is posted once, named after its first
        // cause; the verdicts it groups are not posted on their own.
        if r.grouped {
            return None;
        }
        let first_cause = r.fields.get("causes").and_then(|c| c.get(0)).and_then(|c| c.as_str());
        let reason = first_cause.and_then(event_reason).or_else(|| event_reason(r.kind))?;
        let target = match (pod, r.kind) {
            (Some(pod), _) => EventTarget::Pod { pod, container },
            (None, "runtime_slow") => EventTarget::Node,
            (None, _) => return None,
        };
        Some(EventRequest { target, reason, message: r.message.clone() })
    }

    /// Pod UID and container ID from the report's cgroup (path or id).
    fn container_ref(&self, r: &Report) -> ContainerRef {
        let path = r.field_str("cgroup").map(str::to_string).or_else(|| {
            let id = r.fields.get("cgroup_id")?.as_u64()?;
            self.host.cgroup_path(id)
        });
        path.map(|p| ContainerRef::from_cgroup_path(&p)).unwrap_or_default()
    }
}

/// The Event reason for each verdict (a contract, like the JSON fields:
/// people filter `kubectl get events` on it).
pub fn event_reason(kind: &str) -> Option<&'static str> {
    Some(match kind {
        "synack_diverted" => "ProbeSynAckDiverted",
        "probe_refused" => "ProbeConnectionRefused",
        "probe_timeout" => "ProbeConnectionTimeout",
        "fork_failed" => "ExecProbeForkFailed",
        "setns_failed" => "ExecProbeSetnsFailed",
        "runc_init_died" => "ExecProbeRuncInitDied",
        "runc_failed" => "ExecProbeFailed",
        "exec_into_stopped_container" => "ExecProbeContainerStopped",
        "container_init_exit" => "ContainerInitExited",
        "oom_kill" => "ContainerOOMKilled",
        "runtime_slow" => "ContainerRuntimeSlow",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        diagnose::VERDICT_KINDS,
        events::{Body, Event, HookMode},
        host::StaticHost,
    };

    fn directory() -> Arc<RwLock<Directory>> {
        use k8s_openapi::api::core::v1::{Pod, Service};
        let pods: k8s_openapi::List<Pod> = serde_json::from_str(include_str!("testdata/pods.json")).unwrap();
        let services: k8s_openapi::List<Service> = serde_json::from_str(include_str!("testdata/services.json")).unwrap();
        Arc::new(RwLock::new(Directory::new(&pods.items, &services.items)))
    }

    fn report(kind: &'static str) -> Report {
        let ev = Event { ts_ns: 1, pid: 10, tid: 10, comm: "kubelet".into(), cgroup_id: 0, mode: HookMode::Tracepoint, body: Body::Fork { child_tid: 1 } };
        Report::new(kind, &ev).message("it failed".into())
    }

    #[test]
    fn diverted_synack_names_the_pod_and_the_nodeport_service() {
        let e = Enricher::new(directory(), StaticHost::default());
        let mut r = report("synack_diverted").with("daddr", "10.200.1.2").with("ipvs_vport", 31055);
        let event = e.enrich(&mut r).unwrap();
        assert_eq!(r.fields["pod"], "web-7d9f8b6c5-x2x4q");
        assert_eq!(r.fields["namespace"], "shop");
        assert_eq!(r.fields["ipvs_service"], "shop/checkout");
        assert!(r.message.ends_with("[pod shop/web-7d9f8b6c5-x2x4q]"), "{}", r.message);
        assert_eq!(event.reason, "ProbeSynAckDiverted");
        assert!(matches!(event.target, EventTarget::Pod { ref pod, .. } if pod.uid == "0a1b2c3d-1111-2222-3333-444455556666"));
    }

    #[test]
    fn exec_verdict_is_found_by_container_id_and_oom_by_cgroup_path() {
        let e = Enricher::new(directory(), StaticHost::default());
        let mut r = report("fork_failed").with("container_id", "ab".repeat(32));
        let event = e.enrich(&mut r).unwrap();
        assert_eq!((r.fields["pod"].as_str(), r.fields["container"].as_str()), (Some("web-7d9f8b6c5-x2x4q"), Some("app")));
        assert_eq!(event.reason, "ExecProbeForkFailed");

        let path = format!("/sys/fs/cgroup/kubepods.slice/kubepods-pod0a1b2c3d_1111_2222_3333_444455556666.slice/cri-containerd-{}.scope", "ab".repeat(32));
        let mut r = report("oom_kill").with("cgroup", path);
        e.enrich(&mut r).unwrap();
        assert_eq!(r.fields["pod_uid"], "0a1b2c3d-1111-2222-3333-444455556666");
        assert_eq!(r.fields["container"], "app");
    }

    #[test]
    fn a_failed_runc_story_is_one_event_named_after_its_first_cause() {
        let e = Enricher::new(directory(), StaticHost::default());
        let mut cause = report("fork_failed").with("container_id", "ab".repeat(32)).grouped();
        assert!(e.enrich(&mut cause).is_none());
        assert_eq!(cause.fields["pod"], "web-7d9f8b6c5-x2x4q", "grouped verdicts are still named");
        let mut story = report("runc_failed")
            .with("container_id", "ab".repeat(32))
            .with("causes", json!(["fork_failed", "runc_init_died"]));
        assert_eq!(e.enrich(&mut story).unwrap().reason, "ExecProbeForkFailed");
    }

    #[test]
    fn unknown_pods_get_no_names_and_no_event() {
        let e = Enricher::new(Arc::new(RwLock::new(Directory::default())), StaticHost::default());
        let mut r = report("probe_timeout").with("daddr", "10.200.1.2");
        assert!(e.enrich(&mut r).is_none());
        assert!(r.fields.get("pod").is_none());
        assert_eq!(r.message, "it failed");
        // A slow runtime is the node's problem.
        let mut r = report("runtime_slow");
        assert_eq!(e.enrich(&mut r).unwrap().target, EventTarget::Node);
    }

    #[test]
    fn every_verdict_has_an_event_reason() {
        for kind in VERDICT_KINDS {
            assert!(event_reason(kind).is_some(), "{kind}");
        }
        assert!(event_reason("tcp_attempt").is_none());
    }
}

//! The stage between diagnosis and output: adds Kubernetes names to a
//! report (`pod`, `namespace`, `container`, and `pod_uid`, `container_id`
//! from the cgroup path even without an API server; `ipvs_service` for a
//! diverted SYN-ACK) and says which Event a verdict deserves. Where to look
//! for the pod, and the Event's reason, come from the report's row in
//! diagnose/catalogue.rs.

use std::sync::{Arc, RwLock};

use serde_json::json;

use crate::{
    diagnose::{
        Report,
        catalogue::{self, Subject},
    },
    host::HostView,
    k8s::{
        cgroup::ContainerRef,
        client::{EventRequest, EventTarget},
        directory::{Directory, PodInfo},
    },
};

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
        // Uncatalogued kinds (none are emitted) are looked up as containers.
        let subject = r.catalogued().map_or(Subject::Container, |k| k.subject);
        if subject == Subject::Probe {
            if let Some(ip) = r.ip("daddr") {
                pod = dir.pod_by_ip(ip).map(|p| (**p).clone());
            }
            // The serving container's cgroup, where the verdict measured it.
            if let Some(path) = r.field_str("cgroup") {
                let ids = ContainerRef::from_cgroup_path(path);
                for (key, value) in [("pod_uid", ids.pod_uid), ("container_id", ids.container_id)] {
                    if let Some(v) = value {
                        r.fields.entry(key.to_string()).or_insert(json!(v));
                    }
                }
                if let Some(c) = r.field_str("container_id").and_then(|id| dir.container(id)) {
                    container = Some(c.name.clone());
                    pod = pod.or_else(|| Some((*c.pod).clone()));
                }
            }
            if let Some(svc) = r.fields.get("ipvs_vport").and_then(|v| v.as_u64()).and_then(|p| dir.service_by_nodeport(p as u16)) {
                r.fields.insert("ipvs_service".into(), json!(format!("{}/{}", svc.namespace, svc.name)));
            }
        } else if subject == Subject::Container {
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
        let reason = first_cause.and_then(catalogue::event_reason).or_else(|| catalogue::event_reason(r.kind))?;
        let target = match (pod, subject) {
            (Some(pod), _) => EventTarget::Pod { pod, container },
            (None, Subject::Node) => EventTarget::Node,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        events::{Body, Event, HookMode},
        host::StaticHost,
    };

    fn directory() -> Arc<RwLock<Directory>> {
        use k8s_openapi::api::core::v1::{Pod, Service};
        let pods: k8s_openapi::List<Pod> = serde_json::from_str(include_str!("k8s/testdata/pods.json")).unwrap();
        let services: k8s_openapi::List<Service> = serde_json::from_str(include_str!("k8s/testdata/services.json")).unwrap();
        Arc::new(RwLock::new(Directory::new(&pods.items, &services.items)))
    }

    fn report(kind: &'static str) -> Report {
        let ev = Event { ts_ns: 1, pid: 10, tid: 10, comm: "kubelet".into(), cgroup_id: 0, mode: HookMode::Tracepoint, body: Body::Fork { child_tid: 1 } };
        Report::new(kind, &ev).message("it failed".into())
    }

    #[test]
    fn diverted_synack_names_the_pod_and_the_nodeport_service() {
        let e = Enricher::new(directory(), StaticHost::default());
        let mut r = report("synack_diverted").with_ip("daddr", [10, 200, 1, 2].into()).with("ipvs_vport", 31055);
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
        let mut r = report("probe_timeout").with_ip("daddr", [10, 200, 1, 2].into());
        assert!(e.enrich(&mut r).is_none());
        assert!(r.fields.get("pod").is_none());
        assert_eq!(r.message, "it failed");
        // A slow runtime is the node's problem.
        let mut r = report("runtime_slow");
        assert_eq!(e.enrich(&mut r).unwrap().target, EventTarget::Node);
    }
}

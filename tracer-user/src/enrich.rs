//! The stage between diagnosis and output: adds Kubernetes names to a
//! report (`pod`, `namespace`, `container`, and `pod_uid`, `container_id`
//! from the cgroup path even without an API server; `ipvs_service` for a
//! diverted SYN-ACK) and says which Event a verdict deserves. Where to look
//! for the pod, and the Event's reason, come from the report's row in
//! diagnose/catalogue.rs.

use std::{
    collections::HashMap,
    sync::{Arc, RwLock},
};

use crate::{
    diagnose::{
        Connection, ProbeOfSpec, Report,
        catalogue::{self, Subject},
        exec::{CommandDone, cpu_over_life},
        near_timeout,
    },
    processes::ProcessFacts,
    k8s::{
        cgroup::ContainerRef,
        client::{EventRequest, EventTarget},
        directory::{Directory, PodInfo, ProbeSpec},
    },
};

pub struct Enricher<H: ProcessFacts> {
    dir: Arc<RwLock<Directory>>,
    host: H,
    /// When each probe last got a `probe_near_timeout`.
    near_timeout_said: HashMap<(String, &'static str, u16), u64>,
}

/// At most one `probe_near_timeout` per probe this often.
const NEAR_TIMEOUT_EVERY_NS: u64 = 60_000_000_000;
/// Probes remembered for that, at most.
const NEAR_TIMEOUT_MAX: usize = 4096;

impl<H: ProcessFacts> Enricher<H> {
    pub fn new(dir: Arc<RwLock<Directory>>, host: H) -> Self {
        Self { dir, host, near_timeout_said: HashMap::new() }
    }

    /// A probe that answered, but in more than 80 % of its timeoutSeconds
    /// (from the pod's spec, so only with the API server): a warning before
    /// the kubelet starts failing it, at most once a minute per probe.
    pub fn near_timeout(&mut self, r: &Report, now_ns: u64) -> Option<Report> {
        let (answer, conn) = (r.answer.as_ref()?, r.connection.as_ref()?);
        let dir = self.dir.read().ok()?;
        let pod_uid = dir.pod_by_ip(conn.daddr)?.uid.clone();
        // The tightest of the probes on that port is the one near failing.
        let spec = probe_of_spec(dir.probes_at(conn.daddr, conn.dport).iter().min_by_key(|p| p.timeout_s)?);
        drop(dir);
        if !near_timeout::is_near(answer.response_ms, &spec)
            || !self.first_near_timeout_in_a_minute((pod_uid, spec.probe_type, conn.dport), now_ns)
        {
            return None;
        }
        Some(near_timeout::slow_answer(r, answer, &spec))
    }

    /// An exec probe's command that exited by itself, but in more than
    /// 80 % of its probe's timeoutSeconds (the pod's spec names it by its
    /// command): the same warning as for a slow answer, with the
    /// container's CPU over the command's life.
    pub fn exec_near_timeout(&mut self, done: CommandDone) -> Option<Report> {
        let dir = self.dir.read().ok()?;
        let c = dir.container(&done.container_id)?;
        let spec = probe_of_spec(dir.exec_probes_of(&c.pod.uid, &c.name).iter().find(|s| s.command == done.argv)?);
        let key = (format!("{}/{}", c.pod.uid, c.name), spec.probe_type, 0);
        drop(dir);
        let ended_ns = done.report.ts_ns;
        if !near_timeout::is_near(done.runtime_ms, &spec) || !self.first_near_timeout_in_a_minute(key, ended_ns) {
            return None;
        }
        let cpu = cpu_over_life(&self.host, done.cpu_at_start.as_ref(), ended_ns);
        Some(near_timeout::slow_command(done.report, &done.argv, done.runtime_ms, spec, &cpu))
    }

    /// Whether a probe's `probe_near_timeout` is the first in a minute
    /// (and notes it).
    fn first_near_timeout_in_a_minute(&mut self, key: (String, &'static str, u16), now_ns: u64) -> bool {
        if self.near_timeout_said.get(&key).is_some_and(|t| now_ns.saturating_sub(*t) < NEAR_TIMEOUT_EVERY_NS) {
            return false;
        }
        if self.near_timeout_said.len() >= NEAR_TIMEOUT_MAX {
            self.near_timeout_said.retain(|_, t| now_ns.saturating_sub(*t) < NEAR_TIMEOUT_EVERY_NS);
            if self.near_timeout_said.len() >= NEAR_TIMEOUT_MAX {
                self.near_timeout_said.clear();
            }
        }
        self.near_timeout_said.insert(key, now_ns);
        true
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
            if let Some(conn) = &r.connection {
                pod = dir.pod_by_ip(conn.daddr).map(|p| (**p).clone());
            }
            // The serving container's cgroup, where the verdict measured it.
            if let Some(path) = r.workload.cgroup.get() {
                let ids = ContainerRef::from_cgroup_path(path);
                r.workload.pod_uid.fill(ids.pod_uid);
                r.workload.container_id.fill(ids.container_id);
            }
            // That container, or the one an exec probe ran in.
            if let Some(c) = r.workload.container_id.get().and_then(|id| dir.container(id)) {
                container = Some(c.name.clone());
                pod = pod.or_else(|| Some((*c.pod).clone()));
            }
            if let Some(conn) = r.connection {
                add_probe_spec(r, &conn, dir.probes_at(conn.daddr, conn.dport));
            }
            if let Some(svc) = r.ipvs.and_then(|v| dir.service_by_nodeport(v.ipvs_vport)) {
                r.kubernetes.ipvs_service = Some(format!("{}/{}", svc.namespace, svc.name));
            }
        } else if subject == Subject::Container {
            let ids = self.container_ref(r);
            r.workload.pod_uid.fill(ids.pod_uid);
            let container_id = r.workload.container_id.get().cloned().or(ids.container_id);
            let mut exec_probes: &[ProbeSpec] = &[];
            if let Some(c) = container_id.as_deref().and_then(|id| dir.container(id)) {
                pod = Some((*c.pod).clone());
                container = Some(c.name.clone());
                exec_probes = dir.exec_probes_of(&c.pod.uid, &c.name);
            } else if let Some(p) = r.workload.pod_uid.get().and_then(|uid| dir.pod_by_uid(uid)) {
                pod = Some((**p).clone());
            }
            if let Some(argv) = &r.command {
                let spec = exec_probes.iter().find(|s| &s.command == argv);
                r.name_probe(spec.map(probe_of_spec));
            }
        }
        if let Some(p) = &pod {
            r.name_pod(&p.namespace, &p.name, container.clone());
        }
        // A story (`runc_failed`) is posted once, named after its first
        // cause; the verdicts it groups are not posted on their own.
        if r.grouped {
            return None;
        }
        let first_cause = r.causes.as_ref().and_then(|c| c.first());
        let reason = first_cause.and_then(|c| catalogue::event_reason(c)).or_else(|| catalogue::event_reason(r.kind))?;
        let target = match (pod, subject) {
            (Some(pod), _) => EventTarget::Pod { pod, container },
            (None, Subject::Node) => EventTarget::Node,
            (None, _) => return None,
        };
        Some(EventRequest { target, reason, message: r.message.clone() })
    }

    /// Pod UID and container ID from the report's cgroup (path or id).
    fn container_ref(&self, r: &Report) -> ContainerRef {
        let path = r.workload.cgroup.get().cloned().or_else(|| self.host.cgroup_path(*r.workload.cgroup_id.get()?));
        path.map(|p| ContainerRef::from_cgroup_path(&p)).unwrap_or_default()
    }
}

/// Which of the pod's probes a probe report is: the one on its port (of
/// several, the one whose timeout the probe's elapsed time is nearest).
fn add_probe_spec(r: &mut Report, conn: &Connection, specs: &[ProbeSpec]) {
    let spec = specs.iter().min_by_key(|s| (u64::from(s.timeout_s) * 1000).abs_diff(conn.elapsed_ms));
    r.name_probe(spec.map(probe_of_spec));
}

/// A probe of the pod's spec, as diagnosis names it.
fn probe_of_spec(spec: &ProbeSpec) -> ProbeOfSpec {
    ProbeOfSpec {
        probe_type: spec.probe_type,
        container: spec.container.clone(),
        timeout_s: spec.timeout_s,
        period_s: spec.period_s,
        failure_threshold: spec.failure_threshold,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        diagnose::{Answer, IpvsPath, Slot},
        events::{Body, Event, Mode},
        processes::StaticProcesses,
    };

    fn directory() -> Arc<RwLock<Directory>> {
        use k8s_openapi::api::core::v1::{Pod, Service};
        let pods: k8s_openapi::List<Pod> = serde_json::from_str(include_str!("k8s/testdata/pods.json")).unwrap();
        let services: k8s_openapi::List<Service> = serde_json::from_str(include_str!("k8s/testdata/services.json")).unwrap();
        Arc::new(RwLock::new(Directory::new(&pods.items, &services.items)))
    }

    fn report(kind: &'static str) -> Report {
        let ev = Event { ts_ns: 1, pid: 10, tid: 10, comm: "kubelet".into(), cgroup_id: 0, mode: Mode::Tracepoint, body: Body::Fork { child_tid: 1 } };
        Report::new(kind, &ev).message("it failed".into())
    }

    /// A prober's connection to 10.200.1.2:`dport`.
    fn to_pod(mut r: Report, dport: u16, elapsed_ms: u64) -> Report {
        let (saddr, daddr) = ([10, 0, 0, 1].into(), [10, 200, 1, 2].into());
        r.connection = Some(Connection { saddr, sport: 40000, daddr, dport, elapsed_ms });
        r
    }

    fn in_container(mut r: Report, id: String) -> Report {
        r.workload.container_id = Slot::Known(id);
        r
    }

    #[test]
    fn diverted_synack_names_the_pod_and_the_nodeport_service() {
        let e = Enricher::new(directory(), StaticProcesses::default());
        let mut r = to_pod(report("synack_diverted"), 8080, 0);
        r.ipvs = Some(IpvsPath { ipvs_vip: [192, 168, 0, 1].into(), ipvs_vport: 31055, ipvs_rip: None, ipvs_rport: None });
        let event = e.enrich(&mut r).unwrap();
        assert_eq!(r.to_json()["pod"], "web-7d9f8b6c5-x2x4q");
        assert_eq!(r.to_json()["namespace"], "shop");
        assert_eq!(r.to_json()["ipvs_service"], "shop/checkout");
        assert!(r.message.ends_with("[pod shop/web-7d9f8b6c5-x2x4q]"), "{}", r.message);
        assert_eq!(event.reason, "ProbeSynAckDiverted");
        assert!(matches!(event.target, EventTarget::Pod { ref pod, .. } if pod.uid == "0a1b2c3d-1111-2222-3333-444455556666"));
    }

    #[test]
    fn exec_verdict_is_found_by_container_id_and_oom_by_cgroup_path() {
        let e = Enricher::new(directory(), StaticProcesses::default());
        let mut r = in_container(report("fork_failed"), "ab".repeat(32));
        let event = e.enrich(&mut r).unwrap();
        assert_eq!((r.to_json()["pod"].as_str(), r.to_json()["container"].as_str()), (Some("web-7d9f8b6c5-x2x4q"), Some("app")));
        assert_eq!(event.reason, "ExecProbeForkFailed");

        let path = format!("/sys/fs/cgroup/kubepods.slice/kubepods-pod0a1b2c3d_1111_2222_3333_444455556666.slice/cri-containerd-{}.scope", "ab".repeat(32));
        let mut r = report("oom_kill");
        r.workload.cgroup = Slot::Known(path);
        e.enrich(&mut r).unwrap();
        assert_eq!(r.to_json()["pod_uid"], "0a1b2c3d-1111-2222-3333-444455556666");
        assert_eq!(r.to_json()["container"], "app");
    }

    #[test]
    fn a_failed_runc_story_is_one_event_named_after_its_first_cause() {
        let e = Enricher::new(directory(), StaticProcesses::default());
        let mut cause = in_container(report("fork_failed"), "ab".repeat(32)).grouped();
        assert!(e.enrich(&mut cause).is_none());
        assert_eq!(cause.to_json()["pod"], "web-7d9f8b6c5-x2x4q", "grouped verdicts are still named");
        let mut story = in_container(report("runc_failed"), "ab".repeat(32));
        story.causes = Some(vec!["fork_failed", "runc_init_died"]);
        assert_eq!(e.enrich(&mut story).unwrap().reason, "ExecProbeForkFailed");
    }

    #[test]
    fn a_probe_verdict_names_the_probe_in_the_pods_spec() {
        let e = Enricher::new(directory(), StaticProcesses::default());
        let mut r = to_pod(report("probe_no_response"), 8080, 1000);
        e.enrich(&mut r).unwrap();
        assert_eq!((r.to_json()["probe_type"].as_str(), r.to_json()["timeout_s"].as_u64()), (Some("liveness"), Some(1)));
        assert_eq!((r.to_json()["period_s"].as_u64(), r.to_json()["failure_threshold"].as_u64()), (Some(10), Some(3)));
        assert!(r.message.contains("[liveness probe of container app: timeoutSeconds 1"), "{}", r.message);
    }

    #[test]
    fn an_exec_verdict_names_the_exec_probe_whose_command_it_ran() {
        let e = Enricher::new(directory(), StaticProcesses::default());
        let timeout = |argv: &[&str]| {
            let argv: Vec<String> = argv.iter().map(|a| a.to_string()).collect();
            in_container(report("exec_probe_timeout"), "ab".repeat(32)).with_command(&argv)
        };
        let mut r = timeout(&["/bin/sh", "-c", "test -e /tmp/ready"]);
        let event = e.enrich(&mut r).unwrap();
        assert_eq!(event.reason, "ExecProbeTimeout");
        assert_eq!((r.to_json()["probe_type"].as_str(), r.to_json()["timeout_s"].as_u64()), (Some("readiness"), Some(5)));
        assert_eq!((r.to_json()["period_s"].as_u64(), r.to_json()["failure_threshold"].as_u64()), (Some(15), Some(2)));
        assert!(r.message.contains("[readiness probe of container app: timeoutSeconds 5, periodSeconds 15, failureThreshold 2]"), "{}", r.message);
        // Another command in the same container (a `kubectl exec`, say) is
        // no probe of the spec's: the timeout is unknown.
        let mut r = timeout(&["/bin/sh", "-c", "test -e /tmp/ready", "extra"]);
        e.enrich(&mut r);
        assert!(r.to_json()["probe_type"].is_null() && r.to_json()["timeout_s"].is_null(), "{:?}", r.to_json());
        assert_eq!(r.to_json()["pod"], "web-7d9f8b6c5-x2x4q");
    }

    #[test]
    fn an_answer_past_80_percent_of_the_timeout_is_a_warning_once_a_minute() {
        let mut e = Enricher::new(directory(), StaticProcesses::default());
        let attempt = |ms: u64| {
            let mut r = to_pod(report("tcp_attempt"), 8080, ms).with("outcome", "established").with("response_ms", ms);
            r.answer = Some(Answer { response_ms: ms, slow_because: None });
            r
        };
        assert!(e.near_timeout(&attempt(700), 0).is_none(), "70 % is fine");
        let w = e.near_timeout(&attempt(850), 1).unwrap();
        assert_eq!(w.kind, "probe_near_timeout");
        assert!(w.is_verdict());
        assert_eq!(w.to_json()["answer_share_pct"], 85);
        assert!(w.message.contains("liveness probe of container app answered in 850 ms, 85 % of its timeoutSeconds (1)"), "{}", w.message);
        assert!(e.near_timeout(&attempt(900), 30_000_000_000).is_none(), "once a minute");
        assert!(e.near_timeout(&attempt(900), 61_000_000_001).is_some());
        // Without the pod's spec (no API server) the timeout is unknown: no guess.
        let mut bare = Enricher::new(Arc::new(RwLock::new(Directory::default())), StaticProcesses::default());
        assert!(bare.near_timeout(&attempt(5000), 0).is_none());
    }

    #[test]
    fn an_exec_probe_command_past_80_percent_of_its_timeout_is_a_warning() {
        let mut e = Enricher::new(directory(), StaticProcesses::default());
        let done = |argv: &[&str], ms: u64, ts_ns: u64| {
            let argv: Vec<String> = argv.iter().map(|a| a.to_string()).collect();
            let mut report = in_container(report("probe_near_timeout"), "ab".repeat(32)).with_command(&argv).with("runtime_ms", ms);
            report.ts_ns = ts_ns;
            CommandDone {
                report,
                container_id: "ab".repeat(32),
                argv,
                runtime_ms: ms,
                cpu_at_start: None,
            }
        };
        // The spec's readiness probe: `/bin/sh -c test -e /tmp/ready`, timeoutSeconds 5.
        let probe = ["/bin/sh", "-c", "test -e /tmp/ready"];
        assert!(e.exec_near_timeout(done(&probe, 3900, 1)).is_none(), "78 % is fine");
        let mut w = e.exec_near_timeout(done(&probe, 4300, 2)).unwrap();
        assert_eq!(w.kind, "probe_near_timeout");
        assert_eq!(w.to_json()["answer_share_pct"], 86);
        assert_eq!((w.to_json()["probe_type"].as_str(), w.to_json()["timeout_s"].as_u64()), (Some("readiness"), Some(5)));
        assert!(
            w.message.starts_with("the readiness exec probe of container app (`/bin/sh -c test -e /tmp/ready`) took 4300 ms from the runtime's start to the command's exit, 86 % of its timeoutSeconds (5)"),
            "{}",
            w.message
        );
        assert!(w.message.contains("its container's CPU in the window is unknown"), "{}", w.message);
        assert_eq!(w.to_json()["cpu_measured"], "no_reading_at_the_start");
        // Enrichment names the pod (by the container ID) and posts it on it.
        let event = e.enrich(&mut w).unwrap();
        assert_eq!((w.to_json()["pod"].as_str(), w.to_json()["container"].as_str()), (Some("web-7d9f8b6c5-x2x4q"), Some("app")));
        assert_eq!(event.reason, "ProbeNearTimeout");
        assert!(e.exec_near_timeout(done(&probe, 4900, 30_000_000_000)).is_none(), "once a minute");
        assert!(e.exec_near_timeout(done(&probe, 4900, 61_000_000_002)).is_some());
        // Another command (a `kubectl exec`), or no API server: no timeout known, no guess.
        assert!(e.exec_near_timeout(done(&["/bin/sleep", "9"], 9000, 0)).is_none());
        let mut bare = Enricher::new(Arc::new(RwLock::new(Directory::default())), StaticProcesses::default());
        assert!(bare.exec_near_timeout(done(&probe, 4900, 0)).is_none());
    }

    #[test]
    fn unknown_pods_get_no_names_and_no_event() {
        let e = Enricher::new(Arc::new(RwLock::new(Directory::default())), StaticProcesses::default());
        let mut r = to_pod(report("probe_timeout"), 8080, 0);
        assert!(e.enrich(&mut r).is_none());
        assert!(r.to_json().get("pod").is_none());
        assert_eq!(r.message, "it failed");
        // A slow runtime is the node's problem.
        let mut r = report("runtime_slow");
        assert_eq!(e.enrich(&mut r).unwrap().target, EventTarget::Node);
    }
}

//! Why the pod could not answer in time (INCIDENTS.md; kubernetes#70585):
//! a probe that connected and got no answer is measured against its
//! container's CPU over the probe's own window. The scenario's pod has two
//! containers in the kubelet's cgroup layout: one at a CPU limit of 0.01
//! with busy loops beside its server, one unlimited whose server stalls on
//! its own. Runs on the bare machine (cgroup v1 hybrid) and every VM (v2).

use serde_json::{Value, json};
use tests::{Machine, Scenario, Tracer, fake_api::FakeApiServer, machine};

const POD_UID: &str = "7e5e1a2b-0c3d-4e5f-8a9b-0c1d2e3f4a5b";

fn container_id(pair: &str) -> String {
    pair.repeat(32)
}

/// The probes' timeoutSeconds (more under emulation, where the prober's
/// own start takes part of it).
fn timeout() -> &'static str {
    if machine() == Machine::Vm { "2s" } else { "1s" }
}

/// The pod as the API server lists it: its probes are what the verdicts
/// name (`probe_type`, `timeout_s`).
fn pod_list() -> Value {
    let probe = |port: u16| json!({"httpGet": {"path": "/healthz", "port": port}, "timeoutSeconds": 1, "periodSeconds": 10, "failureThreshold": 3});
    json!({"kind": "PodList", "apiVersion": "v1", "metadata": {"resourceVersion": "1"}, "items": [{
        "metadata": {"name": "limits-0", "namespace": "shop", "uid": POD_UID},
        "spec": {"nodeName": "node-1", "containers": [
            {"name": "app", "livenessProbe": probe(8090)},
            {"name": "sidecar", "readinessProbe": probe(8093)}]},
        "status": {"phase": "Running", "podIP": "10.200.6.2", "podIPs": [{"ip": "10.200.6.2"}], "containerStatuses": [
            {"name": "app", "ready": true, "restartCount": 0, "image": "app", "imageID": "app", "containerID": format!("containerd://{}", container_id("a1"))},
            {"name": "sidecar", "ready": true, "restartCount": 0, "image": "sc", "imageID": "sc", "containerID": format!("containerd://{}", container_id("f2"))}]}
    }]})
}

/// One tracer run, as the daemon runs (verdicts only: the kernel counts
/// healthy probes itself) with the pod's spec from the API server:
/// - the throttled container's stalled probe is blamed on its limit, with
///   the window's numbers; the unlimited one's stall is not;
/// - every verdict names its probe (`probe_type`, `timeout_s`), and an
///   answer in 85 % of its timeout is a `probe_near_timeout` (the kernel
///   must send that slow answer's record, not count it).
#[test]
#[ignore = "e2e: needs root; run by cargo xtask test"]
fn one_vm_a_probe_starved_by_its_containers_cpu_limit_is_blamed_on_it_and_named_from_the_pods_spec() {
    let scenario = Scenario::up("limits");
    let api = FakeApiServer::start("node-1", pod_list(), json!({"kind": "ServiceList", "apiVersion": "v1", "metadata": {}, "items": []}));
    // Probes only: the exec group's programs would add minutes of attach
    // under emulation and nothing to this test.
    let tracer = Tracer::start(&["--groups", "probe", "--verdicts-only", "--kube-api", &api.url, "--node-name", "node-1"]);
    // The pod list is read in the background: give it its first read.
    std::thread::sleep(std::time::Duration::from_secs(2));
    assert_eq!(scenario.trigger(&["free", timeout()]), "success");
    assert_eq!(scenario.trigger(&["slow", timeout()]), "success");
    // A kubelet probes each container every periodSeconds: the first probe
    // to a container starts its sampling, the next is measured.
    for case in ["throttled", "stalled", "throttled", "stalled"] {
        let said = scenario.trigger(&[case, timeout()]);
        assert!(said.contains("Client.Timeout exceeded"), "{case}: {said}");
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    let out = tracer.stop();
    let measured = |port: u16| -> Vec<&Value> {
        out.kind("probe_no_response").into_iter().filter(|v| v["dport"] == port && v["cpu_measured"] == "sampled").collect()
    };
    assert!(out.verdicts().iter().all(|v| v["dport"] != 8091), "the free container's healthy probe: {}", out.dump());

    let throttled = measured(8090);
    assert!(!throttled.is_empty(), "no measured verdict for the throttled container: {}", out.dump());
    for v in &throttled {
        let window = v["cpu_window_ms"].as_u64().unwrap();
        let (periods, throttled_periods) = (v["cpu_periods"].as_u64().unwrap(), v["cpu_throttled_periods"].as_u64().unwrap());
        assert!(window >= 900, "{v}");
        assert!(v["cpu_throttled_ms"].as_u64().unwrap() * 2 >= window, "throttled for most of the window: {v}");
        assert!(periods > 0 && throttled_periods * 10 >= periods * 8, "{v}");
        assert_eq!(v["cpu_limit"], 0.01, "{v}");
        assert_eq!((v["pod_uid"].as_str(), v["container_id"].as_str()), (Some(POD_UID), Some(container_id("a1").as_str())), "{v}");
        assert_eq!((v["pod"].as_str(), v["container"].as_str()), (Some("limits-0"), Some("app")), "{v}");
        assert_eq!((v["probe_type"].as_str(), v["timeout_s"].as_u64(), v["failure_threshold"].as_u64()), (Some("liveness"), Some(1), Some(3)), "{v}");
        let m = v["message"].as_str().unwrap();
        assert!(m.contains("got no response: its container was CPU-throttled in"), "{m}");
        assert!(m.contains("at a limit of 0.01 CPU: raise resources.limits.cpu"), "{m}");
    }

    let stalled = measured(8092);
    assert!(!stalled.is_empty(), "no measured verdict for the stalled container: {}", out.dump());
    for v in &stalled {
        assert_eq!((&v["cpu_throttled_ms"], &v["cpu_limit"]), (&0.into(), &Value::Null), "{v}");
        assert_eq!(v["container_id"].as_str(), Some(container_id("f2").as_str()), "{v}");
        assert!(v["probe_type"].is_null() && v["timeout_s"].is_null(), "no probe on that port in the spec: {v}");
        let m = v["message"].as_str().unwrap();
        assert!(!m.contains("CPU-throttled in") && m.contains("not held back by its limits"), "{m}");
        assert!(m.contains("the application is stalled"), "{m}");
    }

    let near = out.only("probe_near_timeout");
    assert_eq!((near["dport"].as_u64(), near["probe_type"].as_str(), near["timeout_s"].as_u64()), (Some(8093), Some("readiness"), Some(1)), "{near}");
    assert!(near["answer_share_pct"].as_u64().unwrap() >= 80, "{near}");
    assert_eq!((near["pod"].as_str(), near["probe_container"].as_str()), (Some("limits-0"), Some("sidecar")), "{near}");
    assert_eq!(out.verdicts().len(), 5, "four stalls and one warning: {}", out.dump());
}

//! Exec probes on a node's real road (issue 26): Debian's containerd 1.6
//! (CRI plugin disabled, namespace k8s.io, 64-hex IDs, cgroupfs layout
//! kubepods/burstable/pod<uid>/<id>), `ctr task exec` through the real
//! containerd-shim-runc-v2, which runs runc with containerd's own ~500-byte
//! command line (the container ID last).
//!
//! One test, one containerd and one tracer for every case: under QEMU's
//! emulation each containerd start and tracer attach costs tens of seconds.

use std::{
    thread,
    time::{Duration, Instant},
};

use serde_json::{Value, json};
use tests::{Machine, Scenario, Tracer, fake_api::FakeApiServer, machine};

const POD_UID: &str = "0a1b2c3d-1111-2222-3333-444455556666";

/// The pod as the API server lists it: the probed container's exec
/// liveness probe is the command the test times out, so its verdict names
/// the probe (`probe_type`, `timeout_s`); its readiness probe is the one
/// that ends near its timeout.
fn pod_list() -> Value {
    let status = |name: &str, pair: &str| {
        json!({"name": name, "ready": true, "restartCount": 0, "image": name, "imageID": name, "containerID": format!("containerd://{}", id(pair))})
    };
    json!({"kind": "PodList", "apiVersion": "v1", "metadata": {"resourceVersion": "1"}, "items": [{
        "metadata": {"name": "exec-0", "namespace": "shop", "uid": POD_UID},
        "spec": {"nodeName": "node-1", "containers": [
            {"name": "app", "livenessProbe": {"exec": {"command": ["/bin/sleep", "30"]}, "timeoutSeconds": 1, "periodSeconds": 10, "failureThreshold": 3},
             "readinessProbe": {"exec": {"command": ["/bin/sleep", "0.9"]}, "timeoutSeconds": 1, "periodSeconds": 5, "failureThreshold": 3}},
            {"name": "stopped"}]},
        "status": {"phase": "Running", "podIP": "10.200.7.2", "containerStatuses": [status("app", "c0"), status("stopped", "d1")]}
    }]})
}

fn id(pair: &str) -> String {
    pair.repeat(32)
}

fn with<'a>(out: &'a tests::Output, kind: &str, container: &str) -> Vec<&'a Value> {
    out.kind(kind).into_iter().filter(|v| v["container_id"] == container).collect()
}

/// Every verdict of these tests names its container and pod, and a cgroup
/// below the pod's (the runtime runs in its own cgroup, not the pod's).
fn names_the_pod(v: &Value, container: &str) {
    assert_eq!(v["container_id"], container, "{v}");
    assert_eq!(v["pod_uid"], POD_UID, "{v}");
    let cgroup = v["cgroup"].as_str().unwrap_or_else(|| panic!("no cgroup: {v}"));
    assert!(cgroup.ends_with(&format!("kubepods/burstable/pod{POD_UID}/{container}")), "{v}");
}

/// The tracer judges held-stopped containers on its housekeeping tick,
/// 5 s after the init died.
const HELD_WAIT: Duration = Duration::from_secs(7);

#[test]
#[ignore = "e2e: needs root, containerd and runc; run by cargo xtask test"]
fn one_vm_exec_probes_through_containerds_shim_name_the_container_and_the_pod() {
    let scenario = Scenario::up("containerd");
    // Killed before the tracer starts: only the runtime's state tells.
    assert_eq!(scenario.trigger(&["stop", "early"]), "STOPPED");
    let api = FakeApiServer::start("node-1", pod_list(), json!({"kind": "ServiceList", "apiVersion": "v1", "metadata": {}, "items": []}));
    let tracer = Tracer::start(&["--groups", "exec", "--runtime-slow-ms", "60000", "--kube-api", &api.url, "--node-name", "node-1", "--emit-events"]);
    // The pod list is read in the background: give it its first read.
    thread::sleep(Duration::from_secs(2));
    assert_eq!(scenario.trigger(&["healthy"]), "0");
    // The readiness probe's command, done in 90 % of its timeout and more.
    assert_eq!(scenario.trigger(&["exec-slow"]), "0");
    assert_ne!(scenario.trigger(&["missing"]), "0", "exec of a missing binary must fail");
    // crun as the runtime through the same shim (`ctr --runc-binary crun`).
    // crun 1.8 refuses a cgroup v1 hybrid host whose v2 tree holds a
    // controller ("cgroups in hybrid mode not supported"): the bare machine
    // is one, the VMs are cgroup v2.
    let with_crun = machine() == Machine::Vm;
    if with_crun {
        assert_eq!(scenario.trigger(&["crun-up"]), "0", "the crun container starts");
        // crun's setns per namespace fails with EINVAL for the user
        // namespace it is already in, and it goes on: no verdict.
        assert_eq!(scenario.trigger(&["healthy-crun"]), "0");
        assert_ne!(scenario.trigger(&["missing-crun"]), "0");
    }
    assert_eq!(scenario.trigger(&["stop"]), "STOPPED");
    let died = Instant::now();
    assert_ne!(scenario.trigger(&["stopped"]), "0", "exec into a stopped container must fail");
    // An exec probe past its timeout (1 s): its command SIGKILLed through
    // the shim, as containerd does when ExecSync's timeout expires.
    assert_eq!(scenario.trigger(&["exec-timeout"]), "137", "the exec of sleep 30 is killed");
    // The same probe, its container throttled at 0.01 CPU by a busy loop
    // of its own while the command runs.
    assert_eq!(scenario.trigger(&["exec-timeout-throttled"]), "137", "the throttled exec of sleep 30 is killed");
    // A command that exits at once, leaving a child that holds its output.
    assert_eq!(scenario.trigger(&["exec-output-held"]), "0", "the shell exits 0");
    // The probe's own command cannot fork at the pod's pids limit; it is
    // held, the pod full, until the tracer has stopped.
    let command_pids = scenario.trigger(&["command-pids"]);
    let pod_pids_max: u64 = match command_pids.split_once(' ') {
        Some(("1", max)) => max.parse().unwrap(),
        _ => panic!("one \"sh: can't fork\", and the pod's pids.max: {command_pids}"),
    };
    thread::sleep(HELD_WAIT.saturating_sub(died.elapsed()));
    let out = tracer.stop();
    assert_eq!(scenario.trigger(&["command-pids-end"]), "2", "the exec fails with the shell's code");
    let probe = id("c0");
    let stopped = id("d1");
    let early = id("d0");

    // The missing binary: one story, caused by runc's own error from its
    // --log file; runc init reported it and did not die.
    let stories = with(&out, "runc_failed", &probe);
    assert_eq!(stories.len(), 1, "{}", out.dump());
    let story = stories[0];
    names_the_pod(story, &probe);
    assert_eq!(story["subcommand"], "exec");
    assert_eq!(story["args_truncated"], false);
    let message = story["message"].as_str().unwrap();
    assert!(message.contains(&format!("runc exec into container {probe} failed")), "{story}");
    assert!(message.contains("runc reported: exec failed: unable to start container process: exec: \"/bin/nonexistent\""), "{story}");
    assert!(out.kind("runc_init_died").is_empty(), "{}", out.dump());

    // crun's missing binary: one story, named after crun, caused by crun's
    // own error and not by its setns tries.
    if with_crun {
        let crun = id("e2");
        let stories = with(&out, "runc_failed", &crun);
        assert_eq!(stories.len(), 1, "{}", out.dump());
        names_the_pod(stories[0], &crun);
        assert_eq!((stories[0]["runtime"].as_str(), stories[0]["comm"].as_str()), (Some("crun"), Some("crun")), "{}", stories[0]);
        let message = stories[0]["message"].as_str().unwrap();
        assert!(message.starts_with(&format!("crun exec into container {crun} failed")), "{message}");
        assert!(message.contains("nonexistent"), "crun's own error: {message}");
        assert!(with(&out, "setns_failed", &crun).is_empty(), "{}", out.dump());
    }

    // The container killed while traced: its init's death, then the shim
    // refusing every exec by itself (no runc runs), from what was observed.
    let exit = with(&out, "container_init_exit", &stopped);
    assert_eq!(exit.len(), 1, "{}", out.dump());
    names_the_pod(exit[0], &stopped);
    assert_eq!(exit[0]["signal"], "SIGKILL");
    let held = with(&out, "exec_into_stopped_container", &stopped);
    assert_eq!(held.len(), 1, "{}", out.dump());
    names_the_pod(held[0], &stopped);
    assert_eq!(held[0]["evidence"], "observed");
    assert_eq!(held[0]["init_pid"], exit[0]["pid"]);
    assert!(held[0]["message"].as_str().unwrap().contains("cannot exec in a stopped state"));

    // The one killed before the tracer started: from the runtime's state.
    let held = with(&out, "exec_into_stopped_container", &early);
    assert_eq!(held.len(), 1, "{}", out.dump());
    names_the_pod(held[0], &early);
    assert_eq!(held[0]["evidence"], "state");
    assert!(with(&out, "container_init_exit", &early).is_empty(), "{}", out.dump());

    // The command's failed fork: the pod's limit, with its numbers; runc
    // succeeded, so there is no story.
    let forks = with(&out, "fork_failed", &probe);
    assert_eq!(forks.len(), 1, "{}", out.dump());
    let f = forks[0];
    assert_eq!((f["comm"].as_str(), f["exec_command"].as_bool()), (Some("sh"), Some(true)), "{f}");
    assert_eq!(f["pod_uid"], POD_UID, "{f}");
    assert_eq!(f["limit_scope"], "pod", "{f}");
    assert_eq!(f["errno_name"], "EAGAIN", "{f}");
    assert!(f["cgroup"].as_str().unwrap().ends_with(&format!("kubepods/burstable/pod{POD_UID}")), "{f}");
    assert!(f["container_cgroup"].as_str().unwrap().ends_with(&format!("pod{POD_UID}/{probe}")), "{f}");
    // The pod holds the container's init and the command: at its limit.
    assert!(pod_pids_max >= 2, "{command_pids}");
    assert_eq!((f["pids_current"].as_u64(), f["pids_max"].as_u64()), (Some(pod_pids_max), Some(pod_pids_max)), "{f}");
    let message = f["message"].as_str().unwrap();
    assert!(message.contains(&format!("pids.current {pod_pids_max} = pids.max {pod_pids_max}")), "{message}");
    assert!(message.starts_with(&format!("runc exec into container {probe} started its command, but sh (pid {})", f["pid"])), "{message}");

    // The killed exec: its command, how long it ran, and who killed it.
    let timeouts = with(&out, "exec_probe_timeout", &probe);
    assert_eq!(timeouts.len(), 2, "{}", out.dump());
    let (t, throttled) = (timeouts[0], timeouts[1]);
    names_the_pod(t, &probe);
    assert_eq!((t["comm"].as_str(), t["subcommand"].as_str()), (Some("sleep"), Some("exec")), "{t}");
    assert_eq!(t["command"], serde_json::json!(["/bin/sleep", "30"]), "{t}");
    assert_eq!((t["killed_by_comm"].as_str(), t["signal"].as_str()), (Some("containerd-shim"), Some("SIGKILL")), "{t}");
    assert!(t["killed_by_pid"].as_u64().unwrap() > 1, "{t}");
    let (killed_after, ran) = (t["killed_after_ms"].as_u64().unwrap(), t["runtime_ms"].as_u64().unwrap());
    assert!(killed_after >= 1000 && ran >= killed_after && ran < 30_000, "{t}");
    // The container's CPU over the command's life, read when its exec and
    // its exit are handled (the runtime's own start comes before: under
    // emulation by most of a second): a sleep beside an idle init is not
    // held back.
    assert_eq!(t["cpu_measured"], "sampled", "{t}");
    let window = t["cpu_window_ms"].as_u64().unwrap();
    assert!((500..ran + 1000).contains(&window), "{t}");
    assert!(t["message"].as_str().unwrap().contains("not held back by its limits"), "{t}");
    // The probe it is, from the pod's spec, matched by its command.
    assert_eq!((t["pod"].as_str(), t["container"].as_str()), (Some("exec-0"), Some("app")), "{t}");
    assert_eq!((t["probe_type"].as_str(), t["timeout_s"].as_u64(), t["failure_threshold"].as_u64()), (Some("liveness"), Some(1), Some(3)), "{t}");
    assert!(t["message"].as_str().unwrap().contains("[liveness probe of container app: timeoutSeconds 1"), "{t}");

    // The throttled one: blamed on the container's limit, measured over
    // the command's life (the limit came once it ran).
    names_the_pod(throttled, &probe);
    assert_eq!((throttled["cpu_measured"].as_str(), throttled["cpu_limit"].as_f64()), (Some("sampled"), Some(0.01)), "{throttled}");
    let (periods, throttled_periods) = (throttled["cpu_periods"].as_u64().unwrap(), throttled["cpu_throttled_periods"].as_u64().unwrap());
    assert!(periods > 0 && throttled_periods * 10 >= periods * 8, "throttled in most periods: {throttled}");
    let m = throttled["message"].as_str().unwrap();
    assert!(m.contains("its container was CPU-throttled in") && m.contains("at a limit of 0.01 CPU: raise resources.limits.cpu"), "{m}");
    assert_eq!(throttled["probe_type"], "liveness", "{throttled}");

    // The shell that left its sleep holding its output: named with it.
    let held = with(&out, "exec_probe_output_held", &id("b5"));
    assert_eq!(held.len(), 1, "{}", out.dump());
    let h = held[0];
    names_the_pod(h, &id("b5"));
    assert_eq!((h["comm"].as_str(), h["exit_code"].as_i64()), (Some("sh"), Some(0)), "{h}");
    assert_eq!(h["command"], json!(["/bin/sh", "-c", "sleep 30 & echo started"]), "{h}");
    // Busybox's shell starts the `sleep` applet by exec'ing /proc/self/exe,
    // and the applet renames itself a moment later: read in between, its
    // comm is still `exe`.
    assert!(matches!(h["held_by_comm"].as_str(), Some("sleep" | "exe")), "{h}");
    assert!(matches!(h["held_fd"].as_u64(), Some(1 | 2)), "{h}");
    assert!(h["message"].as_str().unwrap().contains("it left running still holds its"), "{h}");
    assert!(h["probe_type"].is_null(), "not the spec's command: {h}");

    // The readiness probe that ended by itself past 80 % of its timeout:
    // a warning before the kubelet fails it, named from the spec; the
    // healthy `/bin/true` is no probe of the spec's and says nothing.
    let near = with(&out, "probe_near_timeout", &probe);
    assert_eq!(near.len(), 1, "{}", out.dump());
    let n = near[0];
    names_the_pod(n, &probe);
    assert_eq!((n["comm"].as_str(), n["exit_code"].as_i64()), (Some("sleep"), Some(0)), "{n}");
    assert_eq!(n["command"], json!(["/bin/sleep", "0.9"]), "{n}");
    assert_eq!((n["probe_type"].as_str(), n["timeout_s"].as_u64(), n["period_s"].as_u64()), (Some("readiness"), Some(1), Some(5)), "{n}");
    assert_eq!((n["pod"].as_str(), n["container"].as_str()), (Some("exec-0"), Some("app")), "{n}");
    let ran = n["runtime_ms"].as_u64().unwrap();
    assert!(ran >= 900 && n["answer_share_pct"].as_u64() == Some(ran / 10), "{n}");
    assert_eq!(n["cpu_measured"], "sampled", "{n}");
    assert!(n["message"].as_str().unwrap().starts_with("the readiness exec probe of container app (`/bin/sleep 0.9`) took"), "{n}");

    // The command that could not fork is no probe of the spec's.
    assert!(f["probe_type"].is_null() && f["timeout_s"].is_null(), "{f}");
    // Each verdict about the pod became an Event on it.
    let reasons: Vec<String> = api.events().iter().filter_map(|e| e["reason"].as_str().map(String::from)).collect();
    assert!(reasons.iter().any(|r| r == "ExecProbeTimeout"), "{reasons:?}");
    assert!(reasons.iter().any(|r| r == "ProbeNearTimeout"), "{reasons:?}");

    // Nothing else: the healthy exec says nothing.
    assert_eq!(out.verdicts().len(), if with_crun { 10 } else { 9 }, "{}", out.dump());
    assert_eq!(out.only("summary")["lost_events"], 0);
    assert_eq!(out.only("summary")["tracking_map_evictions"], 0);
}

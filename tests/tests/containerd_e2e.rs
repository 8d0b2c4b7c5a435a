//! Exec probes on a node's real road (issue 26): Debian's containerd 1.6
//! (CRI plugin disabled, namespace k8s.io, 64-hex IDs, cgroupfs layout
//! kubepods/burstable/pod<uid>/<id>), `ctr task exec` through the real
//! containerd-shim-runc-v2, which runs runc with containerd's own ~500-byte
//! command line (the container ID last).

use std::{thread, time::Duration};

use serde_json::Value;
use tests::{Scenario, Tracer};

const POD_UID: &str = "0a1b2c3d-1111-2222-3333-444455556666";

fn id(pair: &str) -> String {
    pair.repeat(32)
}

fn probe_id() -> String {
    id("c0")
}

fn stopped_id() -> String {
    id("d1")
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
fn exec_probes_through_containerds_shim_name_the_container_and_the_pod() {
    let scenario = Scenario::up("containerd");
    let tracer = Tracer::start(&["--groups", "exec", "--runtime-slow-ms", "60000"]);
    assert_eq!(scenario.trigger(&["healthy"]), "0");
    assert_ne!(scenario.trigger(&["missing"]), "0", "exec of a missing binary must fail");
    assert_eq!(scenario.trigger(&["stop"]), "STOPPED");
    assert_ne!(scenario.trigger(&["stopped"]), "0", "exec into a stopped container must fail");
    thread::sleep(HELD_WAIT);
    let out = tracer.stop();
    let probe = probe_id();
    let stopped = stopped_id();

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

    // The stopped container: its init's death, then the shim refusing
    // every exec by itself (no runc runs), from what was observed.
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

    // Nothing else: the healthy exec says nothing.
    let kinds: Vec<&str> = out.verdicts().iter().filter_map(|v| v["kind"].as_str()).collect();
    assert_eq!(kinds.len(), 3, "{}", out.dump());
    assert_eq!(out.only("summary")["lost_events"], 0);
}

#[test]
#[ignore = "e2e: needs root, containerd and runc; run by cargo xtask test"]
fn a_container_that_died_before_the_tracer_started_is_found_in_the_runtimes_state() {
    let scenario = Scenario::up("containerd");
    assert_eq!(scenario.trigger(&["stop"]), "STOPPED");
    let tracer = Tracer::start(&["--groups", "exec", "--runtime-slow-ms", "60000"]);
    assert_ne!(scenario.trigger(&["stopped"]), "0");
    thread::sleep(Duration::from_secs(2));
    let out = tracer.stop();
    let stopped = stopped_id();
    let held = with(&out, "exec_into_stopped_container", &stopped);
    assert_eq!(held.len(), 1, "{}", out.dump());
    assert_eq!(held[0]["evidence"], "state");
    names_the_pod(held[0], &stopped);
    assert_eq!(out.verdicts().len(), 1, "{}", out.dump());

    // Deleted (what restarting the pod does): nothing more.
    assert_eq!(scenario.trigger(&["remove-stopped"]), "0");
    let tracer = Tracer::start(&["--groups", "exec", "--runtime-slow-ms", "60000"]);
    assert_eq!(scenario.trigger(&["healthy"]), "0");
    thread::sleep(Duration::from_secs(2));
    let out = tracer.stop();
    assert!(out.verdicts().is_empty(), "{}", out.dump());
}

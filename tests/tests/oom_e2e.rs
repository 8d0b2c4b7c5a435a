//! Incident 4 end to end: OOM kills in a memory-limited cgroup (cgroup v2
//! `memory.max` in the VM, the v1 memory controller on the bare machine),
//! one of a process named like a runtime component, then the fix.

use tests::{Machine, Scenario, Tracer, machine};

#[test]
#[ignore = "e2e: needs root and a memory cgroup; run by cargo xtask test"]
fn oom_kills_are_attributed_and_runtime_components_flagged() {
    let scenario = Scenario::up("oom");
    let tracer = Tracer::start(&["--groups", "node"]);
    assert_eq!(scenario.trigger(&["hog"]), "137", "memhog must be OOM-killed");
    assert_eq!(scenario.trigger(&["shim"]), "137");
    assert_eq!(scenario.trigger(&["fixed"]), "0", "with the limit raised it must survive");
    let out = tracer.stop();

    assert_eq!(out.hook_mode("oom_kill"), "tracepoint", "{}", out.dump());
    let kills = out.kind("oom_kill");
    assert_eq!(kills.len(), 2, "one verdict per kill, none for the fixed run:\n{}", out.dump());
    let hog = kills.iter().find(|k| k["comm"] == "memhog").expect("memhog verdict");
    let shim = kills.iter().find(|k| k["comm"] == "containerd-shim").expect("shim verdict");
    assert_eq!(hog["runtime_component"], false);
    assert_eq!(shim["runtime_component"], true);
    for k in [hog, shim] {
        assert_eq!(k["exit_signal"], "SIGKILL", "{k}");
        assert_eq!(k["victim_pid"], k["pid"]);
    }
    if machine() == Machine::Vm {
        // cgroup v2: the killer's cgroup is the limited one.
        assert_eq!(hog["constraint"], "cgroup", "{hog}");
        assert_eq!(hog["memory_limit_bytes"], 32 << 20);
        assert!(hog["cgroup"].as_str().unwrap().ends_with("/pt-oom"), "{hog}");
        assert!(hog["message"].as_str().unwrap().contains("32.0 MiB limit"), "{hog}");
    }
    assert_eq!(out.only("summary")["lost_events"], 0);
}

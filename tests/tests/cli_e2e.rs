//! What a person gets when the tracer cannot run: one sentence, non-zero exit.

use std::process::Command;

#[test]
#[ignore = "e2e: needs root (to drop privileges); run by cargo xtask test"]
fn unprivileged_run_says_what_is_wrong_in_one_line() {
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all"])
        .arg(tests::binary())
        .args(["run", "--duration", "1"])
        .output()
        .expect("setpriv (util-linux)");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "one line, no backtrace: {stderr}");
    assert!(stderr.contains("needs root or the capabilities"), "{stderr}");
    assert!(stderr.contains("sudo"), "{stderr}");
    assert!(out.stdout.is_empty());
}

#[test]
#[ignore = "e2e: run by cargo xtask test"]
fn bad_flags_are_rejected_before_anything_loads() {
    let out = Command::new(tests::binary()).args(["run", "--nodeport-range", "32767-30000"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("empty or reversed"));
}

#[test]
#[ignore = "e2e: needs root; run by cargo xtask test"]
fn check_reports_every_hook_and_the_kernel() {
    let out = Command::new(tests::binary()).args(["check", "--format", "json"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["kind"], "check");
    assert_eq!(v["kernel"]["btf"], true);
    assert_eq!(v["kernel"]["privileged"], true);
    assert_ne!(v["kernel"]["lockdown"], "unknown", "securityfs is mounted when missing");
    let hooks = v["hooks"].as_array().unwrap();
    for name in ["tcp_state", "tcp_connect", "tcp_rcv_state_process", "tcp_retransmit", "tcp_receive_reset", "ipvs_conn_new"] {
        let h = hooks.iter().find(|h| h["hook"] == name).unwrap_or_else(|| panic!("{name} missing"));
        assert!(h["mode"].is_string(), "{name} got nothing: {h}");
    }
    if tests::machine() == tests::Machine::Bare {
        // This kernel refuses fentry and has no kprobes: the report says so.
        let connect = hooks.iter().find(|h| h["hook"] == "tcp_connect").unwrap();
        assert_eq!(connect["mode"], "raw_tracepoint");
        let tried: Vec<&str> = connect["tried"].as_array().unwrap().iter().map(|t| t["mode"].as_str().unwrap()).collect();
        assert_eq!(tried, ["fentry", "kprobe"]);
    }
}

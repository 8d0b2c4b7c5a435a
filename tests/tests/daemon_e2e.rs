//! `probe-tracer daemon` end to end: /healthz, Prometheus metrics that count
//! a real verdict, and a prompt, clean stop on SIGTERM.

use std::{
    fs,
    process::{Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use tests::Scenario;

fn get(url: &str) -> Option<(u16, String)> {
    let out = Command::new("curl").args(["-s", "-m", "2", "-w", "\n%{http_code}", url]).output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, code) = text.rsplit_once('\n')?;
    Some((code.trim().parse().ok()?, body.to_string()))
}

struct KillOnDrop(i32);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        unsafe { libc::kill(self.0, libc::SIGKILL) };
    }
}

#[test]
#[ignore = "e2e: needs root and runc; run by cargo xtask test"]
fn daemon_serves_health_and_metrics_and_stops_on_sigterm() {
    let scenario = Scenario::up("runc");
    let dir = std::env::temp_dir().join(format!("probe-tracer-daemon-{}", std::process::id()));
    fs::create_dir_all(&dir).unwrap();
    let stdout = dir.join("stdout.jsonl");
    let addr = "127.0.0.1:19464";
    let mut child = Command::new(tests::binary())
        .args(["daemon", "--metrics-addr", addr, "--runtime-slow-ms", "60000"])
        .stdout(Stdio::from(fs::File::create(&stdout).unwrap()))
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    // Kill the daemon if an assertion fails before SIGTERM is sent.
    let guard = KillOnDrop(child.id() as i32);

    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Some((200, body)) = get(&format!("http://{addr}/healthz")) {
            assert_eq!(body.trim(), "ok");
            break;
        }
        assert!(child.try_wait().unwrap().is_none(), "daemon exited early");
        assert!(Instant::now() < deadline, "no /healthz within 120 s");
        thread::sleep(Duration::from_millis(200));
    }
    // Attached once tracer_started is written.
    while !fs::read_to_string(&stdout).unwrap().contains("tracer_started") {
        thread::sleep(Duration::from_millis(100));
    }
    let statuses = scenario.trigger(&["pids"]);
    assert_ne!(statuses.split(' ').last().unwrap(), "0", "{statuses}");
    // Verdicts are judged on the housekeeping tick at the latest.
    thread::sleep(Duration::from_secs(2));

    let (code, metrics) = get(&format!("http://{addr}/metrics")).expect("metrics");
    assert_eq!(code, 200);
    assert!(metrics.contains(r#"probe_tracer_verdicts_total{kind="fork_failed",reason="EAGAIN"} 1"#), "{metrics}");
    assert!(metrics.contains(r#"probe_tracer_hook_attached{hook="runtime_exec",mode="tracepoint"} 1"#), "{metrics}");
    assert!(metrics.contains(r#"probe_tracer_runtime_call_duration_seconds_count{subcommand="exec"}"#), "{metrics}");
    assert!(metrics.contains("probe_tracer_lost_events_total 0"), "{metrics}");
    assert!(metrics.contains("probe_tracer_ringbuf_fill_ratio"), "{metrics}");
    assert_eq!(get(&format!("http://{addr}/nope")).unwrap().0, 404);

    // SIGTERM: detach and flush within a second.
    let sent = Instant::now();
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = child.wait().unwrap();
    std::mem::forget(guard);
    assert!(status.success(), "{status}");
    assert!(sent.elapsed() < Duration::from_secs(1), "took {:?}", sent.elapsed());
    let out = fs::read_to_string(&stdout).unwrap();
    let kinds: Vec<String> = out
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["kind"].as_str().unwrap().to_string())
        .collect();
    assert!(kinds.contains(&"fork_failed".to_string()), "{out}");
    assert!(!kinds.contains(&"tcp_attempt".to_string()), "the daemon prints verdicts only");
    assert_eq!(kinds.last().map(String::as_str), Some("summary"));
}

//! `probe-tracer daemon` end to end: /healthz, Prometheus metrics that count
//! a real verdict (and serve every name the alert rules and the dashboard
//! use), pod names from a (fake) API server and an Event posted to it, and a
//! prompt, clean stop on SIGTERM.

use std::{
    fs,
    process::{Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use tests::{
    Machine, Scenario,
    fake_api::{FakeApiServer, recorded},
    monitoring::{dashboard_usage, rule_test_series, rules_usage, served, unserved},
};

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
fn one_vm_daemon_serves_health_and_metrics_and_stops_on_sigterm() {
    let scenario = Scenario::up("runc");
    // The API server knows the scenario's container (runc's name for it is
    // the CRI container ID) as container "app" of pod shop/web-....
    let mut pods = recorded("pods.json");
    pods["items"][0]["status"]["containerStatuses"][0]["containerID"] = "containerd://pt-probe".into();
    let api = FakeApiServer::start("node-1", pods, recorded("services.json"));
    let dir = std::env::temp_dir().join(format!("probe-tracer-daemon-{}", std::process::id()));
    fs::create_dir_all(&dir).unwrap();
    let stdout = dir.join("stdout.jsonl");
    let addr = "127.0.0.1:19464";
    let mut child = tests::die_with_parent(&mut Command::new(tests::binary()))
        .args(["daemon", "--metrics-addr", addr, "--runtime-slow-ms", "60000"])
        // The fork_failed verdict below needs the clone hooks; on a kernel
        // without fexit they are syscall tracepoints, off by default here.
        .args(["--syscall-tracepoints", "on"])
        .args(["--kube-api", &api.url, "--node-name", "node-1", "--emit-events"])
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
    assert_ne!(statuses.split(' ').next_back().unwrap(), "0", "{statuses}");
    // Three healthy probes: the daemon has the kernel count them (no record
    // each), and the metric takes the counts in on the housekeeping tick.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    thread::spawn(move || {
        tests::set_thread_name("kubelet");
        for _ in 0..3 {
            drop(std::net::TcpStream::connect(("127.0.0.1", port)).unwrap());
        }
    })
    .join()
    .unwrap();
    // Verdicts are judged on the housekeeping tick at the latest.
    thread::sleep(Duration::from_secs(2));

    let (code, metrics) = get(&format!("http://{addr}/metrics")).expect("metrics");
    assert_eq!(code, 200);
    assert!(metrics.contains(r#"probe_tracer_verdicts_total{kind="fork_failed",reason="EAGAIN"} 1"#), "{metrics}");
    assert!(metrics.contains(r#"probe_tracer_probe_connections_total{outcome="established"} 3"#), "{metrics}");
    assert!(metrics.contains(r#"probe_tracer_hook_attached{hook="runtime_exec",mode="raw_tracepoint"} 1"#), "{metrics}");
    assert!(metrics.contains(r#"probe_tracer_runtime_call_duration_seconds_count{subcommand="exec"}"#), "{metrics}");
    assert!(metrics.contains("probe_tracer_lost_events_total 0"), "{metrics}");
    assert!(metrics.contains("probe_tracer_ringbuf_fill_ratio"), "{metrics}");
    assert_eq!(get(&format!("http://{addr}/nope")).unwrap().0, 404);
    // Every metric and label the alert rules, their promtool tests and the
    // Grafana dashboard use is one this daemon serves.
    let page = served(&metrics);
    let root = tests::root();
    let mut uses = rules_usage(&root.join("deploy/prometheus/probe-tracer.rules.yaml"));
    uses.extend(rule_test_series(&root.join("deploy/prometheus/probe-tracer.rules.test.yaml")));
    let dashboard = serde_json::from_str(&fs::read_to_string(root.join("deploy/grafana/probe-tracer.json")).unwrap()).unwrap();
    uses.extend(dashboard_usage(&dashboard));
    let problems = unserved(&uses, &page);
    assert!(problems.is_empty(), "names the daemon does not serve:\n{}\n{metrics}", problems.join("\n"));

    // The verdict's Event reached the API server.
    let events = api.events();
    let forks: Vec<_> = events.iter().filter(|e| e["reason"] == "ExecProbeForkFailed").collect();
    assert_eq!(forks.len(), 1, "{events:?}");
    assert_eq!(forks[0]["involvedObject"]["name"], "web-7d9f8b6c5-x2x4q");
    assert_eq!(forks[0]["involvedObject"]["fieldPath"], "spec.containers{app}");
    assert_eq!(forks[0]["metadata"]["namespace"], "shop");
    assert!(metrics.contains(r#"probe_tracer_kubernetes_events_total{result="posted"}"#), "{metrics}");

    // SIGTERM: flush (the summary is the last line written) within a
    // second, then detach. Detaching fentry programs waits for RCU grace
    // periods, which QEMU's emulation stretches past a second.
    let sent = Instant::now();
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    while !fs::read_to_string(&stdout).unwrap().contains(r#""kind":"summary""#) {
        assert!(sent.elapsed() < Duration::from_secs(1), "no summary within a second of SIGTERM");
        thread::sleep(Duration::from_millis(10));
    }
    let flushed = sent.elapsed();
    let status = child.wait().unwrap();
    std::mem::forget(guard);
    let exited = sent.elapsed();
    eprintln!("SIGTERM: summary after {flushed:?}, exit after {exited:?}");
    assert!(status.success(), "{status}");
    let exit_budget = if tests::machine() == Machine::Bare { Duration::from_secs(1) } else { Duration::from_secs(5) };
    assert!(exited < exit_budget, "exit took {exited:?}");
    let out = fs::read_to_string(&stdout).unwrap();
    let kinds: Vec<String> = out
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["kind"].as_str().unwrap().to_string())
        .collect();
    assert!(kinds.contains(&"fork_failed".to_string()), "{out}");
    let fork = out.lines().map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()).find(|v| v["kind"] == "fork_failed").unwrap();
    assert_eq!((fork["pod"].as_str(), fork["namespace"].as_str(), fork["container"].as_str()), (Some("web-7d9f8b6c5-x2x4q"), Some("shop"), Some("app")), "{fork}");
    assert!(!kinds.contains(&"tcp_attempt".to_string()), "the daemon prints verdicts only");
    assert_eq!(kinds.last().map(String::as_str), Some("summary"));
}

/// One plain HTTP/1.1 GET on a fresh connection: status code and how long
/// the answer took.
fn timed_get(addr: &str, path: &str) -> (u16, Duration) {
    use std::io::{Read, Write};
    let start = Instant::now();
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
    let mut reply = String::new();
    let _ = s.read_to_string(&mut reply);
    let code = reply.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    (code, start.elapsed())
}

/// Hundreds of clients that connect and never finish a request (idle, or
/// slowloris with half a header) neither stop /healthz from answering nor
/// stay connected past the header timeout.
#[test]
#[ignore = "e2e: needs root; run by cargo xtask test"]
fn bare_only_healthz_answers_under_hundreds_of_idle_and_slow_connections() {
    use std::io::{Read, Write};
    let dir = std::env::temp_dir().join(format!("probe-tracer-flood-{}", std::process::id()));
    fs::create_dir_all(&dir).unwrap();
    let ready = dir.join("ready");
    let addr = "127.0.0.1:19465";
    let mut child = tests::die_with_parent(&mut Command::new(tests::binary()))
        .args(["daemon", "--metrics-addr", addr, "--no-kubernetes", "--groups", "probe"])
        .arg("--ready-file")
        .arg(&ready)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _guard = KillOnDrop(child.id() as i32);
    let deadline = Instant::now() + Duration::from_secs(60);
    while !ready.exists() {
        assert!(Instant::now() < deadline, "not attached within 60 s");
        thread::sleep(Duration::from_millis(100));
    }
    let (code, quiet) = timed_get(addr, "/healthz");
    assert_eq!(code, 200);
    let mut flood = Vec::new();
    for i in 0..500 {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        if i % 2 == 1 {
            s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Slow: ").unwrap();
        }
        flood.push(s);
    }
    let mut worst = Duration::ZERO;
    for _ in 0..20 {
        let (code, took) = timed_get(addr, "/healthz");
        assert_eq!(code, 200, "/healthz under 500 idle connections");
        worst = worst.max(took);
        thread::sleep(Duration::from_millis(50));
    }
    eprintln!("/healthz: {quiet:?} alone, at worst {worst:?} among 500 idle and slow connections");
    assert!(worst < Duration::from_millis(500), "{worst:?}");
    // Past the header timeout (5 s) the server has closed every one.
    thread::sleep(Duration::from_secs(7));
    let mut open = 0;
    for s in &mut flood {
        s.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
        let mut buf = [0u8; 512];
        match s.read(&mut buf) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
            Err(_) => open += 1,
        }
    }
    assert_eq!(open, 0, "connections still open after the header timeout");
    assert_eq!(timed_get(addr, "/healthz").0, 200);
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    assert!(child.wait().unwrap().success());
    fs::remove_dir_all(&dir).unwrap();
}

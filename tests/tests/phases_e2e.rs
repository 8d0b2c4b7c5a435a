//! Probes that connect and then fail (INCIDENTS.md section 6, seed 001):
//! the kernel follows each prober connection past the handshake, and the
//! verdict says which phase failed and on whose side. The prober is
//! tests/prober, built from the kubelet's own probe code paths (Go's
//! net/http with the kubelet's settings), so the kubelet's exact messages
//! come back; its gRPC probe speaks HTTP/2 as grpc-go does. Runs on the
//! bare machine and on every VM kernel.

use serde_json::Value;
use tests::{Machine, Output, Scenario, Tracer, machine};

const POD_IP: &str = "10.200.3.2";
const NODE_IP: &str = "10.200.3.1";
/// The Go prober's GET with the kubelet's headers, in bytes.
const REQUEST_BYTES: u64 = 109;
/// The gRPC probe's bytes before the server's SETTINGS: the HTTP/2 client
/// preface, an empty SETTINGS frame and a WINDOW_UPDATE.
const GRPC_PREFACE_BYTES: u64 = 24 + 9 + 13;

/// Each case and the kubelet's own message for it.
const CASES: &[(&str, &str)] = &[
    ("healthy", "success"),
    ("silent", "context deadline exceeded (Client.Timeout exceeded while awaiting headers)"),
    ("error", "HTTP probe failed with statuscode: 500"),
    ("late", "success"),
    ("reset", "connection reset by peer"),
    ("close", ": EOF"),
    ("loopback", "connect: connection refused"),
    ("tcp", "success"),
    ("grpc", "success"),
    ("grpc-silent", "timeout: failed to connect service \"10.200.3.2:8092\" within"),
];

/// The probes' timeoutSeconds: the kubelet's default, and more under
/// emulation, where the pod's server alone takes a good part of a second.
fn timeout_ms() -> u64 {
    if machine() == Machine::Vm { 5000 } else { 1000 }
}

/// Every case at once, as a kubelet probes its pods: each has a port of
/// its own (the TCP probe shares the healthy one, and sends nothing), and
/// one timeout covers the round.
fn probe_every_case(scenario: &Scenario) {
    let timeout = format!("{}ms", timeout_ms());
    let said: Vec<String> = std::thread::scope(|s| {
        let running: Vec<_> = CASES.iter().map(|(case, _)| s.spawn(|| scenario.trigger(&[case, &timeout]))).collect();
        running.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for ((case, kubelet_says), said) in CASES.iter().zip(said) {
        assert!(said.contains(kubelet_says), "{case}: the prober said {said:?}, not the kubelet's {kubelet_says:?}");
    }
}

fn only_to<'a>(out: &'a Output, kind: &str, dport: u16) -> &'a Value {
    let found: Vec<&Value> = out.kind(kind).into_iter().filter(|v| v["dport"] == dport).collect();
    assert_eq!(found.len(), 1, "expected one {kind} to port {dport}:\n{}", out.dump());
    found[0]
}

#[test]
#[ignore = "e2e: needs root; run by cargo xtask test"]
fn probes_that_connect_and_then_fail_are_diagnosed_by_phase() {
    let scenario = Scenario::up("phases");
    // Probes only (here and below): the exec group's programs add minutes of
    // attach under emulation and nothing to these tests.

    // Every attempt printed.
    let tracer = Tracer::start(&["--groups", "probe"]);
    probe_every_case(&scenario);
    let out = tracer.stop();
    assert_eq!(out.hook_mode("tcp_recvmsg"), "btf_tracepoint", "{}", out.dump());
    assert_phase_verdicts(&out);

    let attempt = |dport: u16| -> Vec<&Value> { out.kind("tcp_attempt").into_iter().filter(|a| a["dport"] == dport).collect() };
    // The healthy HTTP probe and the TCP probe to the same port.
    let healthy = attempt(8080);
    assert_eq!(healthy.len(), 2, "{}", out.dump());
    let http = healthy.iter().find(|a| a["request_bytes"] == REQUEST_BYTES).expect("the HTTP probe's attempt");
    assert_eq!((&http["outcome"], &http["http_status"]), (&"established".into(), &200.into()));
    // Who closes first races (the prober, done reading, or the server).
    assert_eq!(http["response_bytes"], 59);
    let tcp = healthy.iter().find(|a| a["request_bytes"] == 0).expect("the TCP probe's attempt");
    assert_eq!((&tcp["outcome"], &tcp["closed_by"], &tcp["closed_with"]), (&"established".into(), &"prober".into(), &"fin".into()));
    // The late answer: healthy, and its time to first byte is the server's
    // 600 ms delay.
    let late = attempt(8083);
    assert_eq!((&late[0]["outcome"], &late[0]["http_status"]), (&"established".into(), &200.into()));
    let ms = late[0]["response_ms"].as_u64().unwrap();
    assert!((550..timeout_ms()).contains(&ms), "response_ms {ms}: {}", out.dump());
    // The healthy gRPC probe: answered, and HTTP/2 has no status line.
    let grpc = attempt(8091);
    assert_eq!((&grpc[0]["outcome"], &grpc[0]["http_status"]), (&"established".into(), &Value::Null), "{}", out.dump());
    assert!(grpc[0]["request_bytes"].as_u64().unwrap() > GRPC_PREFACE_BYTES, "the call after the preface: {}", grpc[0]);
    assert!(grpc[0]["response_bytes"].as_u64().unwrap() > 0, "{}", grpc[0]);
    assert_eq!(out.only("summary")["lost_events"], 0);

    // As the daemon runs: healthy probes are counted in the kernel and
    // never reach userspace; the failures must still come through.
    let tracer = Tracer::start(&["--groups", "probe", "--verdicts-only"]);
    probe_every_case(&scenario);
    let out = tracer.stop();
    assert!(out.kind("tcp_attempt").is_empty(), "{}", out.dump());
    assert_phase_verdicts(&out);
    let summary = out.only("summary");
    assert_eq!(summary["attempts"]["established"], 4, "the healthy, late, TCP and gRPC probes: {summary}");

    // Where BTF-typed tracepoints are refused: the raw tracepoints read
    // the socket and the segment through helpers, to the same verdicts.
    let tracer = Tracer::start(&["--groups", "probe", "--allow-mode", "raw_tracepoint,tracepoint,inferred"]);
    probe_every_case(&scenario);
    let out = tracer.stop();
    assert_eq!(out.hook_mode("tcp_recvmsg"), "raw_tracepoint", "{}", out.dump());
    assert_eq!(out.hook_mode("tcp_state"), "raw_tracepoint", "{}", out.dump());
    assert_phase_verdicts(&out);
}

/// One verdict per failing case, each with its phase fields, and none for
/// the healthy, late, TCP and gRPC probes.
fn assert_phase_verdicts(out: &Output) {
    assert_eq!(out.verdicts().len(), 6, "{}", out.dump());
    for v in out.verdicts() {
        assert_eq!((&v["comm"], &v["saddr"], &v["daddr"]), (&"kubelet".into(), &NODE_IP.into(), &POD_IP.into()), "{v}");
        assert!(v["sport"].as_u64().unwrap() > 0, "the source port the SYN left with: {v}");
    }

    let silent = only_to(out, "probe_no_response", 8081);
    assert_eq!((&silent["request_bytes"], &silent["request_acked"]), (&REQUEST_BYTES.into(), &true.into()), "{silent}");
    assert_eq!((&silent["response_bytes"], &silent["closed_by"]), (&0.into(), &"prober".into()), "{silent}");
    let elapsed = silent["elapsed_ms"].as_u64().unwrap();
    // The prober's clock starts before its connect: under emulation by
    // a good part of a second.
    assert!((timeout_ms() * 6 / 10..timeout_ms() * 3 / 2).contains(&elapsed), "the prober's timeout: {silent}");
    assert!(silent["connect_ms"].as_u64().unwrap() < timeout_ms() / 2, "{silent}");
    let message = silent["message"].as_str().unwrap();
    assert!(message.contains("reached the pod's socket") && message.contains("not the network"), "{message}");

    // A gRPC server that never sends its SETTINGS: the same phase, with
    // grpc-go's preface as the request.
    let grpc = only_to(out, "probe_no_response", 8092);
    assert_eq!((&grpc["request_bytes"], &grpc["request_acked"]), (&GRPC_PREFACE_BYTES.into(), &true.into()), "{grpc}");
    assert_eq!((&grpc["response_bytes"], &grpc["closed_by"]), (&0.into(), &"prober".into()), "{grpc}");

    let error = only_to(out, "probe_http_error", 8082);
    assert_eq!((&error["http_status"], &error["response_bytes"]), (&500.into(), &98.into()), "{error}");
    assert!(error["response_ms"].as_u64().unwrap() < timeout_ms() / 2, "{error}");

    let reset = only_to(out, "probe_reset", 8084);
    assert_eq!((&reset["closed_by"], &reset["closed_with"], &reset["response_bytes"]), (&"pod".into(), &"rst".into(), &0.into()));
    assert!(reset["after_ms"].as_u64().is_some(), "{reset}");

    let closed = only_to(out, "probe_closed", 8085);
    assert_eq!((&closed["closed_by"], &closed["closed_with"]), (&"pod".into(), &"fin".into()), "{closed}");

    let refused = only_to(out, "probe_refused", 8086);
    let listeners = refused["listeners"].as_array().unwrap();
    assert!(listeners.contains(&"127.0.0.1:8086".into()), "{refused}");
    let message = refused["message"].as_str().unwrap();
    assert!(message.contains("listens on 127.0.0.1:8086 only") && message.contains("bind 0.0.0.0"), "{message}");
}

/// A tenant can name a process `kubelet`: in a container's network or pid
/// namespace it is no prober, however its connections fail (issue: forged
/// verdicts and Events on other pods). The host's prober beside it is.
#[test]
#[ignore = "e2e: needs root; run by cargo xtask test"]
fn a_process_named_kubelet_outside_the_hosts_namespaces_is_not_a_prober() {
    let scenario = Scenario::up("phases");
    let prober = tests::root().join("target/kube-prober/kubelet");
    // Every group: the prober's own pid 1 exiting is no container's either.
    let tracer = Tracer::start(&[]);
    let run = |cmd: &mut std::process::Command| {
        let out = cmd.output().expect("runs");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    // In the pod's network namespace, to the pod's own loopback listener.
    let inside = run(std::process::Command::new("ip")
        .args(["netns", "exec", "ptphase"])
        .arg(&prober)
        .args(["http", "http://127.0.0.1:8086/healthz", "5s"]));
    assert_eq!(inside, "success");
    // In a pid namespace of its own on the host's network: a 500 that
    // would be a verdict were it trusted.
    let own_pidns = run(std::process::Command::new("unshare")
        .args(["--pid", "--fork", "--mount-proc"])
        .arg(&prober)
        .args(["http", &format!("http://{POD_IP}:8082/healthz"), "5s"]));
    assert_eq!(own_pidns, "HTTP probe failed with statuscode: 500");
    assert_eq!(scenario.trigger(&["healthy", "5s"]), "success");
    let out = tracer.stop();
    assert!(out.verdicts().is_empty(), "{}", out.dump());
    let attempts = out.kind("tcp_attempt");
    assert_eq!(attempts.len(), 1, "only the host's prober: {}", out.dump());
    assert_eq!(attempts[0]["dport"], 8080);
}

/// Whether this kernel's kfree_skb carries a reason (5.17+).
fn drop_reasons_known() -> bool {
    std::fs::read_to_string("/sys/kernel/tracing/events/skb/kfree_skb/format")
        .or_else(|_| std::fs::read_to_string("/sys/kernel/debug/tracing/events/skb/kfree_skb/format"))
        .is_ok_and(|f| f.contains(" reason;"))
}

/// How many connections wait in the accept queue of the pod's listener
/// on `port` (its `rx_queue` in the pod's /proc/net/tcp).
fn waiting_on(port: u16) -> Option<u32> {
    let out = std::process::Command::new("ip").args(["netns", "exec", "ptphase", "cat", "/proc/net/tcp"]).output().ok()?;
    let local = format!("0203C80A:{port:04X}");
    String::from_utf8_lossy(&out.stdout).lines().find_map(|l| {
        let cols: Vec<&str> = l.split_whitespace().collect();
        (cols.get(1) == Some(&local.as_str()) && cols.get(3) == Some(&"0A"))
            .then(|| u32::from_str_radix(cols.get(4)?.split_once(':')?.1, 16).ok())
            .flatten()
    })
}

/// Probes whose packets die on the way, or that a full listen queue turns
/// away: the verdict names where (the function, the namespace, the
/// interface) and why (the kernel's reason, 5.17+, or the pod's own
/// counters), with the fix; a healthy probe beside them has none. The
/// probes run side by side (one timeout in all) but for the second to the
/// never-accepting listener, which must find the first in its queue.
#[test]
#[ignore = "e2e: needs root; run by cargo xtask test"]
fn probes_whose_packets_are_dropped_say_where_and_why() {
    let scenario = Scenario::up("phases");
    let tracer = Tracer::start(&["--groups", "probe"]);
    let timeout = format!("{}ms", timeout_ms());
    let said: Vec<(&str, String)> = std::thread::scope(|s| {
        let probe = |case: &'static str| {
            let (scenario, timeout) = (&scenario, &timeout);
            s.spawn(move || (case, scenario.trigger(&[case, timeout])))
        };
        let mut running: Vec<_> = ["fw-pod", "fw-host", "rpfilter", "backlog"].into_iter().map(probe).collect();
        // The connection setup left waiting, and the first probe's (four
        // probers starting at once under emulation take seconds; once
        // queued, the first stays queued past its timeout).
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while waiting_on(8090) != Some(2) {
            assert!(std::time::Instant::now() < deadline, "the first backlog probe never reached the queue: {:?}", waiting_on(8090));
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        running.push(probe("backlog"));
        running.push(probe("healthy"));
        running.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (case, said) in &said {
        let expected = if *case == "healthy" { said == "success" } else { said.contains("Client.Timeout exceeded") || said.contains("i/o timeout") };
        assert!(expected, "{case}: {said}");
    }
    let out = tracer.stop();
    assert_eq!(out.hook_mode("packet_drop"), "btf_tracepoint", "{}", out.dump());
    assert_eq!(out.kind("probe_timeout").len(), 4, "{}", out.dump());
    assert_eq!(out.verdicts().len(), 5, "the healthy probe has no verdict: {}", out.dump());
    let reasons = drop_reasons_known();

    let first_drop = |port: u16| -> Value {
        let v = only_to(&out, "probe_timeout", port);
        let drops = v["drops"].as_array().unwrap_or_else(|| panic!("no drops: {v}"));
        assert!(!drops.is_empty(), "no drops on port {port}: {v}");
        assert!(v["sport"].as_u64().unwrap() > 0, "{v}");
        drops[0].clone()
    };
    let message = |kind: &str, port: u16| only_to(&out, kind, port)["message"].as_str().unwrap().to_string();
    for (port, netns) in [(8087, "pod"), (8088, "host")] {
        let d = first_drop(port);
        assert_eq!((&d["direction"], &d["netns"]), (&"to_pod".into(), &netns.into()), "{port}: {d}");
        // Netfilter's drop site (nf_hook_slow, or nft_do_chain where
        // nftables frees it): named, not an address.
        assert!(d["location"].as_str().unwrap().starts_with("nf"), "{port}: {d}");
        assert_eq!(d["reason"], if reasons { "NETFILTER_DROP".into() } else { Value::Null }, "{port}: {d}");
        // The SYN and its retransmits.
        assert!(d["count"].as_u64().unwrap() >= 1, "{d}");
        let message = message("probe_timeout", port);
        assert!(message.contains("the SYN was dropped") && message.contains("by netfilter") == reasons, "{message}");
        assert!(message.contains(if netns == "pod" { "the pod's network namespace" } else { "the node's network namespace" }), "{message}");
    }

    // Strict rp_filter on the interface the pod's SYN-ACK comes back by:
    // dropped where the node routes its input, with the interface's fix
    // (5.10: the place alone, and the interface's mode).
    let d = first_drop(8089);
    assert_eq!((&d["direction"], &d["netns"], &d["interface"]), (&"from_pod".into(), &"host".into(), &"veth-ptrp".into()), "{d}");
    assert_eq!(d["reason"], if reasons { "IP_RPFILTER".into() } else { Value::Null }, "{d}");
    assert!(d["location"].as_str().unwrap().starts_with("ip_"), "input routing frees it: {d}");
    let m = message("probe_timeout", 8089);
    assert!(m.contains("the pod's SYN-ACK was dropped") && m.contains("by reverse-path filtering"), "{m}");
    assert!(m.contains("rp_filter is 1 (strict) on veth-ptrp and the route back to the pod") && m.contains("sysctl -w net.ipv4.conf.veth-ptrp.rp_filter=2"), "{m}");

    // The listener that never accepts: the first probe connects into its
    // queue and is never accepted; the next finds the queue full, and the
    // kernel consumes its SYN (no drop reported on any kernel tried), so
    // the pod's counters tell.
    let first = only_to(&out, "probe_no_response", 8090);
    assert_eq!((&first["request_acked"], &first["listen_queue"]["probe_waiting"]), (&true.into(), &true.into()), "{first}");
    let m = first["message"].as_str().unwrap();
    assert!(m.contains("the application never accepted the connection") && m.contains("10.200.3.2:8090 (2 waiting in all)"), "{m}");
    let second = only_to(&out, "probe_timeout", 8090);
    assert_eq!(second["drops"], serde_json::json!([]), "{second}");
    let queue = &second["listen_queue"];
    assert_eq!((&queue["listener"], &queue["waiting"]), (&"10.200.3.2:8090".into(), &2.into()), "{second}");
    assert!(queue["listen_overflows"].as_u64().unwrap() >= 1, "{second}");
    let m = second["message"].as_str().unwrap();
    assert!(m.contains("has a full accept queue") && m.contains("TcpExtListenOverflows") && m.contains("net.core.somaxconn"), "{m}");
}

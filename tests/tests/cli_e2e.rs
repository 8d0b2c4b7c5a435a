//! What a person gets when the tracer cannot run: one sentence, non-zero exit.

use std::{
    process::Command,
    time::{Duration, Instant},
};

#[test]
#[ignore = "e2e: needs root (to drop privileges); run by cargo xtask test"]
fn bare_only_unprivileged_run_says_what_is_wrong_in_one_line() {
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
fn bare_only_bad_flags_are_rejected_before_anything_loads() {
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
    // A program the verifier rejects (EACCES with a log) is a bug on any
    // kernel the suite runs: the hook silently degrades to its fallback (as
    // the raw state program did on 6.1, over the 512-byte stack). A mode
    // the kernel lacks fails otherwise (EPERM, ENOENT, no BTF type).
    for h in hooks {
        for t in h["tried"].as_array().into_iter().flatten() {
            let error = t["error"].as_str().unwrap_or("");
            assert!(!error.contains("(os error 13)"), "the verifier rejected {} as {}: {error}", h["hook"], t["mode"]);
        }
    }
    if tests::machine() == tests::Machine::Bare {
        // This kernel refuses fentry and has no kprobes: the report says so.
        let connect = hooks.iter().find(|h| h["hook"] == "tcp_connect").unwrap();
        assert_eq!(connect["mode"], "btf_tracepoint");
        let tried: Vec<&str> = connect["tried"].as_array().unwrap().iter().map(|t| t["mode"].as_str().unwrap()).collect();
        assert_eq!(tried, ["fentry", "kprobe"]);
    }
}

/// `check`'s documented exit statuses (docs/cli.md): 3 when it cannot trace,
/// with the report still printed and one sentence on stderr.
#[test]
#[ignore = "e2e: needs root (to drop privileges); run by cargo xtask test"]
fn bare_only_check_exits_3_when_it_cannot_trace() {
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all"])
        .arg(tests::binary())
        .args(["check", "--format", "json"])
        .output()
        .expect("setpriv (util-linux)");
    assert_eq!(out.status.code(), Some(3), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["exit_status"], 3);
    assert!(v["cannot_trace"].as_str().unwrap().contains("needs root or the capabilities"), "{v}");
    assert!(v["audit"].as_array().is_some_and(|a| !a.is_empty()), "the audit is printed anyway: {v}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
}

/// 4 when tracing works but an audit check fails: a NodePort range inside
/// the ephemeral port range (32768-60999 by default) fails `ephemeral_ports`.
#[test]
#[ignore = "e2e: needs root; run by cargo xtask test"]
fn check_exits_4_when_an_audit_check_fails() {
    let range = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").unwrap();
    let low: u16 = range.split_whitespace().next().unwrap().parse().unwrap();
    let nodeports = format!("{}-{}", low + 100, low + 200);
    let out = Command::new(tests::binary()).args(["check", "--format", "json", "--nodeport-range", &nodeports]).output().unwrap();
    assert_eq!(out.status.code(), Some(4), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["exit_status"], 4);
    let ephemeral = v["audit"].as_array().unwrap().iter().find(|f| f["check"] == "ephemeral_ports").unwrap();
    assert_eq!(ephemeral["status"], "fail", "{ephemeral}");
}

/// The text says once, in words, why each mechanism is unavailable; the
/// loader's raw errors are for `-v` and JSON.
#[test]
#[ignore = "e2e: needs root; run by cargo xtask test"]
fn check_text_explains_each_refused_mechanism_once() {
    let text = |extra: &[&str]| {
        let out = Command::new(tests::binary()).args(["check", "--format", "text"]).args(extra).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    let plain = text(&[]);
    assert!(!plain.contains("BPF_PROG_LOAD") && !plain.contains("os error"), "raw loader errors in the text:\n{plain}");
    let json: serde_json::Value = serde_json::from_slice(
        &Command::new(tests::binary()).args(["check", "--format", "json"]).output().unwrap().stdout,
    )
    .unwrap();
    for u in json["unavailable"].as_array().unwrap() {
        let line = format!("\n  {:<13} {}", u["mechanism"].as_str().unwrap(), u["reason"].as_str().unwrap());
        assert_eq!(plain.matches(&line).count(), 1, "{line:?} once in:\n{plain}");
        assert!(!u["errors"].as_array().unwrap().is_empty(), "{u}");
    }
    if tests::machine() == tests::Machine::Bare {
        // Locked down, BPF LSM, no kprobes, no ip_vs (../shared/TOOLCHAIN.md).
        let causes: Vec<&str> = json["unavailable"].as_array().unwrap().iter().map(|u| u["cause"].as_str().unwrap()).collect();
        assert_eq!(causes, ["tracing_programs_refused", "no_kprobe_pmu", "ip_vs_not_loaded"], "{plain}");
        assert_eq!(plain.matches("EPERM").count(), 1, "{plain}");
        assert!(plain.contains("/sys/bus/event_source/devices/kprobe is missing"), "{plain}");
        assert!(text(&["-v"]).contains("BPF_PROG_LOAD"), "-v keeps the raw errors");
    }
}

/// Whoever waits on `--ready-file` acts the moment it appears: a file an
/// earlier run left (killed, or a PID reused under /tmp) must not pass for
/// this run's, and this run's must be gone once it stops.
#[test]
#[ignore = "e2e: needs root; run by cargo xtask test"]
fn one_vm_the_ready_file_exists_only_while_attached() {
    let dir = std::env::temp_dir().join(format!("probe-tracer-ready-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let ready = dir.join("ready");
    std::fs::write(&ready, "").unwrap();
    let mut child = Command::new(tests::binary())
        .args(["run", "--format", "json", "--groups", "probe", "--duration", "1", "--ready-file"])
        .arg(&ready)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Loading takes hundreds of milliseconds: polling every millisecond
    // sees the stale file go, then this run's appear.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seen_absent = false;
    while !(seen_absent && ready.exists()) {
        seen_absent |= !ready.exists();
        assert!(child.try_wait().unwrap().is_none(), "exited before attaching (stale file seen gone: {seen_absent})");
        assert!(Instant::now() < deadline, "the stale ready file was never removed, or no new one came");
        std::thread::sleep(Duration::from_millis(1));
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    assert!(!ready.exists(), "the ready file outlived the run");
    assert!(String::from_utf8_lossy(&out.stdout).contains("\"kind\":\"summary\""));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The `tracer_started` record of a short session with these arguments.
fn started_record(args: &[&str]) -> serde_json::Value {
    let out = Command::new(tests::binary()).args(args).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["kind"] == "tracer_started")
        .expect("a tracer_started record")
}

#[test]
#[ignore = "e2e: needs root; run by cargo xtask test"]
fn the_daemon_never_falls_back_to_syscall_tracepoints_unless_asked() {
    let daemon = ["daemon", "--metrics-addr", "127.0.0.1:0", "--groups", "exec", "--duration", "0.5"];
    let started = started_record(&daemon);
    let clone = started["hooks"].as_array().unwrap().iter().find(|h| h["hook"] == "clone_failed").unwrap();
    assert_ne!(clone["mode"], "tracepoint", "{clone}");
    let with = started_record(&[&daemon[..], &["--syscall-tracepoints", "on"]].concat());
    let clone_with = with["hooks"].as_array().unwrap().iter().find(|h| h["hook"] == "clone_failed").unwrap();
    if tests::machine() == tests::Machine::Bare {
        // No fexit here: off leaves the hook out and says so, on takes the
        // tracepoint and notes its cost.
        assert!(clone["mode"].is_null(), "{clone}");
        assert!(started["notes"][0].as_str().unwrap().contains("--syscall-tracepoints on"), "{started}");
        assert_eq!(clone_with["mode"], "tracepoint", "{clone_with}");
        assert!(with["notes"][0].as_str().unwrap().contains("use syscall tracepoints"), "{with}");
    } else {
        // fexit: the switch changes nothing.
        assert_eq!(clone["mode"], "fexit", "{clone}");
        assert_eq!(clone_with["mode"], "fexit", "{clone_with}");
        assert_eq!(started["notes"], serde_json::json!([]), "{started}");
    }
}

/// Runs a command, panicking with its stderr when it fails.
fn sh(args: &[&str]) -> String {
    let out = Command::new(args[0]).args(&args[1..]).output().unwrap_or_else(|e| panic!("{args:?}: {e}"));
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

struct Netns(&'static str);

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", self.0]).status();
    }
}

/// The audit findings, after checking the exit status agrees with them
/// (4 when a check failed, 0 otherwise).
fn audit_in(ns: &str) -> Vec<serde_json::Value> {
    let out = Command::new("ip")
        .args(["netns", "exec", ns])
        .arg(tests::binary())
        .args(["check", "--format", "json"])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let audit = v["audit"].as_array().unwrap().clone();
    let failed = audit.iter().any(|f| f["status"] == "fail");
    assert_eq!(out.status.code(), Some(if failed { 4 } else { 0 }), "{}", String::from_utf8_lossy(&out.stderr));
    audit
}

fn finding<'a>(audit: &'a [serde_json::Value], check: &str) -> &'a serde_json::Value {
    audit.iter().find(|f| f["check"] == check).unwrap_or_else(|| panic!("no {check} in {audit:?}"))
}

/// The node audit reads its network namespace's port sysctls (and IPVS
/// table, in the VM), conntrack table and rp_filter modes: a widened
/// ephemeral range fails and strict rp_filter warns; the fixes pass.
#[test]
#[ignore = "e2e: needs root; run by cargo xtask test"]
fn check_audit_flags_nodeports_in_the_ephemeral_range_and_passes_with_the_fix() {
    let ns = Netns("pt-audit");
    let _ = Command::new("ip").args(["netns", "del", ns.0]).stderr(std::process::Stdio::null()).status();
    sh(&["ip", "netns", "add", ns.0]);
    let in_ns = |cmd: &[&str]| sh(&[&["ip", "netns", "exec", ns.0], cmd].concat());
    in_ns(&["sysctl", "-qw", "net.ipv4.ip_local_port_range=10000 65000"]);
    let vm = tests::machine() == tests::Machine::Vm;
    if vm {
        sh(&["modprobe", "ip_vs"]);
        in_ns(&["ipvsadm", "-A", "-t", "10.9.9.9:31055", "-s", "rr"]);
    }
    // Strict reverse-path filtering on an interface that is up.
    // One command: each `ip netns exec` costs a good part of a second under emulation.
    in_ns(&[
        "sh",
        "-c",
        "ip link add pta0 type veth peer name pta1 && ip link set pta0 up && ip link set pta1 up && \
         sysctl -qw net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.pta0.rp_filter=1 net.ipv4.conf.pta1.rp_filter=2",
    ]);

    let audit = audit_in(ns.0);
    let ports = finding(&audit, "ephemeral_ports");
    assert_eq!(ports["status"], "fail", "{ports}");
    assert!(ports["message"].as_str().unwrap().contains("10000-65000"), "{ports}");
    assert!(ports["fix"].as_str().unwrap().contains("net.ipv4.ip_local_reserved_ports=30000-32767"), "{ports}");
    let ipvs = finding(&audit, "ipvs_nodeports");
    if vm {
        assert_eq!(ipvs["status"], "fail", "{ipvs}");
        assert!(ipvs["message"].as_str().unwrap().contains("10.9.9.9:31055"), "{ipvs}");
    } else {
        assert_eq!(ipvs["status"], "ok", "no IPVS on this kernel: {ipvs}");
    }
    for check in ["runtime_pids", "threads"] {
        assert!(["ok", "warn", "fail", "unknown"].contains(&finding(&audit, check)["status"].as_str().unwrap()));
    }
    // This namespace's connection tracking table (the module is shared).
    let conntrack = finding(&audit, "conntrack");
    assert_eq!(conntrack["status"], "ok", "{conntrack}");
    let loaded = std::path::Path::new("/proc/sys/net/netfilter/nf_conntrack_count").exists();
    let text = conntrack["message"].as_str().unwrap();
    assert!(if loaded { text.starts_with("0 connection tracking entries in use of net.netfilter.nf_conntrack_max") } else { text.contains("not loaded") }, "{conntrack}");
    let rp = finding(&audit, "rp_filter");
    assert_eq!(rp["status"], "warn", "{rp}");
    assert!(rp["message"].as_str().unwrap().contains("strict (rp_filter 1, the larger of net.ipv4.conf.all and the interface's own) on pta0:"), "{rp}");
    assert_eq!(rp["fix"], "sysctl -w net.ipv4.conf.pta0.rp_filter=2 (loose; persist it in /etc/sysctl.d)", "{rp}");

    in_ns(&["sysctl", "-qw", "net.ipv4.ip_local_reserved_ports=30000-32767", "net.ipv4.conf.pta0.rp_filter=2"]);
    let audit = audit_in(ns.0);
    assert_eq!(finding(&audit, "ephemeral_ports")["status"], "ok");
    assert_eq!(finding(&audit, "ipvs_nodeports")["status"], "ok");
    let rp = finding(&audit, "rp_filter");
    assert_eq!(rp["status"], "ok", "{rp}");
    assert!(rp["message"].as_str().unwrap().contains("loose or off on the 2 interfaces that are up"), "{rp}");
}

/// `probe-tracer completions SHELL` prints a script that shell accepts and
/// that completes the subcommands and `check`'s flags.
#[test]
#[ignore = "e2e: run by cargo xtask test"]
fn bare_only_completions_are_valid_scripts_for_bash_zsh_and_fish() {
    for (shell, syntax_check) in [("bash", &["bash", "-n"][..]), ("zsh", &["zsh", "-n"][..]), ("fish", &["fish", "--no-execute"][..])] {
        let out = Command::new(tests::binary()).args(["completions", shell]).output().unwrap();
        assert!(out.status.success(), "{shell}: {}", String::from_utf8_lossy(&out.stderr));
        let script = String::from_utf8(out.stdout).unwrap();
        // fish spells long flags `-l NAME`.
        for word in ["check", "run", "daemon", "replay", "completions", "nodeport-range", "verbose"] {
            assert!(script.contains(word), "{shell} completion lacks {word}");
        }
        // Only the shells installed here are run; bash always is.
        let file = std::env::temp_dir().join(format!("probe-tracer-completion-{}.{shell}", std::process::id()));
        std::fs::write(&file, &script).unwrap();
        match Command::new(syntax_check[0]).args(&syntax_check[1..]).arg(&file).output() {
            Ok(o) => assert!(o.status.success(), "{shell} rejects its completion: {}", String::from_utf8_lossy(&o.stderr)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && shell != "bash" => eprintln!("{shell} not installed: syntax not checked"),
            Err(e) => panic!("{shell}: {e}"),
        }
        if shell == "bash" {
            // Sourcing it registers the completion function.
            let o = Command::new("bash").arg("-c").arg(format!("source {} && complete -p probe-tracer", file.display())).output().unwrap();
            assert!(o.status.success() && String::from_utf8_lossy(&o.stdout).contains("probe-tracer"), "{}", String::from_utf8_lossy(&o.stderr));
        }
        std::fs::remove_file(&file).unwrap();
    }
    // An unknown shell is a usage error.
    let out = Command::new(tests::binary()).args(["completions", "tcsh"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}

/// Out-of-range numbers are usage errors in one sentence, before anything
/// loads: a ring buffer past 1 GiB (rounding past 2^31 once wrapped to
/// 4 KiB), negative or NaN durations.
#[test]
#[ignore = "e2e: run by cargo xtask test"]
fn bare_only_edge_values_are_refused_in_one_line() {
    for (args, says) in [
        (&["run", "--ringbuf-size", "3000000000"][..], "1 GiB"),
        (&["run", "--ringbuf-size", "99999999999999"][..], "1 GiB"),
        (&["run", "--ringbuf-size", "12"][..], "4096"),
        (&["run", "--duration=-1"][..], "seconds >= 0"),
        (&["run", "--duration", "NaN"][..], "seconds >= 0"),
    ] {
        let out = Command::new(tests::binary()).args(args).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
}

/// `--duration inf` and `1e20` run until a signal, as no --duration does
/// (they panicked after attaching).
#[test]
#[ignore = "e2e: needs root; run by cargo xtask test"]
fn bare_only_unbounded_durations_run_until_a_signal() {
    for d in ["inf", "1e20"] {
        let dir = std::env::temp_dir().join(format!("probe-tracer-inf-{}-{d}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ready = dir.join("ready");
        let child = tests::die_with_parent(&mut Command::new(tests::binary()))
            .args(["run", "--groups", "exec", "--no-kubernetes", "--format", "json", "--duration", d])
            .arg("--ready-file")
            .arg(&ready)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        while !ready.exists() {
            assert!(Instant::now() < deadline, "--duration {d}: not attached within 60 s");
            std::thread::sleep(Duration::from_millis(50));
        }
        std::thread::sleep(Duration::from_millis(1500));
        unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "--duration {d}: {} {stderr}", out.status);
        assert!(String::from_utf8_lossy(&out.stdout).contains(r#""kind":"summary""#), "--duration {d}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

/// The write end of a pipe whose read end is closed: every write fails
/// with EPIPE (a log collector that went away, `| head`).
fn broken_pipe() -> std::process::Stdio {
    use std::os::fd::FromRawFd;
    let mut fds = [0; 2];
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    unsafe { libc::close(fds[0]) };
    std::process::Stdio::from(unsafe { std::os::fd::OwnedFd::from_raw_fd(fds[1]) })
}

/// A stdout or stderr that is closed or goes nowhere (EPIPE) ends the run
/// with a status, never a panic (101): the error is said on stderr when
/// stderr still works, and lost when it does not.
#[test]
#[ignore = "e2e: run by cargo xtask test"]
fn bare_only_closed_stdout_and_stderr_do_not_panic() {
    use std::process::Stdio;
    let dir = std::env::temp_dir().join(format!("probe-tracer-closed-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let empty = dir.join("empty.jsonl");
    std::fs::write(&empty, "").unwrap();
    let empty = empty.to_str().unwrap();
    let run = |args: &[&str], stdout: Stdio, stderr: Stdio| {
        Command::new(tests::binary()).args(args).stdout(stdout).stderr(stderr).status().unwrap().code()
    };
    // Both broken: writing the summary fails, and so does saying so.
    assert_eq!(run(&["replay", empty], broken_pipe(), broken_pipe()), Some(1));
    assert_eq!(run(&["completions", "bash"], broken_pipe(), broken_pipe()), Some(1));
    assert_eq!(run(&["replay", "/nonexistent"], Stdio::null(), broken_pipe()), Some(1));
    // A broken stdout with a working stderr: one sentence there.
    let out = Command::new(tests::binary()).args(["completions", "bash"]).stdout(broken_pipe()).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.starts_with("probe-tracer: ") && stderr.trim().lines().count() == 1, "{stderr}");
    // Closed outright (EBADF): the standard library drops what is written.
    let bin = tests::binary();
    let script = format!("exec {} replay {empty} >&- 2>&-", bin.display());
    assert_eq!(Command::new("sh").args(["-c", &script]).status().unwrap().code(), Some(0));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A recording carries its boot's clock: a replay on another boot (or
/// machine) prints the times its events happened, not ones shifted by
/// the replaying boot's uptime.
#[test]
#[ignore = "e2e: needs root; run by cargo xtask test"]
fn bare_only_a_recording_replays_at_the_times_it_was_made() {
    let dir = std::env::temp_dir().join(format!("probe-tracer-replay-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let recording = dir.join("recording.jsonl");
    let closed_port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let tracer = tests::Tracer::start(&["--groups", "probe", "--record", recording.to_str().unwrap()]);
    std::thread::spawn(move || {
        tests::set_thread_name("kubelet");
        assert!(std::net::TcpStream::connect(("127.0.0.1", closed_port)).is_err());
    })
    .join()
    .unwrap();
    let live = tracer.stop().only("probe_refused")["ts"].clone();
    let replayed_ts = |path: &std::path::Path| -> serde_json::Value {
        let out = Command::new(tests::binary()).args(["replay", "--format", "json"]).arg(path).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let line = text.lines().find(|l| l.contains("\"kind\":\"probe_refused\"")).unwrap_or_else(|| panic!("no verdict: {text}"));
        serde_json::from_str::<serde_json::Value>(line).unwrap()["ts"].clone()
    };
    assert_eq!(replayed_ts(&recording), live);
    // The same events recorded on a boot whose clock ran a day ahead.
    let text = std::fs::read_to_string(&recording).unwrap();
    let (first, rest) = text.split_once('\n').unwrap();
    let mut header: serde_json::Value = serde_json::from_str(first).unwrap();
    let offset = header["recording"]["realtime_minus_monotonic_ns"].as_i64().expect("the recording's clock");
    header["recording"]["realtime_minus_monotonic_ns"] = (offset + 86_400_000_000_000).into();
    let shifted = dir.join("shifted.jsonl");
    std::fs::write(&shifted, format!("{header}\n{rest}")).unwrap();
    let day_later = |ts: &serde_json::Value| {
        let t = humantime::parse_rfc3339(ts.as_str().unwrap()).unwrap();
        humantime::format_rfc3339_nanos(t + std::time::Duration::from_secs(86_400)).to_string()
    };
    assert_eq!(replayed_ts(&shifted), serde_json::Value::from(day_later(&live)));
    std::fs::remove_dir_all(&dir).unwrap();
}

//! Cost of the exec-probe hooks for everything that is not the container
//! runtime (issue 4): a fork+exec+wait storm of `/bin/true`, interleaved
//! round by round under no tracer (baseline), `probe-tracer run --groups
//! exec`, and bpftrace doing the same filtering (track the process tree of
//! `runc` through exec, fork and exit tracepoints) as a peer.
//!
//! The storm's processes are never runc's, so the kernel filter should make
//! them nearly free: the report gives each tracer's ratio to the baseline and
//! how many events probe-tracer received (it should be none).
//!
//! Usage: forkstorm-bench [--seconds S] [--rounds R] [--tracer BIN] [--json FILE]

use std::{
    env, fs,
    path::PathBuf,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::json;
use tests::bench::{self, Condition, median};

const PEER_SCRIPT: &str = r#"
tracepoint:sched:sched_process_exec /comm == "runc" || @tree[pid]/ { @tree[pid] = 1; }
tracepoint:sched:sched_process_fork /@tree[pid]/ { @tree[args->child_pid] = 1; }
tracepoint:sched:sched_process_exit /@tree[pid]/ { delete(@tree[pid]); }
tracepoint:syscalls:sys_exit_clone3 /args->ret < 0 && @tree[pid]/ { @failed = count(); }
"#;

fn storm(seconds: f64) -> u64 {
    let end = Instant::now() + Duration::from_secs_f64(seconds);
    let mut n = 0;
    while Instant::now() < end {
        let status = Command::new("/bin/true").stdin(Stdio::null()).status().expect("spawn /bin/true");
        assert!(status.success());
        n += 1;
    }
    n
}

fn main() {
    let mut seconds = 3.0;
    let mut rounds = 3;
    let mut json_out: Option<PathBuf> = None;
    let mut it = env::args().skip(1);
    while let Some(a) = it.next() {
        let mut val = || it.next().unwrap_or_else(|| panic!("{a} needs a value"));
        match a.as_str() {
            "--seconds" => seconds = val().parse().expect("--seconds"),
            "--rounds" => rounds = val().parse().expect("--rounds"),
            // The e2e helper reads the binary from the environment.
            "--tracer" => unsafe { env::set_var("PROBE_TRACER_BIN", val()) },
            "--json" => json_out = Some(PathBuf::from(val())),
            other => panic!("unknown argument {other}"),
        }
    }

    let mut rates = vec![Vec::new(); Condition::ALL.len()];
    let mut events = Vec::new();
    for round in 0..rounds {
        for (ci, condition) in Condition::ALL.into_iter().enumerate() {
            let tracer = (condition == Condition::ProbeTracer).then(|| tests::Tracer::start(&["--groups", "exec"]));
            let peer = (condition == Condition::Bpftrace).then(|| bench::start_bpftrace(PEER_SCRIPT));
            let n = storm(seconds);
            let rate = n as f64 / seconds;
            rates[ci].push(rate);
            eprintln!("round {round} {:<13} {rate:>8.0} fork+exec/s", condition.name());
            if let Some(t) = tracer {
                let out = t.stop();
                let s = out.only("summary");
                events.push(json!({ "round": round, "processes": n, "events": s["events"], "lost_events": s["lost_events"] }));
            }
            if let Some(p) = peer {
                bench::stop_bpftrace(p);
            }
        }
    }

    let kernel = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim().to_string();
    let base = median(rates[0].clone());
    let ours = median(rates[1].clone());
    let peer = median(rates[2].clone());
    println!("\nfork+exec storm outside runc, kernel {kernel}, {rounds} rounds x {seconds} s, medians:");
    println!("{:>12} {:>14} {:>8} {:>12} {:>8}", "baseline/s", "probe-tracer/s", "ratio", "bpftrace/s", "ratio");
    println!("{base:>12.0} {ours:>14.0} {:>8.3} {peer:>12.0} {:>8.3}", ours / base, peer / base);
    println!("events probe-tracer received per round: {}", serde_json::Value::Array(events.clone()));
    let report = json!({
        "kernel": kernel, "rounds": rounds, "seconds": seconds,
        "baseline_per_s": base, "probe_tracer_per_s": ours, "probe_tracer_ratio": ours / base,
        "bpftrace_per_s": peer, "bpftrace_ratio": peer / base, "events": events,
    });
    if let Some(path) = json_out {
        fs::write(path, serde_json::to_string_pretty(&report).unwrap()).unwrap();
    }
}

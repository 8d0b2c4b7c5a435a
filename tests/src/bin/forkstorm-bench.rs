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
//!                        [--peer-script FILE] [--tracer-arg ARG]... [--peer-every N]
//!
//! `--peer-script` and `--tracer-arg` are for attributing the cost: give
//! bpftrace a single hook, or probe-tracer fewer hooks. `--peer-every N`
//! runs bpftrace in every N-th round only (it is slow to start), so more
//! probe-tracer windows fit in the same time.

use std::{
    env, fs,
    path::PathBuf,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::json;
use tests::bench::{self, Condition, Windows, median};

const PEER_SCRIPT: &str = r#"
tracepoint:sched:sched_process_exec /comm == "runc" || @tree[pid]/ { @tree[pid] = 1; }
tracepoint:sched:sched_process_fork /@tree[pid]/ { @tree[args->child_pid] = 1; }
tracepoint:sched:sched_process_exit /@tree[pid]/ { delete(@tree[pid]); }
tracepoint:syscalls:sys_exit_clone3 /args->ret < 0 && @tree[pid]/ { @failed = count(); }
"#;

/// Null syscalls (getppid) per second for `seconds`: what every other
/// process on the node pays per syscall while the tracer is attached (a
/// syscall tracepoint sends every syscall through the kernel's slow path).
fn null_syscalls(seconds: f64) -> f64 {
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed().as_secs_f64() < seconds {
        for _ in 0..1000 {
            // SAFETY: getppid has no arguments and cannot fail.
            unsafe { libc::syscall(libc::SYS_getppid) };
        }
        n += 1000;
    }
    n as f64 / start.elapsed().as_secs_f64()
}

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
    let mut seconds = 1.0;
    let mut rounds = 15;
    let mut json_out: Option<PathBuf> = None;
    let mut peer_script = PEER_SCRIPT.to_string();
    let mut tracer_args = vec!["--groups".to_string(), "exec".to_string()];
    let mut peer_every = 1;
    let mut it = env::args().skip(1);
    while let Some(a) = it.next() {
        let mut val = || it.next().unwrap_or_else(|| panic!("{a} needs a value"));
        match a.as_str() {
            "--seconds" => seconds = val().parse().expect("--seconds"),
            "--rounds" => rounds = val().parse().expect("--rounds"),
            // The e2e helper reads the binary from the environment.
            "--tracer" => unsafe { env::set_var("PROBE_TRACER_BIN", val()) },
            "--json" => json_out = Some(PathBuf::from(val())),
            "--peer-script" => peer_script = fs::read_to_string(val()).expect("--peer-script"),
            "--tracer-arg" => tracer_args.push(val()),
            "--peer-every" => peer_every = val().parse().expect("--peer-every"),
            other => panic!("unknown argument {other}"),
        }
    }

    // B T B P B T B P ... B: every tracer window between two baselines.
    let mut windows = Windows::default();
    let mut syscalls = Windows::default();
    let mut events = Vec::new();
    let measure = |condition: Condition, round: usize| {
        let n = bench::on_one_cpu(|| storm(seconds));
        let rate = n as f64 / seconds;
        windows.push(condition, rate);
        let calls = bench::on_one_cpu(|| null_syscalls(0.2));
        syscalls.push(condition, calls);
        eprintln!("round {round} {:<13} {rate:>8.0} fork+exec/s {:>6.0} ns/syscall", condition.name(), 1e9 / calls);
        n
    };
    let start = |condition: Condition| match condition {
        Condition::Baseline => (None, None),
        Condition::ProbeTracer => {
            (Some(tests::Tracer::start(&tracer_args.iter().map(String::as_str).collect::<Vec<_>>())), None)
        }
        Condition::Bpftrace => (None, Some(bench::start_bpftrace(&peer_script))),
    };
    bench::run_paired(rounds, peer_every, measure, start, |(tracer, peer), n, round| {
        if let Some(t) = tracer {
            let out = t.stop();
            let s = out.only("summary");
            events.push(json!({ "round": round, "processes": n, "events": s["events"], "lost_events": s["lost_events"] }));
        }
        if let Some(p) = peer {
            bench::stop_bpftrace(p);
        }
    });

    let kernel = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim().to_string();
    let base = median(windows.rates(Condition::Baseline));
    let ours = windows.summary(Condition::ProbeTracer).expect("probe-tracer windows");
    let peer = windows.summary(Condition::Bpftrace).expect("bpftrace windows");
    println!("\nfork+exec storm outside runc, kernel {kernel}, {rounds} rounds x {seconds} s, storm on one CPU;");
    println!("each tracer window over the mean of the baselines either side of it (median [quartiles]);");
    println!("\"<2 %\": whether the 95 % confidence interval of the median lies above 0.98:");
    println!("{:>12} {:>22} {:>13} {:>9} {:>22}", "baseline/s", "probe-tracer ratio", "95% CI", "<2 %", "bpftrace ratio");
    println!("{base:>12.0} {:>22} {:>13} {:>9} {:>22}", ours, ours.ci95(), ours.loss_below(0.02), peer);
    let base_ns = 1e9 / median(syscalls.rates(Condition::Baseline));
    let ours_sys = syscalls.summary(Condition::ProbeTracer).expect("probe-tracer windows");
    let peer_sys = syscalls.summary(Condition::Bpftrace).expect("bpftrace windows");
    println!(
        "null syscalls (getppid), {base_ns:.0} ns each in the baseline: {:>22} (95% CI {}) {:>22}",
        ours_sys,
        ours_sys.ci95(),
        peer_sys
    );
    println!("events probe-tracer received per round: {}", serde_json::Value::Array(events.clone()));
    let report = json!({
        "kernel": kernel, "rounds": rounds, "seconds": seconds, "baseline_per_s": base,
        "probe_tracer_ratio": ours.median, "probe_tracer": ours,
        "bpftrace_ratio": peer.median, "bpftrace": peer, "events": events,
        "null_syscall_ns": base_ns, "null_syscall_probe_tracer": ours_sys, "null_syscall_bpftrace": peer_sys,
    });
    if let Some(path) = json_out {
        fs::write(path, serde_json::to_string_pretty(&report).unwrap()).unwrap();
    }
}

//! Pieces the benchmarks share: the conditions compared in one run, the
//! bpftrace peer, medians.

use std::{
    io::{BufRead, BufReader},
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

/// What runs alongside the workload in one measurement.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Condition {
    Baseline,
    ProbeTracer,
    Bpftrace,
}

impl Condition {
    pub const ALL: [Condition; 3] = [Condition::Baseline, Condition::ProbeTracer, Condition::Bpftrace];

    pub fn name(self) -> &'static str {
        match self {
            Condition::Baseline => "baseline",
            Condition::ProbeTracer => "probe-tracer",
            Condition::Bpftrace => "bpftrace",
        }
    }
}

/// Starts `bpftrace -e SCRIPT` and returns once its probes are attached.
pub fn start_bpftrace(script: &str) -> Child {
    let mut child = Command::new("bpftrace")
        .args(["-e", script])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("bpftrace (apt-get install bpftrace)");
    // It prints "Attaching N probes..." once attached.
    let mut reader = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        line.clear();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            panic!("bpftrace exited before attaching");
        }
        if line.contains("Attaching") {
            break;
        }
    }
    thread::sleep(Duration::from_millis(500));
    thread::spawn(move || for _ in reader.lines() {});
    child
}

pub fn stop_bpftrace(mut child: Child) {
    // SAFETY: plain kill(2) on our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let _ = child.wait();
}

pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

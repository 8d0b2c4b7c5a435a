//! Throughput benchmark for the probe path (issue 3).
//!
//! A connect/accept loop on loopback, run in one process for a fixed time,
//! under three conditions interleaved round by round so drift hits all
//! alike: no tracer (baseline), `probe-tracer run`, and bpftrace running an
//! equivalent script (a peer). Two workloads: the connecting thread named
//! `kubelet` (a prober: every connection is traced, the worst case) and named
//! `bench-client` (not a prober: the in-kernel filter's cost).
//!
//! Each tracer window runs between two baseline windows and is compared with
//! their mean (this machine's throughput drifts more than the effect).
//! Reports connections per second, each tracer's ratio to the baseline, and
//! whether probe-tracer saw every prober connection with no lost events.
//!
//! Usage: connect-bench [--seconds S] [--rounds R] [--tracer BIN] [--json FILE]
//!                      [--pin] [--control] [--tracer-arg ARG]... [--peer-every N]
//!                      [--peer-tracer BIN] [--cost-rounds N] [--alternations N]
//!                      [--alternation-seconds S] [--clients N] [--together]
//!
//! `--control` runs a process that attaches nothing in probe-tracer's
//! windows (an A/A test): its "ratio" shows the schedule's own bias and how
//! wide the noise alone makes the confidence interval.
//! `--pin` runs the client and server threads on CPU 0 (the tracer's own
//! process stays free to run elsewhere): each hand-off is then a context
//! switch on one CPU rather than a wake-up of an idle virtual CPU, whose
//! latency on these machines varies more than the tracer's cost.
//! `--tracer-arg` adds arguments to `probe-tracer run` (for attributing the
//! cost, e.g. `--tracer-arg --groups --tracer-arg probe`).
//! `--peer-every N` runs bpftrace in every N-th round only (it is slow to
//! start), so more probe-tracer windows fit in the same time.
//! `--cost-rounds N` (default 3) adds N rounds after the throughput
//! rounds with the kernel's BPF statistics on, which measure what each
//! tracer costs per connection directly: the time its programs ran
//! (`run_time_ns`) and its own process's CPU time, over the CPU time a
//! baseline connection takes. Unlike the throughput ratio, this does not
//! drown in the machine's wake-up noise. The statistics' own clock reads
//! are counted in, so it errs high.
//! `--alternations N` (default 150) adds a phase after the throughput rounds
//! in which one probe-tracer process (`run --pause-signals`) is detached and
//! attached again N times, with a window of `--alternation-seconds` (default
//! 0.2) per workload on each side. A toggle takes milliseconds where a
//! restart takes a second or more, so the phase pairs hundreds of windows
//! in a few minutes: the paired ratio's interval narrows to about a
//! percent, which the restart-paired rounds (about +-7 % at 20 rounds)
//! cannot reach. Its baseline has the tracer's process idle beside it (a
//! few hundred microseconds of CPU a second) and its maps allocated; its
//! attached windows have everything a running tracer costs.
//! `--peer-tracer BIN` runs another build of probe-tracer (same arguments)
//! in bpftrace's place, to compare two builds in one run: for instance one
//! whose programs return at once, which separates what attaching costs
//! from what the programs do. With `--together` the cost phase runs the
//! peer build in probe-tracer's windows instead of its own, both attached
//! at once: each program's BPF time is then read under the same load,
//! connection for connection, where windows seconds apart on a shared
//! machine differ by more than the change measured.

use std::{
    env, fs,
    io::{Read, Write},
    net::{TcpListener, TcpStream},
    path::PathBuf,
    process::Child,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use serde_json::{Value, json};
use tests::bench::{self, Condition, Windows, median};

struct Args {
    seconds: f64,
    rounds: usize,
    tracer: PathBuf,
    json: Option<PathBuf>,
    pin: bool,
    control: bool,
    tracer_args: Vec<String>,
    peer_every: usize,
    peer_tracer: Option<PathBuf>,
    clients: usize,
    cost_rounds: usize,
    alternations: usize,
    alternation_seconds: f64,
    together: bool,
}

fn parse_args() -> Args {
    let mut args = Args { seconds: 1.0, rounds: 10, tracer: tests::binary(), json: None, pin: false, control: false, tracer_args: vec!["--verdicts-only".into()], peer_every: 1, peer_tracer: None, clients: 1, cost_rounds: 3, alternations: 150, alternation_seconds: 0.2, together: false };
    let mut it = env::args().skip(1);
    while let Some(a) = it.next() {
        let mut val = || it.next().unwrap_or_else(|| panic!("{a} needs a value"));
        match a.as_str() {
            "--seconds" => args.seconds = val().parse().expect("--seconds"),
            "--rounds" => args.rounds = val().parse().expect("--rounds"),
            "--tracer" => args.tracer = PathBuf::from(val()),
            "--json" => args.json = Some(PathBuf::from(val())),
            "--pin" => args.pin = true,
            "--control" => args.control = true,
            "--tracer-arg" => args.tracer_args.push(val()),
            "--peer-every" => args.peer_every = val().parse().expect("--peer-every"),
            "--clients" => args.clients = val().parse().expect("--clients"),
            "--cost-rounds" => args.cost_rounds = val().parse().expect("--cost-rounds"),
            "--alternations" => args.alternations = val().parse().expect("--alternations"),
            "--alternation-seconds" => args.alternation_seconds = val().parse().expect("--alternation-seconds"),
            "--peer-tracer" => args.peer_tracer = Some(PathBuf::from(val())),
            "--together" => args.together = true,
            other => panic!("unknown argument {other}"),
        }
    }
    args
}

/// Unmeasured connect loop before each window (see `measure` in main).
const WARMUP_SECONDS: f64 = 0.3;

/// Connects and closes as fast as possible for `seconds`; returns the count.
/// The client closes with RST (SO_LINGER 0) so TIME_WAIT does not exhaust
/// the ephemeral ports at tens of thousands of connections.
fn connect_loop(addr: std::net::SocketAddr, comm: &'static str, seconds: f64, pin: bool, clients: usize) -> u64 {
    let threads: Vec<_> = (0..clients.max(1)).map(|_| thread::spawn(move || {
        tests::set_thread_name(comm);
        let work = || {
            let end = Instant::now() + Duration::from_secs_f64(seconds);
            let mut n = 0u64;
            while Instant::now() < end {
                // One byte each way: the loop moves in step with accept(), so
                // the listen backlog never overflows (which would add 1 s SYN
                // retransmits and measure the backlog, not the tracer).
                let mut s = TcpStream::connect(addr).expect("connect");
                s.write_all(b"?").unwrap();
                let mut byte = [0u8; 1];
                s.read_exact(&mut byte).unwrap();
                set_linger_zero(&s);
                drop(s);
                n += 1;
            }
            n
        };
        if pin { bench::on_one_cpu(work) } else { work() }
    })).collect();
    threads.into_iter().map(|t| t.join().unwrap()).sum()
}

fn set_linger_zero(s: &TcpStream) {
    use std::os::fd::AsRawFd;
    let linger = libc::linger { l_onoff: 1, l_linger: 0 };
    // SAFETY: valid socket fd and a correctly sized option value.
    unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            &linger as *const _ as *const libc::c_void,
            size_of::<libc::linger>() as u32,
        )
    };
}

/// One accepting thread per client thread, all on one listener.
fn start_server(pin: bool, threads: usize) -> (std::net::SocketAddr, Arc<AtomicBool>) {
    let first = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = first.local_addr().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    for _ in 0..threads.max(1) {
        let listener = first.try_clone().unwrap();
        let stop2 = stop.clone();
        thread::spawn(move || {
            tests::set_thread_name("bench-server");
            let serve = || {
                for conn in listener.incoming() {
                    if stop2.load(Ordering::Relaxed) {
                        break;
                    }
                    if let Ok(mut c) = conn {
                        let mut byte = [0u8; 1];
                        if c.read_exact(&mut byte).is_ok() {
                            let _ = c.write_all(b"!");
                        }
                    }
                }
            };
            if pin { bench::on_one_cpu(serve) } else { serve() }
        });
    }
    (addr, stop)
}

/// How the tables name a workload.
fn label(comm: &str) -> &'static str {
    if comm == "kubelet" { "prober" } else { "non-prober" }
}

/// A tracer running for one measurement.
enum Running {
    None,
    ProbeTracer(tests::Tracer),
    Bpftrace(Child),
    /// `--peer-tracer`: another probe-tracer build in bpftrace's place.
    PeerTracer(tests::Tracer),
    /// `--control`: a process in probe-tracer's place that attaches nothing.
    Control(Child),
}

impl Running {
    /// The tracer's process, whose programs and threads the cost phase reads.
    fn pid(&self) -> Option<u32> {
        match self {
            Running::None => None,
            Running::ProbeTracer(t) | Running::PeerTracer(t) => Some(t.pid()),
            Running::Bpftrace(c) | Running::Control(c) => Some(c.id()),
        }
    }
}

fn start(condition: Condition, args: &Args) -> Running {
    match condition {
        Condition::Baseline => Running::None,
        Condition::ProbeTracer if args.control => {
            Running::Control(std::process::Command::new("sleep").arg("3600").spawn().expect("sleep"))
        }
        Condition::ProbeTracer => {
            Running::ProbeTracer(tests::Tracer::start(&args.tracer_args.iter().map(String::as_str).collect::<Vec<_>>()))
        }
        Condition::Bpftrace => match &args.peer_tracer {
            Some(bin) => Running::PeerTracer(tests::Tracer::start_binary(
                bin,
                &args.tracer_args.iter().map(String::as_str).collect::<Vec<_>>(),
            )),
            None => Running::Bpftrace(start_bpftrace()),
        },
    }
}

/// bpftrace doing what probe-tracer does on the hot path: filter connects
/// by comm, and look at every TCP state change.
fn start_bpftrace() -> Child {
    let kprobes = std::path::Path::new("/sys/bus/event_source/devices/kprobe").exists();
    let connect = if kprobes {
        r#"kprobe:tcp_connect /comm == "kubelet"/ { @connects = count(); }"#
    } else {
        r#"tracepoint:sock:inet_sock_set_state /args->newstate == 2 && comm == "kubelet"/ { @connects = count(); }"#
    };
    bench::start_bpftrace(&format!(
        "{connect}\ntracepoint:sock:inet_sock_set_state /args->protocol == 6/ {{ @states[args->newstate] = count(); }}"
    ))
}

/// Stops the tracer; for probe-tracer returns (connections it saw, lost events).
fn stop(running: Running) -> Option<(u64, u64)> {
    match running {
        Running::None => None,
        Running::Control(mut child) => {
            let _ = child.kill();
            let _ = child.wait();
            None
        }
        Running::Bpftrace(child) => {
            bench::stop_bpftrace(child);
            None
        }
        Running::PeerTracer(t) => {
            let _ = t.stop();
            None
        }
        Running::ProbeTracer(t) => {
            let out = t.stop();
            let s = out.only("summary");
            let a = &s["attempts"];
            let seen = ["established", "refused", "timeout", "diverted"].iter().map(|k| a[k].as_u64().unwrap_or(0)).sum();
            Some((seen, s["lost_events"].as_u64().unwrap_or(u64::MAX)))
        }
    }
}

/// Unmeasured connect loop after each toggle of the alternation phase.
const ALTERNATION_WARMUP_SECONDS: f64 = 0.05;

/// The alternation phase (see `--alternations`): windows of one tracer
/// process, detached and attached in turn, starting and ending detached.
/// Returns the windows per workload.
fn alternation_phase(args: &Args, addr: std::net::SocketAddr, workloads: &[&'static str]) -> Vec<Windows> {
    let mut windows: Vec<Windows> = workloads.iter().map(|_| Windows::default()).collect();
    let mut tracer_args: Vec<&str> = args.tracer_args.iter().map(String::as_str).collect();
    tracer_args.push("--pause-signals");
    let mut tracer = tests::Tracer::start(&tracer_args);
    thread::sleep(bench::SETTLE);
    let measure = |condition: Condition, windows: &mut Vec<Windows>| {
        connect_loop(addr, "bench-warmup", ALTERNATION_WARMUP_SECONDS, args.pin, args.clients);
        for (wi, &comm) in workloads.iter().enumerate() {
            let n = connect_loop(addr, comm, args.alternation_seconds, args.pin, args.clients);
            windows[wi].push(condition, n as f64 / args.alternation_seconds);
        }
    };
    tracer.pause();
    measure(Condition::Baseline, &mut windows);
    for i in 0..args.alternations {
        tracer.resume();
        measure(Condition::ProbeTracer, &mut windows);
        tracer.pause();
        measure(Condition::Baseline, &mut windows);
        if (i + 1) % 25 == 0 {
            let so_far: Vec<String> = windows.iter().map(|w| format!("{}", w.summary(Condition::ProbeTracer).unwrap())).collect();
            eprintln!("alternation {}/{}: attached/detached {}", i + 1, args.alternations, so_far.join(", "));
        }
    }
    // What it printed (connections caught mid-toggle are misjudged) is not
    // this phase's business: the rounds above account for every connection.
    drop(tracer);
    windows
}

/// One workload window of the cost phase.
#[derive(Clone)]
struct CostSample {
    connections: u64,
    /// The whole machine's busy CPU time in the window.
    busy_ns: f64,
    /// The tracer's programs and process in the window (none for baseline).
    tracer: bench::ProcessCost,
}

impl CostSample {
    fn per_connection(&self, ns: u64) -> f64 {
        ns as f64 / self.connections.max(1) as f64
    }
}

/// Median, smallest and largest.
fn spread(mut v: Vec<f64>) -> (f64, f64, f64) {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    (v[v.len() / 2], v[0], v[v.len() - 1])
}

/// Cost samples by workload, each with the condition it was measured under.
type CostSamples = Vec<Vec<(Condition, CostSample)>>;

/// The cost phase (see `--cost-rounds`): per round a baseline, probe-tracer
/// and the peer, each over both workloads, with BPF statistics on. Returns
/// the samples by workload and condition, and probe-tracer's accounting.
fn cost_phase(args: &Args, addr: std::net::SocketAddr, workloads: &[&'static str]) -> Option<(CostSamples, Vec<Value>)> {
    let _stats = match bench::BpfStats::enable() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("cost phase skipped: cannot turn on BPF statistics ({e})");
            return None;
        }
    };
    let mut samples = vec![Vec::new(); workloads.len()];
    let mut accounting = Vec::new();
    // `--together`: the peer build runs in probe-tracer's windows, both
    // attached to the same hooks, so every connection pays both and each
    // program's time is read under the same load; which one attaches
    // first (and so runs first on each hook) alternates by round.
    let together = args.together && args.peer_tracer.is_some();
    for round in 0..args.cost_rounds {
        for condition in Condition::ALL {
            if together && condition == Condition::Bpftrace {
                continue;
            }
            let peer_first = together && round % 2 == 1;
            let peer_before = if peer_first { Some(start(Condition::Bpftrace, args)) } else { None };
            let running = start(condition, args);
            let peer = match peer_before {
                Some(p) => Some(p),
                None if together && condition == Condition::ProbeTracer => Some(start(Condition::Bpftrace, args)),
                None => None,
            };
            thread::sleep(bench::SETTLE);
            let pids: Vec<(Condition, Option<u32>)> =
                std::iter::once((condition, running.pid())).chain(peer.iter().map(|p| (Condition::Bpftrace, p.pid()))).collect();
            let costs_now = || pids.iter().map(|(_, pid)| pid.map(bench::ProcessCost::of).unwrap_or_default()).collect::<Vec<_>>();
            connect_loop(addr, "bench-warmup", WARMUP_SECONDS, args.pin, args.clients);
            let mut prober_made = 0;
            for (wi, &comm) in workloads.iter().enumerate() {
                let (costs_before, busy_before) = (costs_now(), bench::busy_cpu_seconds());
                let n = connect_loop(addr, comm, args.seconds, args.pin, args.clients);
                let busy_ns = (bench::busy_cpu_seconds() - busy_before) * 1e9;
                for ((c, _), (now, before)) in pids.iter().zip(costs_now().iter().zip(&costs_before)) {
                    let sample = CostSample { connections: n, busy_ns, tracer: now.since(before) };
                    eprintln!(
                        "cost round {round} {:<13} {comm:<13} {:>7.0} ns BPF/conn ({:.1} runs) {:>7.0} ns process CPU/conn {:>6.1} us busy CPU/conn",
                        c.name(),
                        sample.per_connection(sample.tracer.bpf_ns),
                        sample.tracer.bpf_runs as f64 / n.max(1) as f64,
                        sample.per_connection(sample.tracer.cpu_ns),
                        sample.per_connection(busy_ns as u64) / 1e3,
                    );
                    samples[wi].push((*c, sample));
                }
                if comm == "kubelet" {
                    prober_made = n;
                }
            }
            if let Some(p) = peer {
                stop(p);
            }
            if let Some((seen, lost)) = stop(running) {
                accounting.push(json!({ "round": round, "phase": "cost", "prober_connections": prober_made, "seen": seen, "lost_events": lost }));
            }
            thread::sleep(bench::SETTLE);
        }
    }
    Some((samples, accounting))
}

/// Each program that ran, over a condition's windows of one workload:
/// the medians of its ns per connection, runs per connection and ns per
/// run (the attribution that says which hook a change moved).
fn program_breakdown(windows: &[CostSample]) -> Vec<Value> {
    let mut names: Vec<&str> = windows.iter().flat_map(|s| s.tracer.programs.iter().filter(|p| p.runs > 0).map(|p| p.name.as_str())).collect();
    names.sort();
    names.dedup();
    names
        .into_iter()
        .map(|name| {
            let of = |s: &CostSample| {
                s.tracer.programs.iter().filter(|p| p.name == name).fold((0u64, 0u64), |(ns, runs), p| (ns + p.ns, runs + p.runs))
            };
            let ns = median(windows.iter().map(|s| s.per_connection(of(s).0)).collect());
            let runs = median(windows.iter().map(|s| of(s).1 as f64 / s.connections.max(1) as f64).collect());
            let per_run = median(windows.iter().filter(|s| of(s).1 > 0).map(|s| of(s).0 as f64 / of(s).1 as f64).collect());
            json!({ "program": name, "ns_per_conn": ns, "runs_per_conn": runs, "ns_per_run": per_run })
        })
        .collect()
}

/// Prints the cost table and returns it as JSON rows.
/// `--together`: probe-tracer's BPF ns per connection minus the peer
/// build's, window by window. The first program attached to a hook pays
/// more than the second, so the mean over rounds of both orders is the
/// difference, and each order's mean is shown beside it.
fn report_together(workloads: &[&'static str], samples: &[Vec<(Condition, CostSample)>]) -> Vec<Value> {
    println!("\nprobe-tracer minus the peer build, attached together (BPF ns per connection; mean over rounds, and by which attached first):");
    let mut rows = Vec::new();
    for (wi, comm) in workloads.iter().enumerate() {
        let of = |c: Condition| samples[wi].iter().filter(move |(k, _)| *k == c).map(|(_, s)| s.clone()).collect::<Vec<_>>();
        let (ours, peers) = (of(Condition::ProbeTracer), of(Condition::Bpftrace));
        let program_ns = |s: &CostSample, name: &str| s.per_connection(s.tracer.programs.iter().filter(|p| p.name == name).map(|p| p.ns).sum());
        let mean = |v: &[f64]| if v.is_empty() { f64::NAN } else { v.iter().sum::<f64>() / v.len() as f64 };
        let diffs: Vec<f64> = ours.iter().zip(&peers).map(|(a, b)| a.per_connection(a.tracer.bpf_ns) - b.per_connection(b.tracer.bpf_ns)).collect();
        // Round r attached probe-tracer first when r is even.
        let by_order = |first: usize| diffs.iter().skip(first).step_by(2).copied().collect::<Vec<_>>();
        // A balanced mean: as many rounds of each order.
        let n = diffs.len() - diffs.len() % 2;
        let balanced = mean(&diffs[..n]);
        println!(
            "{:<12} {:>+8.1} ns/conn  (probe-tracer first {:>+8.1}, peer first {:>+8.1}; {} rounds)",
            label(comm),
            balanced,
            mean(&by_order(0)),
            mean(&by_order(1)),
            n
        );
        let mut names: Vec<String> = ours.iter().chain(&peers).flat_map(|s| s.tracer.programs.iter().filter(|p| p.runs > 0).map(|p| p.name.clone())).collect();
        names.sort();
        names.dedup();
        let mut programs = Vec::new();
        for name in &names {
            let d: Vec<f64> = ours.iter().zip(&peers).take(n).map(|(a, b)| program_ns(a, name) - program_ns(b, name)).collect();
            let m = mean(&d);
            if m.abs() >= 0.5 {
                println!("{:<12}   {:<24} {:>+8.1} ns/conn", "", name, m);
            }
            programs.push(json!({ "program": name, "ns_per_conn_minus_peer": m }));
        }
        rows.push(json!({
            "workload": comm, "rounds": n, "bpf_ns_per_conn_minus_peer": balanced,
            "probe_tracer_first": mean(&by_order(0)), "peer_first": mean(&by_order(1)),
            "per_round": diffs, "programs": programs,
        }));
    }
    rows
}

fn report_cost(args: &Args, workloads: &[&'static str], samples: &[Vec<(Condition, CostSample)>]) -> Vec<Value> {
    let peer = if args.peer_tracer.is_some() { "peer build" } else { "bpftrace" };
    println!(
        "\ncost per connection with BPF statistics on ({} rounds; median [min-max]); share: the tracer's BPF and\n\
         process time over a baseline connection's busy CPU (an estimate of the throughput a CPU-bound loop loses):",
        args.cost_rounds
    );
    println!("{:<12} {:<13} {:>10} {:>24} {:>10} {:>22} {:>24}", "workload", "tracer", "base us", "BPF ns/conn", "runs/conn", "process ns/conn", "share");
    let mut rows = Vec::new();
    for (wi, comm) in workloads.iter().enumerate() {
        let of = |c: Condition| samples[wi].iter().filter(move |(k, _)| *k == c).map(|(_, s)| s.clone());
        let base_ns = median(of(Condition::Baseline).map(|s| s.busy_ns / s.connections.max(1) as f64).collect());
        for (condition, name) in [(Condition::ProbeTracer, "probe-tracer"), (Condition::Bpftrace, peer)] {
            let bpf = spread(of(condition).map(|s| s.per_connection(s.tracer.bpf_ns)).collect());
            let runs = median(of(condition).map(|s| s.tracer.bpf_runs as f64 / s.connections.max(1) as f64).collect());
            let process = spread(of(condition).map(|s| s.per_connection(s.tracer.cpu_ns)).collect());
            let share = spread(of(condition).map(|s| s.per_connection(s.tracer.bpf_ns + s.tracer.cpu_ns) / base_ns).collect());
            println!(
                "{:<12} {:<13} {:>10.1} {:>24} {:>10.1} {:>22} {:>24}",
                label(comm),
                name,
                base_ns / 1e3,
                format!("{:.0} [{:.0}-{:.0}]", bpf.0, bpf.1, bpf.2),
                runs,
                format!("{:.0} [{:.0}-{:.0}]", process.0, process.1, process.2),
                format!("{:.2} % [{:.2}-{:.2}]", share.0 * 100.0, share.1 * 100.0, share.2 * 100.0),
            );
            let programs = program_breakdown(&of(condition).collect::<Vec<_>>());
            for p in &programs {
                println!(
                    "{:<12}   {:<24} {:>16} {:>10.2} {:>22}",
                    "",
                    p["program"].as_str().unwrap_or(""),
                    format!("{:.0} ns/conn", p["ns_per_conn"].as_f64().unwrap_or(0.0)),
                    p["runs_per_conn"].as_f64().unwrap_or(0.0),
                    format!("{:.1} ns/run", p["ns_per_run"].as_f64().unwrap_or(0.0)),
                );
            }
            rows.push(json!({
                "workload": comm, "tracer": name, "baseline_busy_ns_per_conn": base_ns,
                "bpf_ns_per_conn": bpf.0, "bpf_ns_per_conn_min": bpf.1, "bpf_ns_per_conn_max": bpf.2,
                "bpf_runs_per_conn": runs, "process_ns_per_conn": process.0,
                "share": share.0, "share_min": share.1, "share_max": share.2,
                "programs": programs,
            }));
        }
    }
    rows
}

fn main() {
    let args = parse_args();
    // The bench runs probe-tracer through the e2e helper, which reads these.
    unsafe { env::set_var("PROBE_TRACER_BIN", &args.tracer) };
    let (addr, stop_server) = start_server(args.pin, args.clients);
    let workloads = ["kubelet", "bench-client"];
    // Per workload, windows in run order: B T B P B T B P ... B, so every
    // tracer window sits between two baselines (see bench::Windows).
    let mut windows: Vec<Windows> = workloads.iter().map(|_| Windows::default()).collect();
    // Connections per busy CPU-second of the whole machine, same schedule.
    let mut per_cpu: Vec<Windows> = workloads.iter().map(|_| Windows::default()).collect();
    let mut accounting = Vec::new();
    let measure = |condition: Condition, round: usize| -> u64 {
        // The first window after the pause around a tracer's start or stop
        // ran 4-10 % slower than the second (idle virtual CPUs waking up),
        // baseline or not. An unmeasured warm-up absorbs most of that, and
        // the workloads keep one order in every window, so whatever is left
        // falls on a workload's baseline and tracer windows alike. (Until
        // session 8 the order alternated per window, which with two windows
        // per round put the non-prober first in every tracer window and
        // second in every baseline: a bias of several percent against it.)
        connect_loop(addr, "bench-warmup", WARMUP_SECONDS, args.pin, args.clients);
        let mut prober_made = 0;
        for (wi, &comm) in workloads.iter().enumerate() {
            let busy_before = bench::busy_cpu_seconds();
            let n = connect_loop(addr, comm, args.seconds, args.pin, args.clients);
            let busy = bench::busy_cpu_seconds() - busy_before;
            let rate = n as f64 / args.seconds;
            windows[wi].push(condition, rate);
            per_cpu[wi].push(condition, n as f64 / busy.max(0.01));
            if comm == "kubelet" {
                prober_made = n;
            }
            eprintln!(
                "round {round} {:<13} {comm:<13} {rate:>9.0} conn/s {:>6.1} us busy CPU/conn",
                condition.name(),
                busy * 1e6 / n.max(1) as f64
            );
        }
        prober_made
    };
    bench::run_paired(args.rounds, args.peer_every, measure, |c| start(c, &args), |running, prober_made, round| {
        if let Some((seen, lost)) = stop(running) {
            // Only the "kubelet" workload is traced.
            accounting.push(json!({ "round": round, "prober_connections": prober_made, "seen": seen, "lost_events": lost }));
        }
    });
    let alternation = if args.alternations > 0 { Some(alternation_phase(&args, addr, &workloads)) } else { None };
    let cost = if args.cost_rounds > 0 { cost_phase(&args, addr, &workloads) } else { None };
    stop_server.store(true, Ordering::Relaxed);
    let _ = TcpStream::connect(addr);

    let kernel = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim().to_string();
    let mut results = Vec::new();
    let mut cpu_rows = Vec::new();
    println!("\nconnect/accept on loopback, kernel {kernel}, {} rounds x {} s;", args.rounds, args.seconds);
    println!("each tracer window over the mean of the baselines either side of it (median [quartiles]);");
    println!("\"<2 %\": whether the 95 % confidence interval of the median lies above 0.98:");
    println!(
        "{:<14} {:>12} {:>22} {:>13} {:>9} {:>22}",
        "workload",
        "baseline/s",
        if args.control { "control (no tracer)" } else { "probe-tracer ratio" },
        "95% CI",
        "<2 %",
        if args.peer_tracer.is_some() { "peer build ratio" } else { "bpftrace ratio" }
    );
    // `--rounds 0` leaves only the other phases.
    for (wi, comm) in workloads.iter().enumerate().filter(|_| args.rounds > 0) {
        let base = median(windows[wi].rates(Condition::Baseline));
        let ours = windows[wi].summary(Condition::ProbeTracer).expect("probe-tracer windows");
        let peer = windows[wi].summary(Condition::Bpftrace).expect("bpftrace windows");
        println!(
            "{:<14} {:>12.0} {:>22} {:>13} {:>9} {:>22}",
            label(comm),
            base,
            ours,
            ours.ci95(),
            ours.loss_below(0.02),
            peer
        );
        let ours_cpu = per_cpu[wi].summary(Condition::ProbeTracer).expect("probe-tracer windows");
        let peer_cpu = per_cpu[wi].summary(Condition::Bpftrace).expect("bpftrace windows");
        results.push(json!({
            "workload": comm, "baseline_per_s": base,
            "probe_tracer_ratio": ours.median, "probe_tracer": ours,
            "bpftrace_ratio": peer.median, "bpftrace": peer,
            "per_busy_cpu_second": { "probe_tracer": ours_cpu, "bpftrace": peer_cpu },
        }));
        cpu_rows.push((comm, ours_cpu, peer_cpu));
    }
    println!("connections per busy CPU-second of the machine (the cost with idle time left out), same windows:");
    for (comm, ours, peer) in cpu_rows {
        println!("{:<14} {:>12} {:>22} {:>13} {:>9} {:>22}", label(comm), "", ours, ours.ci95(), ours.loss_below(0.02), peer);
    }
    let mut alternation_rows = Vec::new();
    if let Some(windows) = &alternation {
        println!(
            "one probe-tracer process attached and detached in turn ({} times, {} s windows), each attached window\n\
             over the mean of the detached windows either side of it:",
            args.alternations, args.alternation_seconds
        );
        for (wi, comm) in workloads.iter().enumerate() {
            let base = median(windows[wi].rates(Condition::Baseline));
            let ours = windows[wi].summary(Condition::ProbeTracer).expect("attached windows");
            println!("{:<14} {:>12.0} {:>22} {:>13} {:>9}", label(comm), base, ours, ours.ci95(), ours.loss_below(0.02));
            alternation_rows.push(json!({ "workload": comm, "detached_per_s": base, "probe_tracer_ratio": ours.median, "probe_tracer": ours }));
        }
    }
    let mut together_rows = Vec::new();
    let cost_rows = match cost {
        Some((samples, cost_accounting)) => {
            accounting.extend(cost_accounting);
            let rows = report_cost(&args, &workloads, &samples);
            if args.together && args.peer_tracer.is_some() {
                together_rows = report_together(&workloads, &samples);
            }
            rows
        }
        None => Vec::new(),
    };
    let complete = accounting.iter().all(|a| a["seen"] == a["prober_connections"] && a["lost_events"] == 0);
    println!(
        "probe-tracer saw every prober connection with no lost events: {}  {}",
        if complete { "yes" } else { "NO" },
        Value::Array(accounting.clone())
    );
    let report = json!({ "kernel": kernel, "control": args.control, "peer_tracer": args.peer_tracer, "rounds": args.rounds, "seconds": args.seconds, "results": results, "alternation": alternation_rows, "alternation_seconds": args.alternation_seconds, "cost": cost_rows, "together": together_rows, "accounting": accounting, "complete": complete });
    if let Some(path) = &args.json {
        fs::write(path, serde_json::to_string_pretty(&report).unwrap()).unwrap();
    }
    if !complete {
        std::process::exit(1);
    }
}

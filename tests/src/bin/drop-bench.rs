//! Drop storm (issue 24): what the packet-drop hook costs packets that are
//! no probe's. `skb:kfree_skb` fires for every packet the kernel drops, and
//! a busy node drops many; the hook must let them go at once.
//!
//! The storm: UDP datagrams of one byte, sent with `sendmmsg` on loopback
//! to sockets that never read and whose receive buffers are the smallest
//! the kernel allows, so every datagram past the first few is dropped
//! (`SOCKET_RCVBUFF` where the kernel names reasons) in the sender's own
//! softirq, with no reply. One sender per CPU, each pinned, each to its
//! own socket: the highest drop rate this machine makes. Loopback only.
//!
//! Two workloads, in this order in every window: `idle` (no prober socket
//! in flight, where the hook returns after one load) and `in-flight` (a
//! connection from a thread named `kubelet` is held open in ESTABLISHED for
//! the window, so the hook reads every dropped packet's headers and looks
//! its addresses up in the tracked probes' filter).
//!
//! Like connect-bench, without BPF statistics: an alternation phase (one
//! probe-tracer process, `run --pause-signals`, detached and attached
//! again `--alternations` times, default 150, with a window of
//! `--alternation-seconds`, default 0.2, per workload on each side), each
//! attached window over the mean of the detached windows either side; a
//! drop storm's rate on this shared machine moves by tens of percent
//! between windows seconds apart, so only adjacent windows compare. Then
//! optional restart rounds (`--rounds`, default 0: B T B P B ..., each
//! tracer started for its window), and a cost phase with the statistics
//! on (`--cost-rounds`, default 3), which reads the drop program's
//! `run_time_ns` and `run_cnt` and every program's time per dropped
//! packet. `--peer-tracer BIN` runs another probe-tracer build in the
//! peer's place in the rounds and the cost phase (for instance the build
//! before the hook existed).
//!
//! Usage: drop-bench [--seconds S] [--rounds R] [--cost-rounds N] [--alternations N]
//!                   [--alternation-seconds S] [--tracer BIN] [--peer-tracer BIN]
//!                   [--tracer-arg ARG]... [--senders N] [--json FILE]

use std::{
    env, fs,
    net::{TcpListener, TcpStream, UdpSocket},
    os::fd::AsRawFd,
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use serde_json::{Value, json};
use tests::bench::{self, Condition, Windows, median};

struct Args {
    seconds: f64,
    rounds: usize,
    cost_rounds: usize,
    alternations: usize,
    alternation_seconds: f64,
    tracer: PathBuf,
    peer_tracer: Option<PathBuf>,
    tracer_args: Vec<String>,
    senders: usize,
    json: Option<PathBuf>,
}

fn parse_args() -> Args {
    let cpus = thread::available_parallelism().map_or(1, |n| n.get());
    let mut args = Args {
        seconds: 1.0,
        rounds: 0,
        cost_rounds: 3,
        alternations: 150,
        alternation_seconds: 0.2,
        tracer: tests::binary(),
        peer_tracer: None,
        // The probe group holds the drop hook; the others' syscall
        // tracepoints would tax the senders' sendmmsg calls, not the drops.
        tracer_args: vec!["--verdicts-only".into(), "--groups".into(), "probe".into()],
        senders: cpus,
        json: None,
    };
    let mut it = env::args().skip(1);
    while let Some(a) = it.next() {
        let mut val = || it.next().unwrap_or_else(|| panic!("{a} needs a value"));
        match a.as_str() {
            "--seconds" => args.seconds = val().parse().expect("--seconds"),
            "--rounds" => args.rounds = val().parse().expect("--rounds"),
            "--cost-rounds" => args.cost_rounds = val().parse().expect("--cost-rounds"),
            "--alternations" => args.alternations = val().parse().expect("--alternations"),
            "--alternation-seconds" => args.alternation_seconds = val().parse().expect("--alternation-seconds"),
            "--tracer" => args.tracer = PathBuf::from(val()),
            "--peer-tracer" => args.peer_tracer = Some(PathBuf::from(val())),
            "--tracer-arg" => args.tracer_args.push(val()),
            "--senders" => args.senders = val().parse().expect("--senders"),
            "--json" => args.json = Some(PathBuf::from(val())),
            other => panic!("unknown argument {other}"),
        }
    }
    args
}

const WORKLOADS: [&str; 2] = ["idle", "in-flight"];

/// Datagrams per `sendmmsg` call.
const BATCH: usize = 64;

/// The socket the storm is sent to: bound, never read, its receive buffer
/// the kernel's minimum.
fn sink() -> UdpSocket {
    let sink = UdpSocket::bind("127.0.0.1:0").expect("bind the sink");
    let size: libc::c_int = 1;
    // SAFETY: a valid socket and a correctly sized option value; the
    // kernel raises it to its minimum.
    unsafe {
        libc::setsockopt(
            sink.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            &size as *const _ as *const libc::c_void,
            size_of::<libc::c_int>() as u32,
        )
    };
    sink
}

/// Sends to `to` from one thread per sender, each pinned to its own CPU,
/// for `seconds`; returns the datagrams sent (nearly all of them dropped).
fn storm(to: &[std::net::SocketAddr], senders: usize, seconds: f64) -> u64 {
    storm_with_cpu(to, senders, seconds).0
}

/// The senders' own CPU time in ns: loopback delivers in the sender's
/// softirq, so the drop and the programs it runs are charged to the
/// sender's thread (on kernels without IRQ_TIME_ACCOUNTING, such as
/// this machine's), and other tenants' load does not count in.
fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: a valid timespec for the calling thread's clock.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// [`storm`], and the senders' CPU time.
fn storm_with_cpu(to: &[std::net::SocketAddr], senders: usize, seconds: f64) -> (u64, u64) {
    let cpus = thread::available_parallelism().map_or(1, |n| n.get());
    let total = Arc::new(AtomicU64::new(0));
    let cpu = Arc::new(AtomicU64::new(0));
    let threads: Vec<_> = (0..senders.max(1))
        .map(|i| {
            let total = total.clone();
            let cpu = cpu.clone();
            // Each sender its own sink: one shared socket's counters made
            // two senders drop no more than one.
            let to = to[i % to.len()];
            thread::spawn(move || {
                pin_to(i % cpus);
                let socket = UdpSocket::bind("127.0.0.1:0").expect("bind a sender");
                socket.connect(to).expect("connect a sender");
                let payload = [0u8; 1];
                let mut iov = [libc::iovec { iov_base: payload.as_ptr() as *mut libc::c_void, iov_len: payload.len() }; BATCH];
                // SAFETY: all-zero mmsghdr is valid (no name, no control).
                let mut msgs: [libc::mmsghdr; BATCH] = unsafe { std::mem::zeroed() };
                for (m, v) in msgs.iter_mut().zip(iov.iter_mut()) {
                    m.msg_hdr.msg_iov = v;
                    m.msg_hdr.msg_iovlen = 1;
                }
                let end = Instant::now() + Duration::from_secs_f64(seconds);
                let cpu_before = thread_cpu_ns();
                let mut n = 0u64;
                while Instant::now() < end {
                    for _ in 0..16 {
                        // SAFETY: BATCH valid headers, each pointing at a live iovec.
                        let sent = unsafe { libc::sendmmsg(socket.as_raw_fd(), msgs.as_mut_ptr(), BATCH as u32, 0) };
                        if sent > 0 {
                            n += sent as u64;
                        }
                    }
                }
                cpu.fetch_add(thread_cpu_ns() - cpu_before, Ordering::Relaxed);
                total.fetch_add(n, Ordering::Relaxed);
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    (total.load(Ordering::Relaxed), cpu.load(Ordering::Relaxed))
}

fn pin_to(cpu: usize) {
    // SAFETY: plain sched_setaffinity(2) on the calling thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set);
    }
}

/// `Udp: ... RcvbufErrors` of /proc/net/snmp: datagrams dropped for a
/// full receive buffer, node-wide.
fn rcvbuf_errors() -> u64 {
    let snmp = fs::read_to_string("/proc/net/snmp").unwrap_or_default();
    let mut lines = snmp.lines().filter(|l| l.starts_with("Udp:"));
    let (Some(names), Some(values)) = (lines.next(), lines.next()) else { return 0 };
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(n, _)| *n == "RcvbufErrors")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0)
}

/// A prober connection held open: connected from a thread named `kubelet`
/// to a listener that accepts it and reads nothing.
struct HeldProbe {
    _client: TcpStream,
    _server: TcpStream,
}

impl HeldProbe {
    fn open(listener: &TcpListener) -> Self {
        let to = listener.local_addr().unwrap();
        let client = thread::spawn(move || {
            tests::set_thread_name("kubelet");
            TcpStream::connect(to).expect("connect the held probe")
        })
        .join()
        .unwrap();
        let (server, _) = listener.accept().expect("accept the held probe");
        // Past the handshake on both sides before the window starts.
        thread::sleep(Duration::from_millis(20));
        Self { _client: client, _server: server }
    }
}

/// A tracer for one window.
enum Running {
    None,
    Tracer(tests::Tracer),
}

impl Running {
    fn pid(&self) -> Option<u32> {
        match self {
            Running::None => None,
            Running::Tracer(t) => Some(t.pid()),
        }
    }
}

fn start(condition: Condition, args: &Args) -> Running {
    let tracer_args: Vec<&str> = args.tracer_args.iter().map(String::as_str).collect();
    match condition {
        Condition::Baseline => Running::None,
        Condition::ProbeTracer => Running::Tracer(tests::Tracer::start_binary(&args.tracer, &tracer_args)),
        Condition::Bpftrace => match &args.peer_tracer {
            Some(bin) => Running::Tracer(tests::Tracer::start_binary(bin, &tracer_args)),
            None => Running::None,
        },
    }
}

fn stop(running: Running) -> Option<u64> {
    match running {
        Running::None => None,
        Running::Tracer(t) => Some(t.stop().only("summary")["lost_events"].as_u64().unwrap_or(u64::MAX)),
    }
}

/// The drop program of a tracer's programs (`btf_tp_kfree_skb`,
/// `raw_tp_kfree_skb` or `tp_kfree_skb`, as the kernel truncates names).
fn is_drop_program(name: &str) -> bool {
    name.contains("kfree_sk")
}

#[derive(Clone)]
struct CostSample {
    drops: u64,
    tracer: bench::ProcessCost,
}

fn main() {
    let args = parse_args();
    unsafe { env::set_var("PROBE_TRACER_BIN", &args.tracer) };
    let sinks: Vec<UdpSocket> = (0..args.senders.max(1)).map(|_| sink()).collect();
    let to: Vec<std::net::SocketAddr> = sinks.iter().map(|s| s.local_addr().unwrap()).collect();
    let to = &to[..];
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let peer_name = if args.peer_tracer.is_some() { "peer build" } else { "none" };

    // Fill the sink's buffer and check that the storm is dropped.
    let before = rcvbuf_errors();
    let sent = storm(to, 1, 0.2);
    let dropped = rcvbuf_errors() - before;
    eprintln!("check: {sent} datagrams sent, {dropped} counted as RcvbufErrors");

    // Alternation phase: one tracer, detached and attached in turn.
    let mut alternation: Vec<Windows> = WORKLOADS.iter().map(|_| Windows::default()).collect();
    // The same windows as drops per second of the senders' CPU time.
    let mut alternation_cpu: Vec<Windows> = WORKLOADS.iter().map(|_| Windows::default()).collect();
    let mut lost = Vec::new();
    if args.alternations > 0 {
        let mut tracer_args: Vec<&str> = args.tracer_args.iter().map(String::as_str).collect();
        tracer_args.push("--pause-signals");
        let mut tracer = tests::Tracer::start_binary(&args.tracer, &tracer_args);
        thread::sleep(bench::SETTLE);
        let measure = |condition: Condition, windows: &mut Vec<Windows>, cpu: &mut Vec<Windows>| {
            storm(to, args.senders, 0.05);
            for (wi, _) in WORKLOADS.iter().enumerate() {
                let held = (wi == 1).then(|| HeldProbe::open(&listener));
                let (n, cpu_ns) = storm_with_cpu(to, args.senders, args.alternation_seconds);
                drop(held);
                windows[wi].push(condition, n as f64 / args.alternation_seconds);
                cpu[wi].push(condition, n as f64 * 1e9 / cpu_ns.max(1) as f64);
            }
        };
        tracer.pause();
        measure(Condition::Baseline, &mut alternation, &mut alternation_cpu);
        for i in 0..args.alternations {
            tracer.resume();
            measure(Condition::ProbeTracer, &mut alternation, &mut alternation_cpu);
            tracer.pause();
            measure(Condition::Baseline, &mut alternation, &mut alternation_cpu);
            if (i + 1) % 25 == 0 {
                let so_far: Vec<String> =
                    alternation.iter().map(|w| format!("{}", w.summary(Condition::ProbeTracer).unwrap())).collect();
                eprintln!("alternation {}/{}: attached/detached {}", i + 1, args.alternations, so_far.join(", "));
            }
        }
        lost.push(json!({ "phase": "alternation", "lost_events": tracer.stop().only("summary")["lost_events"] }));
    }

    let mut windows: Vec<Windows> = WORKLOADS.iter().map(|_| Windows::default()).collect();
    let measure = |condition: Condition, round: usize| {
        storm(to, args.senders, 0.2);
        for (wi, workload) in WORKLOADS.iter().enumerate() {
            let held = (wi == 1).then(|| HeldProbe::open(&listener));
            let n = storm(to, args.senders, args.seconds);
            drop(held);
            let rate = n as f64 / args.seconds;
            windows[wi].push(condition, rate);
            eprintln!("round {round} {:<13} {workload:<10} {rate:>10.0} drops/s", if condition == Condition::Bpftrace { peer_name } else { condition.name() });
        }
    };
    let peer_every = if args.peer_tracer.is_some() { 1 } else { usize::MAX };
    if args.rounds > 0 {
        bench::run_paired(args.rounds, peer_every, measure, |c| start(c, &args), |running, _, round| {
            if let Some(l) = stop(running) {
                lost.push(json!({ "round": round, "lost_events": l }));
            }
        });
    }

    // Cost phase: BPF statistics on.
    let mut samples: Vec<Vec<(Condition, CostSample)>> = WORKLOADS.iter().map(|_| Vec::new()).collect();
    if args.cost_rounds > 0 {
        match bench::BpfStats::enable() {
            Err(e) => eprintln!("cost phase skipped: cannot turn on BPF statistics ({e})"),
            Ok(_stats) => {
                for round in 0..args.cost_rounds {
                    for condition in [Condition::ProbeTracer, Condition::Bpftrace] {
                        if condition == Condition::Bpftrace && args.peer_tracer.is_none() {
                            continue;
                        }
                        let running = start(condition, &args);
                        thread::sleep(bench::SETTLE);
                        let pid = running.pid();
                        let cost_now = || pid.map(bench::ProcessCost::of).unwrap_or_default();
                        storm(to, args.senders, 0.2);
                        for (wi, workload) in WORKLOADS.iter().enumerate() {
                            let held = (wi == 1).then(|| HeldProbe::open(&listener));
                            let before = cost_now();
                            let n = storm(to, args.senders, args.seconds);
                            let cost = cost_now().since(&before);
                            drop(held);
                            let drop_program = cost.programs.iter().filter(|p| is_drop_program(&p.name)).fold((0, 0), |a, p| (a.0 + p.ns, a.1 + p.runs));
                            eprintln!(
                                "cost round {round} {:<13} {workload:<10} {:>7.1} ns BPF/drop, drop program {:>6.1} ns/run ({:.2} runs/drop)",
                                if condition == Condition::ProbeTracer { "probe-tracer" } else { peer_name },
                                cost.bpf_ns as f64 / n.max(1) as f64,
                                drop_program.0 as f64 / drop_program.1.max(1) as f64,
                                drop_program.1 as f64 / n.max(1) as f64,
                            );
                            samples[wi].push((condition, CostSample { drops: n, tracer: cost }));
                        }
                        if let Some(l) = stop(running) {
                            lost.push(json!({ "round": round, "phase": "cost", "lost_events": l }));
                        }
                        thread::sleep(bench::SETTLE);
                    }
                }
            }
        }
    }

    let kernel = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim().to_string();
    println!("\ndrop storm on loopback (UDP to a full receive buffer, {} senders), kernel {kernel};", args.senders);
    let mut alternation_rows = Vec::new();
    if args.alternations > 0 {
        println!(
            "one probe-tracer process attached and detached in turn ({} times, {} s windows), each attached window\n\
             over the mean of the detached windows either side of it (median [quartiles]), and what that is in ns per drop:",
            args.alternations, args.alternation_seconds
        );
        println!(
            "{:<10} {:>12} {:>22} {:>13} {:>12} {:>22} {:>13} {:>12}",
            "workload", "detached/s", "attached/detached", "95% CI", "ns/drop", "per sender CPU-s", "95% CI", "CPU ns/drop"
        );
        for (wi, workload) in WORKLOADS.iter().enumerate() {
            let base = median(alternation[wi].rates(Condition::Baseline));
            let ours = alternation[wi].summary(Condition::ProbeTracer).expect("attached windows");
            // The time per drop the tracer adds, from the paired ratio:
            // 1/(r * base) - 1/base, per sender CPU.
            let ns = (1.0 / ours.median - 1.0) / base * 1e9 * args.senders as f64;
            // The same from the senders' CPU time: what each drop costs
            // the CPU that makes it, whatever else runs on the machine.
            let base_cpu = median(alternation_cpu[wi].rates(Condition::Baseline));
            let ours_cpu = alternation_cpu[wi].summary(Condition::ProbeTracer).expect("attached windows");
            let cpu_ns = (1.0 / ours_cpu.median - 1.0) / base_cpu * 1e9;
            println!(
                "{workload:<10} {base:>12.0} {:>22} {:>13} {:>12.1} {:>22} {:>13} {:>12.1}",
                ours,
                ours.ci95(),
                ns,
                ours_cpu,
                ours_cpu.ci95(),
                cpu_ns
            );
            alternation_rows.push(json!({
                "workload": workload, "detached_per_s": base, "probe_tracer_ratio": ours.median, "probe_tracer": ours, "added_ns_per_drop": ns,
                "detached_cpu_ns_per_drop": 1e9 / base_cpu, "per_cpu_ratio": ours_cpu.median, "per_cpu": ours_cpu, "added_cpu_ns_per_drop": cpu_ns,
            }));
        }
    }
    if args.rounds > 0 {
        println!("restarted for each window, {} rounds x {} s, each over the mean of the baselines either side of it:", args.rounds, args.seconds);
        println!("{:<10} {:>12} {:>22} {:>13} {:>22}", "workload", "baseline/s", "probe-tracer ratio", "95% CI", format!("{peer_name} ratio"));
    }
    let mut results = Vec::new();
    for (wi, workload) in WORKLOADS.iter().enumerate().filter(|_| args.rounds > 0) {
        let base = median(windows[wi].rates(Condition::Baseline));
        let ours = windows[wi].summary(Condition::ProbeTracer).expect("probe-tracer windows");
        let peer = windows[wi].summary(Condition::Bpftrace);
        println!(
            "{workload:<10} {base:>12.0} {:>22} {:>13} {:>22}",
            ours,
            ours.ci95(),
            peer.map_or("-".to_string(), |p| format!("{p}"))
        );
        results.push(json!({ "workload": workload, "baseline_per_s": base, "probe_tracer_ratio": ours.median, "probe_tracer": ours, "peer": peer }));
    }
    let mut cost_rows = Vec::new();
    if samples.iter().any(|s| !s.is_empty()) {
        println!("\nBPF time per dropped packet with BPF statistics on ({} rounds; median [min-max]):", args.cost_rounds);
        println!("{:<10} {:<13} {:>22} {:>26} {:>12}", "workload", "tracer", "all programs ns/drop", "drop program ns/run", "runs/drop");
        for (wi, workload) in WORKLOADS.iter().enumerate() {
            for (condition, name) in [(Condition::ProbeTracer, "probe-tracer"), (Condition::Bpftrace, peer_name)] {
                let of: Vec<CostSample> = samples[wi].iter().filter(|(c, _)| *c == condition).map(|(_, s)| s.clone()).collect();
                if of.is_empty() {
                    continue;
                }
                let spread = |mut v: Vec<f64>| {
                    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
                    (v[v.len() / 2], v[0], v[v.len() - 1])
                };
                let all = spread(of.iter().map(|s| s.tracer.bpf_ns as f64 / s.drops.max(1) as f64).collect());
                let drop_of = |s: &CostSample| {
                    s.tracer.programs.iter().filter(|p| is_drop_program(&p.name)).fold((0u64, 0u64), |a, p| (a.0 + p.ns, a.1 + p.runs))
                };
                let has_drop_program = of.iter().any(|s| drop_of(s).1 > 0);
                let per_run = has_drop_program.then(|| spread(of.iter().map(|s| drop_of(s).0 as f64 / drop_of(s).1.max(1) as f64).collect()));
                let runs = median(of.iter().map(|s| drop_of(s).1 as f64 / s.drops.max(1) as f64).collect());
                println!(
                    "{workload:<10} {name:<13} {:>22} {:>26} {:>12.2}",
                    format!("{:.1} [{:.1}-{:.1}]", all.0, all.1, all.2),
                    per_run.map_or("no drop program".to_string(), |r| format!("{:.1} [{:.1}-{:.1}]", r.0, r.1, r.2)),
                    runs
                );
                cost_rows.push(json!({
                    "workload": workload, "tracer": name,
                    "bpf_ns_per_drop": all.0, "bpf_ns_per_drop_min": all.1, "bpf_ns_per_drop_max": all.2,
                    "drop_program_ns_per_run": per_run.map(|r| r.0), "drop_program_runs_per_drop": runs,
                }));
            }
        }
    }
    let no_loss = lost.iter().all(|l| l["lost_events"] == 0);
    println!("no lost events: {}  {}", if no_loss { "yes" } else { "NO" }, Value::Array(lost.clone()));
    let report = json!({
        "kernel": kernel, "rounds": args.rounds, "seconds": args.seconds, "senders": args.senders,
        "peer_tracer": args.peer_tracer, "check": { "sent": sent, "rcvbuf_errors": dropped },
        "alternations": args.alternations, "alternation_seconds": args.alternation_seconds,
        "alternation": alternation_rows, "results": results, "cost": cost_rows, "lost": lost,
    });
    if let Some(path) = &args.json {
        fs::write(path, serde_json::to_string_pretty(&report).unwrap()).unwrap();
    }
    // Read by nobody: they only have to live until here.
    drop(sinks);
}

//! Resource budget of `probe-tracer daemon` (issue 5): RSS and CPU while a
//! prober (a thread named `kubelet`) makes healthy, verdict-free loopback
//! connections at a fixed rate, side by side with the same daemon idle for
//! the same time in the same run.
//!
//! Reports the daemon's CPU as a share of one core (from /proc/PID/stat),
//! its RSS and peak RSS (VmRSS, VmHWM), the rate achieved, and whether the
//! daemon counted every connection (probe_connections_total) with no lost
//! events. Budget: under 30 MiB RSS and under 1 % of a core at 1,000/s.
//!
//! Usage: daemon-budget [--rate N] [--seconds S] [--tracer BIN] [--json FILE]

use std::{
    env, fs,
    io::{Read, Write},
    net::{TcpListener, TcpStream},
    path::PathBuf,
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use serde_json::json;

const METRICS_ADDR: &str = "127.0.0.1:19466";

struct Args {
    rate: u64,
    seconds: f64,
    tracer: PathBuf,
    json: Option<PathBuf>,
}

fn parse_args() -> Args {
    let mut args = Args { rate: 1000, seconds: 20.0, tracer: tests::binary(), json: None };
    let mut it = env::args().skip(1);
    while let Some(a) = it.next() {
        let mut val = || it.next().unwrap_or_else(|| panic!("{a} needs a value"));
        match a.as_str() {
            "--rate" => args.rate = val().parse().expect("--rate"),
            "--seconds" => args.seconds = val().parse().expect("--seconds"),
            "--tracer" => args.tracer = PathBuf::from(val()),
            "--json" => args.json = Some(PathBuf::from(val())),
            other => panic!("unknown argument {other}"),
        }
    }
    args
}

/// utime + stime of `pid`, in seconds.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).expect("daemon stat");
    // Fields after the parenthesised comm: state is field 3, utime 14, stime 15.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
    // SAFETY: sysconf has no preconditions.
    ticks as f64 / unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64
}

/// (VmRSS, VmHWM) in MiB.
fn rss_mib(pid: u32) -> (f64, f64) {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb = |key: &str| -> f64 {
        status.lines().find(|l| l.starts_with(key)).and_then(|l| l.split_whitespace().nth(1)).and_then(|v| v.parse().ok()).unwrap_or(0.0)
    };
    (kb("VmRSS:") / 1024.0, kb("VmHWM:") / 1024.0)
}

fn metrics() -> String {
    let out = Command::new("curl").args(["-s", "-m", "2", &format!("http://{METRICS_ADDR}/metrics")]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn metric(text: &str, name: &str) -> u64 {
    text.lines().find(|l| l.starts_with(name)).and_then(|l| l.rsplit(' ').next()).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0) as u64
}

fn start_daemon(bin: &PathBuf) -> Child {
    let child = tests::die_with_parent(&mut Command::new(bin))
        .args(["daemon", "--metrics-addr", METRICS_ADDR, "--no-kubernetes"])
        .stdout(Stdio::null())
        .spawn()
        .expect("start probe-tracer daemon");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !metrics().contains("probe_tracer_hook_attached") {
        assert!(Instant::now() < deadline, "the daemon did not come up");
        thread::sleep(Duration::from_millis(200));
    }
    child
}

/// Accepts, answers one byte, closes: a healthy probe target.
fn start_server() -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        for mut conn in listener.incoming().flatten() {
            let mut b = [0u8; 1];
            if conn.read_exact(&mut b).is_ok() {
                let _ = conn.write_all(b"!");
            }
        }
    });
    addr
}

/// `rate` connections per second from a thread named `kubelet`, paced.
fn prober(addr: std::net::SocketAddr, rate: u64, seconds: f64) -> u64 {
    thread::spawn(move || {
        let name = std::ffi::CString::new("kubelet").unwrap();
        // SAFETY: PR_SET_NAME with a NUL-terminated string.
        unsafe { libc::prctl(libc::PR_SET_NAME, name.as_ptr()) };
        let start = Instant::now();
        let total = (rate as f64 * seconds) as u64;
        for n in 0..total {
            let due = start + Duration::from_secs_f64(n as f64 / rate as f64);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                thread::sleep(wait);
            }
            let mut s = TcpStream::connect(addr).expect("connect");
            s.write_all(b"?").unwrap();
            let mut b = [0u8; 1];
            s.read_exact(&mut b).unwrap();
        }
        total
    })
    .join()
    .unwrap()
}

fn main() {
    let args = parse_args();
    let mut daemon = start_daemon(&args.tracer);
    let pid = daemon.id();
    // Let start-up work (BTF parsing, attaching) settle before measuring.
    thread::sleep(Duration::from_secs(2));

    let idle_cpu0 = cpu_seconds(pid);
    let idle_t0 = Instant::now();
    thread::sleep(Duration::from_secs_f64(args.seconds));
    let idle_share = (cpu_seconds(pid) - idle_cpu0) / idle_t0.elapsed().as_secs_f64();
    let (idle_rss, _) = rss_mib(pid);

    let addr = start_server();
    let before = metric(&metrics(), "probe_tracer_probe_connections_total{outcome=\"established\"}");
    let cpu0 = cpu_seconds(pid);
    let t0 = Instant::now();
    let made = prober(addr, args.rate, args.seconds);
    let elapsed = t0.elapsed().as_secs_f64();
    let load_share = (cpu_seconds(pid) - cpu0) / elapsed;
    // Attempts are judged when the socket closes; give the last ones a tick.
    thread::sleep(Duration::from_millis(1500));
    let m = metrics();
    let counted = metric(&m, "probe_tracer_probe_connections_total{outcome=\"established\"}") - before;
    let lost = metric(&m, "probe_tracer_lost_events_total");
    let verdicts: u64 = m.lines().filter(|l| l.starts_with("probe_tracer_verdicts_total{")).filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok()).sum();
    let (rss, hwm) = rss_mib(pid);
    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    let _ = daemon.wait();

    let rate = made as f64 / elapsed;
    // The budget is the steady state; the peak is loading (BTF parsing),
    // reported beside it.
    let within = rss < 30.0 && load_share < 0.01 && counted == made && lost == 0;
    println!("probe-tracer daemon budget, {made} prober connections in {elapsed:.1} s ({rate:.0}/s):");
    println!("  CPU, share of one core:  loaded {:.2} %   idle {:.2} %   (budget 1 %)", load_share * 100.0, idle_share * 100.0);
    println!("  RSS:                     loaded {rss:.1} MiB   idle {idle_rss:.1} MiB   (budget 30 MiB); peak while loading {hwm:.1} MiB");
    println!("  counted {counted} of {made} connections as established; {lost} events lost; {verdicts} verdicts");
    println!("  {}", if within { "within budget" } else { "OVER BUDGET" });
    if let Some(path) = &args.json {
        let v = json!({
            "rate_per_s": rate, "connections": made, "counted": counted, "lost_events": lost, "verdicts": verdicts,
            "cpu_share_loaded": load_share, "cpu_share_idle": idle_share,
            "rss_mib": rss, "rss_peak_mib": hwm, "rss_idle_mib": idle_rss, "within_budget": within,
        });
        fs::write(path, serde_json::to_string_pretty(&v).unwrap()).unwrap();
    }
}

//! Pieces the benchmarks share: the conditions compared in one run, the
//! bpftrace peer, medians.

use std::{
    fmt,
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
    let mut child = crate::die_with_parent(&mut Command::new("bpftrace"))
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

/// Runs `work` on CPU 0, and so do the processes it starts; on a 2-core
/// machine a parent and child bouncing between CPUs made rounds differ by 10 %.
pub fn on_one_cpu<T>(work: impl FnOnce() -> T) -> T {
    // SAFETY: plain sched_{get,set}affinity(2) on the calling thread; the
    // old mask is restored afterwards.
    unsafe {
        let mut old: libc::cpu_set_t = std::mem::zeroed();
        libc::sched_getaffinity(0, size_of::<libc::cpu_set_t>(), &mut old);
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(0, &mut set);
        libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set);
        let result = work();
        libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &old);
        result
    }
}

/// CPU time the whole machine spent busy so far (user, system, irq and
/// softirq over all CPUs; not idle, iowait or steal), in seconds. Per unit
/// of work it is the work's full cost, the tracer's programs and userspace
/// included, without the idle time a latency-bound loop also has.
pub fn busy_cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/stat").expect("/proc/stat");
    let ticks: Vec<f64> = stat.lines().next().unwrap_or_default().split_whitespace().skip(1).map(|v| v.parse().unwrap_or(0.0)).collect();
    let at = |i: usize| ticks.get(i).copied().unwrap_or(0.0);
    // user nice system idle iowait irq softirq steal
    let busy = at(0) + at(1) + at(2) + at(5) + at(6);
    // SAFETY: sysconf has no preconditions.
    busy / unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64
}

/// Keeps the kernel's BPF run-time statistics on while it lives
/// (`BPF_ENABLE_STATS`, 5.8+): every program's `run_time_ns` and `run_cnt`
/// count, at the cost of two clock reads per run. An fd rather than the
/// `kernel.bpf_stats_enabled` sysctl, so a benchmark that dies leaves them
/// off.
pub struct BpfStats {
    /// Closing it turns the statistics off again.
    _enabled: std::os::fd::OwnedFd,
}

impl BpfStats {
    pub fn enable() -> std::io::Result<Self> {
        use std::os::fd::FromRawFd;
        const BPF_ENABLE_STATS: libc::c_long = 32;
        // union bpf_attr's enable_stats: { __u32 type } with type
        // BPF_STATS_RUN_TIME (0); the rest must be zero.
        let attr = [0u32; 2];
        // SAFETY: bpf(2) with a zeroed attribute of the size passed.
        let fd = unsafe { libc::syscall(libc::SYS_bpf, BPF_ENABLE_STATS, attr.as_ptr(), size_of_val(&attr)) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: a new fd the kernel just returned, owned by nobody else.
        Ok(Self { _enabled: unsafe { std::os::fd::OwnedFd::from_raw_fd(fd as i32) } })
    }
}

/// What one process's BPF programs and its own threads cost so far.
#[derive(Clone, Default, Debug, PartialEq)]
pub struct ProcessCost {
    /// Time the programs it holds ran in the kernel ([`BpfStats`] on).
    pub bpf_ns: u64,
    /// How many times they ran.
    pub bpf_runs: u64,
    /// CPU time of its threads (its userspace and the syscalls it makes).
    pub cpu_ns: u64,
    /// The same BPF time and runs program by program, by id.
    pub programs: Vec<ProgramCost>,
}

/// One program's share of [`ProcessCost`].
#[derive(Clone, Default, Debug, PartialEq)]
pub struct ProgramCost {
    pub id: u64,
    /// The name the kernel keeps (its first 15 bytes), or `prog ID`.
    pub name: String,
    pub ns: u64,
    pub runs: u64,
}

impl ProcessCost {
    /// Read from /proc: every program fd's fdinfo (each program once, by
    /// id; link fds name a program but carry no counts) and every thread's
    /// schedstat.
    pub fn of(pid: u32) -> Self {
        let mut cost = Self::default();
        let mut programs = std::collections::HashSet::new();
        for entry in std::fs::read_dir(format!("/proc/{pid}/fdinfo")).into_iter().flatten().flatten() {
            let Ok(text) = std::fs::read_to_string(entry.path()) else { continue };
            if let (Some(id), Some(ns), Some(runs)) =
                (fdinfo_field(&text, "prog_id"), fdinfo_field(&text, "run_time_ns"), fdinfo_field(&text, "run_cnt"))
                && programs.insert(id)
            {
                cost.bpf_ns += ns;
                cost.bpf_runs += runs;
                let name = program_name(id).unwrap_or_else(|| format!("prog {id}"));
                cost.programs.push(ProgramCost { id, name, ns, runs });
            }
        }
        cost.programs.sort_by(|a, b| a.name.cmp(&b.name).then(a.id.cmp(&b.id)));
        for entry in std::fs::read_dir(format!("/proc/{pid}/task")).into_iter().flatten().flatten() {
            // schedstat: time on CPU (ns), time waiting, timeslices.
            let on_cpu = std::fs::read_to_string(entry.path().join("schedstat"))
                .ok()
                .and_then(|t| t.split_whitespace().next().and_then(|v| v.parse::<u64>().ok()));
            cost.cpu_ns += on_cpu.unwrap_or(0);
        }
        cost
    }

    /// What was spent between `earlier` and this reading.
    pub fn since(&self, earlier: &Self) -> Self {
        let programs = self
            .programs
            .iter()
            .map(|p| {
                let before = earlier.programs.iter().find(|e| e.id == p.id);
                ProgramCost {
                    id: p.id,
                    name: p.name.clone(),
                    ns: p.ns.saturating_sub(before.map_or(0, |e| e.ns)),
                    runs: p.runs.saturating_sub(before.map_or(0, |e| e.runs)),
                }
            })
            .collect();
        Self {
            bpf_ns: self.bpf_ns.saturating_sub(earlier.bpf_ns),
            bpf_runs: self.bpf_runs.saturating_sub(earlier.bpf_runs),
            cpu_ns: self.cpu_ns.saturating_sub(earlier.cpu_ns),
            programs,
        }
    }
}

/// A program's name by id: `BPF_PROG_GET_FD_BY_ID`, then
/// `BPF_OBJ_GET_INFO_BY_FD` (root). `struct bpf_prog_info` is UAPI: its
/// `name[16]` is at byte 64 on every kernel that has it (4.15+).
pub fn program_name(id: u64) -> Option<String> {
    const BPF_PROG_GET_FD_BY_ID: libc::c_long = 13;
    const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;
    // { prog_id, next_id, open_flags }
    let by_id = [u32::try_from(id).ok()?, 0, 0];
    // SAFETY: bpf(2) with an attribute of the size passed.
    let fd = unsafe { libc::syscall(libc::SYS_bpf, BPF_PROG_GET_FD_BY_ID, by_id.as_ptr(), size_of_val(&by_id)) };
    if fd < 0 {
        return None;
    }
    // SAFETY: a new fd the kernel just returned, owned by nobody else.
    let fd = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd as i32) };
    let mut info = [0u8; 80];
    // { bpf_fd, info_len, info }
    #[repr(C)]
    struct InfoAttr {
        bpf_fd: u32,
        info_len: u32,
        info: u64,
    }
    let attr = InfoAttr {
        bpf_fd: std::os::fd::AsRawFd::as_raw_fd(&fd) as u32,
        info_len: info.len() as u32,
        info: info.as_mut_ptr() as u64,
    };
    // SAFETY: the kernel writes at most info_len bytes into `info`.
    let ret = unsafe { libc::syscall(libc::SYS_bpf, BPF_OBJ_GET_INFO_BY_FD, &attr as *const InfoAttr, size_of::<InfoAttr>()) };
    if ret != 0 {
        return None;
    }
    let name = &info[64..80];
    let end = name.iter().position(|&b| b == 0).unwrap_or(name.len());
    Some(String::from_utf8_lossy(&name[..end]).into_owned())
}

/// A `name:\tvalue` line of an fdinfo file.
fn fdinfo_field(text: &str, name: &str) -> Option<u64> {
    text.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(':')?.trim().parse().ok())
}

pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

/// Throughput windows measured in run order, a baseline window between any
/// two others. This machine's throughput drifts by 10-20 % over tens of
/// seconds (host noise), more than the 2 % being measured, so each tracer
/// window is compared with the mean of the baselines right before and after
/// it, and the paired ratios are summarised by median and quartiles.
#[derive(Default)]
pub struct Windows {
    runs: Vec<(Condition, f64)>,
}

/// Paired ratios of one condition to its neighbouring baselines.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct RatioSummary {
    pub windows: usize,
    pub median: f64,
    pub p25: f64,
    pub p75: f64,
    /// 95 % confidence interval of the median (distribution-free: order
    /// statistics at n/2 -+ 0.98 sqrt(n)); wide when there are few windows.
    pub ci95_low: f64,
    pub ci95_high: f64,
}

/// `median [p25-p75]`, padded to the requested width.
impl fmt::Display for RatioSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&format!("{:.3} [{:.3}-{:.3}]", self.median, self.p25, self.p75))
    }
}

impl RatioSummary {
    /// Whether the loss is below `max_loss` (0.02 for 2 %) with 95 %
    /// confidence, above it with 95 % confidence, or neither.
    pub fn loss_below(&self, max_loss: f64) -> &'static str {
        // Below 6 windows even min..max covers the median less than 95 % of the time.
        if self.windows < 6 {
            "undecided"
        } else if self.ci95_low >= 1.0 - max_loss {
            "yes"
        } else if self.ci95_high < 1.0 - max_loss {
            "no"
        } else {
            "undecided"
        }
    }

    /// The confidence interval as `lo-hi`.
    pub fn ci95(&self) -> String {
        format!("{:.3}-{:.3}", self.ci95_low, self.ci95_high)
    }
}

/// Settling time after a tracer starts or stops, so its start-up and
/// teardown work falls outside the windows.
pub const SETTLE: Duration = Duration::from_millis(300);

/// The paired schedule: baseline, probe-tracer, baseline, bpftrace,
/// baseline, ... for `rounds` rounds, bpftrace only every `peer_every`-th
/// round (bpftrace takes seconds to start; probe-tracer's interval is what
/// needs the windows). `measure(condition, round)` measures one window;
/// `start` brings up the condition's tracer before its window, and `stop`
/// takes it down afterwards, given what the window measured.
pub fn run_paired<T, M>(
    rounds: usize,
    peer_every: usize,
    mut measure: impl FnMut(Condition, usize) -> M,
    mut start: impl FnMut(Condition) -> T,
    mut stop: impl FnMut(T, M, usize),
) {
    measure(Condition::Baseline, 0);
    for round in 0..rounds {
        let peer_round = round % peer_every.max(1) == 0;
        for condition in [Condition::ProbeTracer, Condition::Bpftrace] {
            if condition == Condition::Bpftrace && !peer_round {
                continue;
            }
            let tracer = start(condition);
            thread::sleep(SETTLE);
            let measured = measure(condition, round);
            stop(tracer, measured, round);
            thread::sleep(SETTLE);
            measure(Condition::Baseline, round);
        }
    }
}

impl Windows {
    pub fn push(&mut self, condition: Condition, rate: f64) {
        self.runs.push((condition, rate));
    }

    pub fn rates(&self, condition: Condition) -> Vec<f64> {
        self.runs.iter().filter(|(c, _)| *c == condition).map(|(_, r)| *r).collect()
    }

    pub fn paired_ratios(&self, condition: Condition) -> Vec<f64> {
        let mut ratios = Vec::new();
        for (i, (c, rate)) in self.runs.iter().enumerate() {
            if *c != condition || condition == Condition::Baseline {
                continue;
            }
            let before = self.runs[..i].iter().rev().find(|(c, _)| *c == Condition::Baseline);
            let after = self.runs[i + 1..].iter().find(|(c, _)| *c == Condition::Baseline);
            let base = match (before, after) {
                (Some((_, b)), Some((_, a))) => (a + b) / 2.0,
                (Some((_, b)), None) | (None, Some((_, b))) => *b,
                (None, None) => continue,
            };
            ratios.push(rate / base);
        }
        ratios
    }

    pub fn summary(&self, condition: Condition) -> Option<RatioSummary> {
        let mut r = self.paired_ratios(condition);
        if r.is_empty() {
            return None;
        }
        r.sort_by(|a, b| a.partial_cmp(b).unwrap());
        let n = r.len();
        let at = |q: f64| r[((n - 1) as f64 * q).round() as usize];
        // 1-based ranks of the interval's ends, clamped to the sample.
        let half_width = 0.98 * (n as f64).sqrt();
        let low = ((n as f64 / 2.0 - half_width).floor() as usize).clamp(1, n);
        let high = ((n as f64 / 2.0 + half_width).ceil() as usize + 1).clamp(1, n);
        Some(RatioSummary {
            windows: n,
            median: at(0.5),
            p25: at(0.25),
            p75: at(0.75),
            ci95_low: r[low - 1],
            ci95_high: r[high - 1],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fdinfo_fields_are_read_by_exact_name() {
        let prog = "pos:\t0\nflags:\t02000002\nprog_type:\t17\nprog_id:\t42\nrun_time_ns:\t1500\nrun_cnt:\t3\n";
        assert_eq!(fdinfo_field(prog, "prog_id"), Some(42));
        assert_eq!(fdinfo_field(prog, "run_time_ns"), Some(1500));
        assert_eq!(fdinfo_field(prog, "run_cnt"), Some(3));
        // A link names its program but has no counts.
        let link = "link_type:\traw_tracepoint\nlink_id:\t7\nprog_id:\t42\n";
        assert_eq!(fdinfo_field(link, "run_time_ns"), None);
        assert_eq!(fdinfo_field(prog, "prog"), None);
    }

    #[test]
    fn ratios_are_paired_with_the_neighbouring_baselines() {
        let mut w = Windows::default();
        // Drift from 100 to 200: a tracer costing 10 % reads 0.90 in both
        // windows, though its raw rate rose with the drift.
        for (c, r) in [(Condition::Baseline, 100.0), (Condition::ProbeTracer, 99.0), (Condition::Baseline, 120.0),
            (Condition::Bpftrace, 110.0), (Condition::Baseline, 200.0), (Condition::ProbeTracer, 180.0), (Condition::Baseline, 200.0)]
        {
            w.push(c, r);
        }
        let ours = w.paired_ratios(Condition::ProbeTracer);
        assert_eq!(ours.len(), 2);
        assert!((ours[0] - 0.9).abs() < 1e-9 && (ours[1] - 0.9).abs() < 1e-9, "{ours:?}");
        assert_eq!(w.paired_ratios(Condition::Bpftrace), vec![110.0 / 160.0]);
        assert!(w.paired_ratios(Condition::Baseline).is_empty());
        let s = w.summary(Condition::ProbeTracer).unwrap();
        assert_eq!(s.windows, 2);
        assert!((s.median - 0.9).abs() < 1e-9);
        assert_eq!(format!("{s:>21}"), "  0.900 [0.900-0.900]");
    }

    #[test]
    fn the_median_interval_narrows_with_more_windows_and_decides_the_target() {
        // n ratios spread evenly from `low` to `low + 0.09`.
        let summary = |n: usize, low: f64| {
            let mut w = Windows::default();
            w.push(Condition::Baseline, 100.0);
            for i in 0..n {
                w.push(Condition::ProbeTracer, 100.0 * low + 9.0 * i as f64 / (n - 1) as f64);
                w.push(Condition::Baseline, 100.0);
            }
            w.summary(Condition::ProbeTracer).unwrap()
        };
        let few = summary(8, 0.95);
        let many = summary(100, 0.95);
        assert!(few.ci95_low <= few.median && few.median <= few.ci95_high);
        assert!(many.ci95_high - many.ci95_low < few.ci95_high - few.ci95_low, "{few:?} {many:?}");
        assert_eq!(few.loss_below(0.02), "undecided");
        assert_eq!(many.loss_below(0.02), "yes", "{many:?}");
        let lossy = summary(100, 0.90);
        assert_eq!(lossy.loss_below(0.02), "no", "{lossy:?}");
    }
}

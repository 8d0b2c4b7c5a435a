//! What a container's cgroup went through while a probe waited: CPU
//! throttling (`cpu.stat`), its CPU limit (`cpu.max`, or v1's
//! `cfs_quota_us`), and CPU and memory pressure (PSI's "some" totals).
//! Parsing is pure; reading goes through the live cgroup filesystem.
//!
//! The cgroup is the one of the process holding the probe's destination:
//! the listening socket on the probe's port in the network namespace that
//! owns the probe's address, found from the node's /proc (no API server).

use std::{
    fs,
    net::IpAddr,
    path::{Path, PathBuf},
};

use crate::network;

/// The cgroup of the process serving a probe's destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServingCgroup {
    /// A process holding the listening socket.
    pub pid: u32,
    /// The cgroup's path as the process sees it in the unified hierarchy
    /// (v2), or in the cpu controller's (v1).
    pub path: String,
    /// Where its `cpu.stat` and CPU limit are.
    pub cpu_dir: PathBuf,
    /// Where its `cpu.pressure` and `memory.pressure` are (cgroup v2: the
    /// same directory; v1 hybrid: the unified hierarchy's), if anywhere.
    pub psi_dir: Option<PathBuf>,
    /// The v1 cpu controller's file names and units.
    pub v1: bool,
}

/// One reading of a cgroup's counters, cumulative since it was created.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CpuReading {
    /// CLOCK_MONOTONIC, as the kernel's event timestamps.
    pub ts_ns: u64,
    pub throttled_us: u64,
    pub nr_throttled: u64,
    pub nr_periods: u64,
    /// PSI "some" totals; `None` without PSI.
    pub cpu_some_us: Option<u64>,
    pub memory_some_us: Option<u64>,
    /// The CPU limit in CPUs (quota over period); `None` when unlimited.
    pub cpu_limit: Option<f64>,
}

/// `cpu.stat`'s throttling counters: (throttled µs, throttled periods,
/// periods). v2 says `throttled_usec`, v1 `throttled_time` in ns.
pub fn parse_cpu_stat(text: &str) -> Option<(u64, u64, u64)> {
    let (mut throttled_us, mut nr_throttled, mut nr_periods) = (None, 0, 0);
    for line in text.lines() {
        let mut cols = line.split_whitespace();
        let (Some(key), Some(value)) = (cols.next(), cols.next().and_then(|v| v.parse::<u64>().ok())) else { continue };
        match key {
            "throttled_usec" => throttled_us = Some(value),
            "throttled_time" => throttled_us = Some(value / 1000),
            "nr_throttled" => nr_throttled = value,
            "nr_periods" => nr_periods = value,
            _ => {}
        }
    }
    Some((throttled_us?, nr_throttled, nr_periods))
}

/// A PSI file's "some" line's `total=` (µs).
pub fn parse_pressure_some(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("some "))?;
    line.split_whitespace().find_map(|f| f.strip_prefix("total=")).and_then(|t| t.parse().ok())
}

/// v2's `cpu.max` ("max 100000", "20000 100000") in CPUs.
pub fn parse_cpu_max(text: &str) -> Option<f64> {
    let mut cols = text.split_whitespace();
    let quota = cols.next()?.parse::<f64>().ok()?;
    let period = cols.next()?.parse::<f64>().ok().filter(|p| *p > 0.0)?;
    Some(quota / period)
}

/// v1's quota and period files (a quota of -1 is no limit).
pub fn cpu_limit_v1(quota: &str, period: &str) -> Option<f64> {
    let quota = quota.trim().parse::<i64>().ok().filter(|q| *q > 0)? as f64;
    let period = period.trim().parse::<f64>().ok().filter(|p| *p > 0.0)?;
    Some(quota / period)
}

/// One cgroup's counter files, kept open: a sample is three reads at
/// offset 0 (an open and a close cost ten times a read).
struct OpenFiles {
    stat: fs::File,
    cpu_pressure: Option<fs::File>,
    memory_pressure: Option<fs::File>,
    /// When the limit was last read (monotonic ns; 0: never).
    limit_read_ns: u64,
    cpu_limit: Option<f64>,
}

/// Cgroups kept open at once, at most (the sampler holds 64).
const OPEN_MAX: usize = 128;
/// The CPU limit is read again when older than this: a window's reading
/// at its end must see a limit set (or resized in place) during it.
const LIMIT_FRESH_NS: u64 = 500_000_000;

fn read_at(file: &fs::File) -> Option<String> {
    use std::os::unix::fs::FileExt;
    let mut buf = [0u8; 2048];
    let n = file.read_at(&mut buf, 0).ok()?;
    String::from_utf8(buf[..n].to_vec()).ok()
}

fn cpu_limit_of(c: &ServingCgroup) -> Option<f64> {
    if c.v1 {
        let quota = fs::read_to_string(c.cpu_dir.join("cpu.cfs_quota_us")).unwrap_or_default();
        let period = fs::read_to_string(c.cpu_dir.join("cpu.cfs_period_us")).unwrap_or_default();
        cpu_limit_v1(&quota, &period)
    } else {
        fs::read_to_string(c.cpu_dir.join("cpu.max")).ok().and_then(|t| parse_cpu_max(&t))
    }
}

/// Reads a cgroup's counters now; `None` when it is gone.
pub fn read(c: &ServingCgroup) -> Option<CpuReading> {
    use std::{
        collections::HashMap,
        sync::{Mutex, OnceLock},
    };
    static OPEN: OnceLock<Mutex<HashMap<PathBuf, OpenFiles>>> = OnceLock::new();
    let mut open = OPEN.get_or_init(Default::default).lock().ok()?;
    if !open.contains_key(&c.cpu_dir) {
        if open.len() >= OPEN_MAX {
            open.clear();
        }
        let stat = fs::File::open(c.cpu_dir.join("cpu.stat")).ok()?;
        let pressure = |name: &str| c.psi_dir.as_ref().and_then(|d| fs::File::open(d.join(name)).ok());
        let files = OpenFiles { stat, cpu_pressure: pressure("cpu.pressure"), memory_pressure: pressure("memory.pressure"), limit_read_ns: 0, cpu_limit: None };
        open.insert(c.cpu_dir.clone(), files);
    }
    let files = open.get_mut(&c.cpu_dir)?;
    let ts_ns = crate::output::Clock::monotonic_now_ns();
    // A removed cgroup's open files read as errors.
    let Some((throttled_us, nr_throttled, nr_periods)) = read_at(&files.stat).and_then(|t| parse_cpu_stat(&t)) else {
        open.remove(&c.cpu_dir);
        return None;
    };
    if files.limit_read_ns == 0 || ts_ns.saturating_sub(files.limit_read_ns) >= LIMIT_FRESH_NS {
        files.cpu_limit = cpu_limit_of(c);
        files.limit_read_ns = ts_ns;
    }
    let pressure = |f: &Option<fs::File>| f.as_ref().and_then(read_at).and_then(|t| parse_pressure_some(&t));
    Some(CpuReading {
        ts_ns,
        throttled_us,
        nr_throttled,
        nr_periods,
        cpu_some_us: pressure(&files.cpu_pressure),
        memory_some_us: pressure(&files.memory_pressure),
        cpu_limit: files.cpu_limit,
    })
}

/// Processes looked at for the socket's holder, at most.
const PROCESSES_MAX: usize = 100_000;
/// File descriptors looked at per process, at most.
const FDS_MAX: usize = 65_536;

/// The cgroup of a process that holds the socket listening on `port` for
/// `addr` in the network namespace that owns `addr`.
pub fn serving(addr: IpAddr, port: u16) -> Option<ServingCgroup> {
    let ns_dir = network::namespace_dir(addr)?;
    let netns = fs::read_link(ns_dir.join("ns/net")).ok()?;
    let mut inodes = Vec::new();
    for table in ["net/tcp", "net/tcp6"] {
        let text = fs::read_to_string(ns_dir.join(table)).unwrap_or_default();
        inodes.extend(network::parse_tcp_listener_inodes(&text).into_iter().filter(|(l, _)| {
            l.port == port && (l.addr == addr || l.addr.is_unspecified())
        }));
    }
    let wanted: Vec<u64> = inodes.iter().map(|(_, ino)| *ino).collect();
    if wanted.is_empty() {
        return None;
    }
    let pid = fs::read_dir("/proc").ok()?.flatten().take(PROCESSES_MAX).find_map(|entry| {
        let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
        let dir = entry.path();
        if fs::read_link(dir.join("ns/net")).ok()? != netns {
            return None;
        }
        network::fd_holding(&dir, "socket", &wanted, FDS_MAX).map(|_| pid)
    })?;
    cgroup_of_pid(pid)
}

/// Where a live process's cgroup keeps its CPU counters.
pub fn cgroup_of_pid(pid: u32) -> Option<ServingCgroup> {
    cgroup_of(pid, &fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?, Path::new("/sys/fs/cgroup"))
}

/// Where a process's cgroup keeps its CPU counters, from its
/// `/proc/PID/cgroup` and the cgroup filesystem's root.
pub fn cgroup_of(pid: u32, proc_cgroup: &str, root: &Path) -> Option<ServingCgroup> {
    let mut unified = None;
    let mut cpu_v1 = None;
    for line in proc_cgroup.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(_), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next()) else { continue };
        if controllers.is_empty() {
            unified = Some(path.to_string());
        } else if controllers.split(',').any(|c| c == "cpu") {
            cpu_v1 = Some((controllers.to_string(), path.to_string()));
        }
    }
    let inside = |base: PathBuf, path: &str| base.join(path.trim_start_matches('/'));
    if let Some((controllers, path)) = cpu_v1 {
        // v1 (or hybrid): the cpu controller's own hierarchy; PSI lives in
        // the unified one, where mounted.
        let base = [root.join(&controllers), root.join("cpu"), root.join("cpu,cpuacct")].into_iter().find(|b| b.is_dir())?;
        let psi_dir = unified.as_deref().map(|u| inside(root.join("unified"), u)).filter(|d| d.join("cpu.pressure").exists());
        return Some(ServingCgroup { pid, cpu_dir: inside(base, &path), path, psi_dir, v1: true });
    }
    let path = unified?;
    let dir = inside(root.to_path_buf(), &path);
    let psi_dir = dir.join("cpu.pressure").exists().then(|| dir.clone());
    Some(ServingCgroup { pid, path, cpu_dir: dir, psi_dir, v1: false })
}

/// Whether two readings are of one cgroup's life (not a new cgroup at the
/// same path, whose counters restarted).
pub fn same_life(before: &CpuReading, after: &CpuReading) -> bool {
    after.nr_periods >= before.nr_periods && after.throttled_us >= before.throttled_us
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_cpu_stat_in_both_versions() {
        let v2 = "usage_usec 1000\nuser_usec 600\nsystem_usec 400\nnr_periods 50\nnr_throttled 42\nthrottled_usec 730000\n";
        assert_eq!(parse_cpu_stat(v2), Some((730_000, 42, 50)));
        let v1 = "nr_periods 10\nnr_throttled 9\nthrottled_time 900000000\n";
        assert_eq!(parse_cpu_stat(v1), Some((900_000, 9, 10)));
        assert_eq!(parse_cpu_stat("usage_usec 5\n"), None, "no cpu controller");
    }

    #[test]
    fn parses_limits_and_pressure() {
        assert_eq!(parse_cpu_max("20000 100000\n"), Some(0.2));
        assert_eq!(parse_cpu_max("max 100000\n"), None);
        assert_eq!(cpu_limit_v1("-1\n", "100000\n"), None);
        assert_eq!(cpu_limit_v1("1000\n", "100000\n"), Some(0.01));
        let psi = "some avg10=1.00 avg60=0.50 avg300=0.10 total=123456\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=99\n";
        assert_eq!(parse_pressure_some(psi), Some(123_456));
    }

    #[test]
    fn finds_the_cpu_directory_on_v2_and_on_a_v1_hybrid() {
        let root = std::env::temp_dir().join(format!("pt-cgroup-{}", std::process::id()));
        let v2 = root.join("v2");
        fs::create_dir_all(v2.join("kubepods/pod1/c1")).unwrap();
        fs::write(v2.join("kubepods/pod1/c1/cpu.pressure"), "some total=1\n").unwrap();
        let c = cgroup_of(7, "0::/kubepods/pod1/c1\n", &v2).unwrap();
        assert_eq!((c.cpu_dir, c.psi_dir, c.v1), (v2.join("kubepods/pod1/c1"), Some(v2.join("kubepods/pod1/c1")), false));

        let v1 = root.join("v1");
        fs::create_dir_all(v1.join("cpu,cpuacct/kubepods/c2")).unwrap();
        fs::create_dir_all(v1.join("unified/kubepods/c2")).unwrap();
        fs::write(v1.join("unified/kubepods/c2/cpu.pressure"), "some total=1\n").unwrap();
        let text = "12:pids:/kubepods/c2\n4:cpu,cpuacct:/kubepods/c2\n1:name=systemd:/kubepods/c2\n0::/kubepods/c2\n";
        let c = cgroup_of(8, text, &v1).unwrap();
        assert_eq!((c.cpu_dir, c.psi_dir, c.v1), (v1.join("cpu,cpuacct/kubepods/c2"), Some(v1.join("unified/kubepods/c2")), true));
        assert_eq!(c.path, "/kubepods/c2");
        fs::remove_dir_all(&root).unwrap();
    }
}

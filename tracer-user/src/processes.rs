//! Facts about processes, cgroups and the container runtime that explain an
//! exec-probe verdict: which pids limit was hit, whether a container's init
//! is still alive. Read from procfs, cgroupfs and runc's state files; behind
//! a trait so the diagnosis logic is tested with recorded values.

use std::{
    collections::HashMap,
    fs,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use serde::Serialize;

use crate::cgroup_cpu::{self, CpuReading, ServingCgroup};

/// Where runc keeps `<id>/state.json` under the usual runtimes.
pub const DEFAULT_RUNTIME_ROOTS: &[&str] = &[
    "/run/runc",
    "/run/containerd/runc/k8s.io",
    "/run/containerd/runc/default",
    "/run/containerd/runc/moby",
    "/run/docker/runtime-runc/moby",
    // crun's own default (CRI-O): <id>/status, not state.json.
    "/run/crun",
];

/// A pids cgroup level and its counters at the moment they were read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PidsLimit {
    /// The cgroup directory whose limit applies.
    pub cgroup: String,
    pub current: u64,
    /// `None` when this level has no limit (`max`).
    pub max: Option<u64>,
}

impl PidsLimit {
    pub fn exhausted(&self) -> bool {
        self.max.is_some_and(|max| self.current >= max)
    }
}

/// The node-wide task limit and usage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ThreadCount {
    pub threads: u64,
    pub threads_max: u64,
}

/// What runc's state file says about a container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerState {
    pub id: String,
    pub init_pid: u32,
    /// The init process is still the one runc started (same start time).
    pub init_alive: bool,
    /// cgroup directory of the container's pids controller, if recorded.
    pub pids_cgroup: Option<PathBuf>,
}

/// A memory cgroup's usage and limit, read when an OOM kill is seen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MemoryUsage {
    /// The cgroup directory whose limit applies (or the victim's own).
    pub cgroup: String,
    pub usage_bytes: u64,
    /// High-water mark where the kernel keeps one (memory.peak,
    /// memory.max_usage_in_bytes): usage drops as soon as the victim dies.
    pub peak_bytes: Option<u64>,
    /// `None`: no limit at this level or above.
    pub limit_bytes: Option<u64>,
    /// OOM kills the cgroup has counted (memory.events `oom_kill`, v1
    /// memory.oom_control `oom_kill`): proof of a cgroup OOM on kernels
    /// without a usage high-water mark.
    pub oom_kills: Option<u64>,
}

pub trait ProcessFacts {
    /// The pids limit that applies to `pid` (or, once it is gone, to the
    /// cgroup `cgroup_id` or the container's recorded cgroup): the first
    /// level, walking up, that is exhausted, else the nearest one with a limit.
    fn pids_limit(&self, pid: u32, cgroup_id: u64, container: Option<&ContainerState>) -> Option<PidsLimit>;
    fn thread_count(&self) -> Option<ThreadCount>;
    /// runc's state for container `id` under one of `roots`.
    fn container_state(&self, roots: &[PathBuf], id: &str) -> Option<ContainerState>;
    /// The container whose init process is `pid`, from runc's state files.
    fn container_by_init_pid(&self, roots: &[PathBuf], pid: u32) -> Option<ContainerState>;
    /// Path of the cgroup v2 directory with id `cgroup_id`.
    fn cgroup_path(&self, cgroup_id: u64) -> Option<String>;
    /// Memory usage and the limit that applies to `pid` (or to `other_pid`,
    /// or the cgroup `cgroup_id`, once it is gone).
    fn memory_usage(&self, pid: u32, other_pid: u32, cgroup_id: u64) -> Option<MemoryUsage>;
    /// A live process's whole argv (`/proc/PID/cmdline`).
    fn cmdline(&self, pid: u32) -> Option<Vec<String>>;
    /// The last error the runtime wrote to its `--log` file at or after
    /// `since` (runc's and crun's JSON lines `{"level":"error","msg":...,
    /// "time":...}`, or plain text). The file is shared by every exec into
    /// the container, and containerd's shim reports its last error even
    /// when it is an old one: lines stamped before `since` are not this
    /// call's.
    fn runtime_log_error(&self, path: &str, since: SystemTime) -> Option<String>;
    /// Containers under `roots` whose state names an init that is gone.
    fn stopped_containers(&self, roots: &[PathBuf]) -> Vec<ContainerState>;
    /// Whether `pid` shares pid 1's pid and mount namespaces (the node's
    /// runtime does; a `runc` inside a container, hostPID or not, does not);
    /// `None` once it is gone.
    fn in_host_namespaces(&self, pid: u32) -> Option<bool>;
    /// Where `pid`'s cgroup keeps its CPU counters, and those counters now
    /// (`now_ns` is the caller's clock: recorded views answer with what
    /// they had then).
    fn cpu_of(&self, pid: u32, now_ns: u64) -> Option<(ServingCgroup, CpuReading)>;
    /// That cgroup's counters now; `None` once it is gone.
    fn cpu_reading(&self, cgroup: &ServingCgroup, now_ns: u64) -> Option<CpuReading>;
    /// The pipes (their inodes) a live `pid`'s standard output and error
    /// write to.
    fn output_pipes(&self, pid: u32) -> Vec<u64>;
    /// Processes of the cgroup directory `cgroup_dir` (its `cgroup.procs`),
    /// `except` aside, that hold one of `pipes` open: a few, bounded.
    fn pipe_holders(&self, cgroup_dir: &Path, pipes: &[u64], except: u32) -> Vec<PipeHolder>;
}

/// A process holding a pipe open, and by which descriptor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PipeHolder {
    pub pid: u32,
    pub comm: String,
    pub fd: u32,
}

/// Processes of a cgroup, and descriptors of each, looked at for a pipe's
/// holders at most; holders named at most.
const PIPE_PROCS_MAX: usize = 1024;
const PIPE_FDS_MAX: usize = 1024;
const PIPE_HOLDERS_MAX: usize = 4;

/// `pipe:[12345]` (a descriptor's link in /proc) -> 12345.
fn pipe_inode(link: &Path) -> Option<u64> {
    crate::network::fd_link_inode(link, "pipe")
}

/// The last error in a runtime's log text: runc and crun write JSON lines
/// with a level; anything else counts as the last non-empty line.
pub fn last_runtime_error(text: &str, since: SystemTime) -> Option<String> {
    // runc stamps whole seconds.
    let since = since.checked_sub(Duration::from_secs(1)).unwrap_or(UNIX_EPOCH);
    text.lines().rev().find_map(|line| {
        let line = line.trim();
        if line.is_empty() {
            return None;
        }
        match serde_json::from_str::<serde_json::Value>(line) {
            Ok(v) if v.is_object() => {
                let stamped = v["time"].as_str().and_then(|t| humantime::parse_rfc3339_weak(t.trim_end_matches('Z')).ok());
                if stamped.is_some_and(|t| t < since) {
                    return None;
                }
                let level = v["level"].as_str().unwrap_or("error");
                matches!(level, "error" | "fatal" | "panic").then(|| v["msg"].as_str().map(str::to_string)).flatten()
            }
            _ => Some(line.to_string()),
        }
    })
}

/// Most cgroup ids the path cache holds before it starts over.
pub const MAX_CGROUP_PATHS: usize = 65536;

/// The real host: procfs, cgroupfs, runc state files. Clones share the
/// cgroup path cache.
#[derive(Default, Clone)]
pub struct LiveProcesses {
    /// cgroup id -> path (None: not found), filled by walking the cgroup2
    /// tree once per miss; at most MAX_CGROUP_PATHS entries.
    cgroup_paths: Arc<Mutex<HashMap<u64, Option<String>>>>,
}

impl ProcessFacts for LiveProcesses {
    fn pids_limit(&self, pid: u32, cgroup_id: u64, container: Option<&ContainerState>) -> Option<PidsLimit> {
        let mut candidates: Vec<PathBuf> = Vec::new();
        if let Ok(text) = fs::read_to_string(format!("/proc/{pid}/cgroup")) {
            candidates.extend(pids_dirs_from_proc_cgroup(&text));
        }
        if let Some(dir) = container.and_then(|c| c.pids_cgroup.clone()) {
            candidates.push(dir);
        }
        if let Some(path) = self.cgroup_path(cgroup_id) {
            candidates.push(PathBuf::from(path));
        }
        candidates.iter().find_map(|dir| limit_walking_up(dir))
    }

    fn thread_count(&self) -> Option<ThreadCount> {
        let loadavg = fs::read_to_string("/proc/loadavg").ok()?;
        // "0.00 0.01 0.05 1/123 4567": running/total scheduling entities.
        let total = loadavg.split_whitespace().nth(3)?.split('/').nth(1)?.parse().ok()?;
        let max = fs::read_to_string("/proc/sys/kernel/threads-max").ok()?.trim().parse().ok()?;
        Some(ThreadCount { threads: total, threads_max: max })
    }

    fn container_state(&self, roots: &[PathBuf], id: &str) -> Option<ContainerState> {
        if id.is_empty() || id.contains('/') {
            return None;
        }
        roots.iter().find_map(|root| {
            read_state(&root.join(id).join("state.json")).or_else(|| read_crun_status(&root.join(id).join("status")))
        })
    }

    fn container_by_init_pid(&self, roots: &[PathBuf], pid: u32) -> Option<ContainerState> {
        roots.iter().find_map(|root| {
            fs::read_dir(root).ok()?.flatten().find_map(|entry| {
                read_state(&entry.path().join("state.json")).filter(|s| s.init_pid == pid)
            })
        })
    }

    fn cgroup_path(&self, cgroup_id: u64) -> Option<String> {
        if cgroup_id == 0 {
            return None;
        }
        let mut cache = self.cgroup_paths.lock().ok()?;
        if let Some(p) = cache.get(&cgroup_id) {
            return p.clone();
        }
        // Bounded: each walk re-caches what still exists, so clearing
        // forgets only removed cgroups (and ids that were never found).
        if cache.len() >= MAX_CGROUP_PATHS {
            cache.clear();
        }
        let root = cgroup2_mount()?;
        // Walk the tree, caching everything seen: later lookups are free.
        let mut stack = vec![root];
        let mut found = None;
        while let Some(dir) = stack.pop() {
            let Ok(meta) = fs::metadata(&dir) else { continue };
            let path = dir.to_string_lossy().into_owned();
            if meta.ino() == cgroup_id {
                found = Some(path.clone());
            }
            cache.insert(meta.ino(), Some(path));
            if let Ok(entries) = fs::read_dir(&dir) {
                stack.extend(entries.flatten().filter(|e| e.file_type().is_ok_and(|t| t.is_dir())).map(|e| e.path()));
            }
        }
        // An id the walk did not find is not walked for again (a flood of
        // unknown ids costs one walk each, once): remembered as unknown.
        if found.is_none() {
            cache.insert(cgroup_id, None);
        }
        found
    }

    fn memory_usage(&self, pid: u32, other_pid: u32, cgroup_id: u64) -> Option<MemoryUsage> {
        let mut dirs: Vec<PathBuf> = Vec::new();
        for p in [pid, other_pid] {
            if let Ok(text) = fs::read_to_string(format!("/proc/{p}/cgroup")) {
                dirs.extend(controller_dirs(&text, "memory"));
            }
        }
        if let Some(path) = self.cgroup_path(cgroup_id) {
            dirs.push(PathBuf::from(path));
        }
        dirs.iter().find_map(|d| memory_walking_up(d))
    }

    fn cmdline(&self, pid: u32) -> Option<Vec<String>> {
        let raw = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        let raw = raw.strip_suffix(&[0]).unwrap_or(&raw);
        (!raw.is_empty()).then(|| raw.split(|&b| b == 0).map(|a| String::from_utf8_lossy(a).into_owned()).collect())
    }

    fn runtime_log_error(&self, path: &str, since: SystemTime) -> Option<String> {
        use std::io::{Read, Seek, SeekFrom};
        let mut f = fs::File::open(path).ok()?;
        let len = f.metadata().ok()?.len();
        // Bounded: the tail only (the file grows with every failed exec).
        f.seek(SeekFrom::Start(len.saturating_sub(64 * 1024))).ok()?;
        let mut raw = Vec::new();
        f.take(64 * 1024).read_to_end(&mut raw).ok()?;
        last_runtime_error(&String::from_utf8_lossy(&raw), since)
    }

    fn in_host_namespaces(&self, pid: u32) -> Option<bool> {
        let ns = |p: &str, kind: &str| fs::read_link(format!("/proc/{p}/ns/{kind}")).ok();
        let mut same = true;
        for kind in ["pid", "mnt"] {
            let theirs = ns(&pid.to_string(), kind)?;
            same &= ns("1", kind).is_none_or(|host| host == theirs);
        }
        Some(same)
    }

    fn cpu_of(&self, pid: u32, _now_ns: u64) -> Option<(ServingCgroup, CpuReading)> {
        let cgroup = cgroup_cpu::cgroup_of_pid(pid)?;
        let reading = cgroup_cpu::read(&cgroup)?;
        Some((cgroup, reading))
    }

    fn cpu_reading(&self, cgroup: &ServingCgroup, _now_ns: u64) -> Option<CpuReading> {
        cgroup_cpu::read(cgroup)
    }

    fn output_pipes(&self, pid: u32) -> Vec<u64> {
        let mut pipes: Vec<u64> = [1, 2].iter().filter_map(|fd| pipe_inode(&fs::read_link(format!("/proc/{pid}/fd/{fd}")).ok()?)).collect();
        pipes.dedup();
        pipes
    }

    fn pipe_holders(&self, cgroup_dir: &Path, pipes: &[u64], except: u32) -> Vec<PipeHolder> {
        let mut holders = Vec::new();
        let Ok(procs) = fs::read_to_string(cgroup_dir.join("cgroup.procs")) else { return holders };
        for pid in procs.lines().filter_map(|l| l.trim().parse::<u32>().ok()).filter(|p| *p != except).take(PIPE_PROCS_MAX) {
            if let Some(fd) = crate::network::fd_holding(Path::new(&format!("/proc/{pid}")), "pipe", pipes, PIPE_FDS_MAX) {
                let comm = fs::read_to_string(format!("/proc/{pid}/comm")).map(|c| c.trim_end().to_string()).unwrap_or_default();
                holders.push(PipeHolder { pid, comm, fd });
                if holders.len() >= PIPE_HOLDERS_MAX {
                    break;
                }
            }
        }
        holders
    }

    fn stopped_containers(&self, roots: &[PathBuf]) -> Vec<ContainerState> {
        let mut out = Vec::new();
        for root in roots {
            let Ok(entries) = fs::read_dir(root) else { continue };
            // Bounded: a node runs far fewer containers.
            for entry in entries.flatten().take(4096) {
                if let Some(s) = read_state(&entry.path().join("state.json"))
                    .or_else(|| read_crun_status(&entry.path().join("status")))
                    && s.init_pid != 0
                    && !s.init_alive
                {
                    out.push(s);
                }
            }
        }
        out
    }
}

/// Directories of a process's cgroup for `controller`: its v1 hierarchy's
/// line first, then the v2 (`0::`) line.
fn controller_dirs(proc_cgroup: &str, controller: &str) -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    for line in proc_cgroup.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(_), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next()) else { continue };
        let rel = path.trim_start_matches('/');
        if controllers.split(',').any(|c| c == controller) {
            if let Some(mount) = v1_mount(controller) {
                dirs.insert(0, mount.join(rel));
            }
        } else if controllers.is_empty()
            && let Some(mount) = cgroup2_mount() {
                dirs.push(mount.join(rel));
            }
    }
    dirs
}

/// Reads usage and limit from `dir`, walking up to the first level with a
/// limit (v2 `memory.max`, v1 `memory.limit_in_bytes` below the "unlimited"
/// sentinel).
fn memory_walking_up(dir: &Path) -> Option<MemoryUsage> {
    let read = |d: &Path, f: &str| fs::read_to_string(d.join(f)).ok().map(|s| s.trim().to_string());
    let num = |v: Option<String>| v.and_then(|s| s.parse::<u64>().ok());
    let mut own: Option<MemoryUsage> = None;
    let mut cur = Some(dir);
    while let Some(d) = cur {
        let level = if let Some(usage) = num(read(d, "memory.current")) {
            Some(MemoryUsage {
                cgroup: d.to_string_lossy().into_owned(),
                usage_bytes: usage,
                peak_bytes: num(read(d, "memory.peak")),
                limit_bytes: num(read(d, "memory.max")),
                oom_kills: keyed(read(d, "memory.events"), "oom_kill"),
            })
        } else { num(read(d, "memory.usage_in_bytes")).map(|usage| MemoryUsage {
                cgroup: d.to_string_lossy().into_owned(),
                usage_bytes: usage,
                peak_bytes: num(read(d, "memory.max_usage_in_bytes")),
                // v1 says "unlimited" with a huge page-rounded number.
                limit_bytes: num(read(d, "memory.limit_in_bytes")).filter(|l| *l < 1 << 62),
                oom_kills: keyed(read(d, "memory.oom_control"), "oom_kill"),
            }) };
        match level {
            Some(l) if l.limit_bytes.is_some() => return Some(l),
            Some(l) if own.is_none() => own = Some(l),
            None if own.is_some() => break,
            _ => {}
        }
        cur = d.parent();
    }
    own
}

/// The value of `key` in a flat-keyed cgroup file ("oom_kill 3\n...").
fn keyed(text: Option<String>, key: &str) -> Option<u64> {
    text?.lines().find_map(|l| l.strip_prefix(key)?.trim().parse().ok())
}

/// Where the cgroup2 hierarchy is mounted (pure v2, or "unified" in hybrid).
fn cgroup2_mount() -> Option<PathBuf> {
    let mounts = fs::read_to_string("/proc/self/mounts").ok()?;
    mounts.lines().find_map(|line| {
        let mut cols = line.split_whitespace();
        let (_, dir, fstype) = (cols.next()?, cols.next()?, cols.next()?);
        (fstype == "cgroup2").then(|| PathBuf::from(dir))
    })
}

/// The v1 pids controller mount point, if any.
fn pids_v1_mount() -> Option<PathBuf> {
    v1_mount("pids")
}

/// Mount point of a cgroup v1 controller, if it is mounted.
fn v1_mount(controller: &str) -> Option<PathBuf> {
    let mounts = fs::read_to_string("/proc/self/mounts").ok()?;
    mounts.lines().find_map(|line| {
        let cols: Vec<&str> = line.split_whitespace().collect();
        (cols.len() > 3 && cols[2] == "cgroup" && cols[3].split(',').any(|o| o == controller))
            .then(|| PathBuf::from(cols[1]))
    })
}

/// Directories of a process's pids cgroup from `/proc/PID/cgroup`: the v1
/// `pids` controller line, else the v2 (`0::`) line.
fn pids_dirs_from_proc_cgroup(text: &str) -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = match (parts.next(), parts.next(), parts.next()) {
            (Some(a), Some(b), Some(c)) => (a, b, c),
            _ => continue,
        };
        let rel = path.trim_start_matches('/');
        if controllers.split(',').any(|c| c == "pids") {
            if let Some(mount) = pids_v1_mount() {
                dirs.insert(0, mount.join(rel));
            }
        } else if controllers.is_empty()
            && let Some(mount) = cgroup2_mount() {
                dirs.push(mount.join(rel));
            }
    }
    dirs
}

/// Reads pids.current/pids.max from `dir` up to the hierarchy's root.
fn limit_walking_up(dir: &Path) -> Option<PidsLimit> {
    let mut levels = Vec::new();
    let mut cur = Some(dir);
    while let Some(d) = cur {
        match (fs::read_to_string(d.join("pids.current")), fs::read_to_string(d.join("pids.max"))) {
            (Ok(current), Ok(max)) => levels.push(PidsLimit {
                cgroup: d.to_string_lossy().into_owned(),
                current: current.trim().parse().unwrap_or(0),
                max: max.trim().parse().ok(),
            }),
            // The root of a hierarchy has neither file: stop there.
            _ if !levels.is_empty() => break,
            _ => {}
        }
        cur = d.parent();
    }
    pick_limit(levels)
}

/// The exhausted level nearest the process, else the nearest limited one,
/// else the process's own level (unlimited).
pub fn pick_limit(levels: Vec<PidsLimit>) -> Option<PidsLimit> {
    if let Some(l) = levels.iter().find(|l| l.exhausted()) {
        return Some(l.clone());
    }
    if let Some(l) = levels.iter().find(|l| l.max.is_some()) {
        return Some(l.clone());
    }
    levels.into_iter().next()
}

/// What a runtime's state file records about a container: runc's
/// `state.json`, or crun's `status` (whose ID is its directory's name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedState {
    pub id: String,
    pub init_pid: u32,
    /// The init's start time as runc recorded it (`/proc/PID/stat` field 22).
    pub init_start: Option<u64>,
    /// runc: the pids controller's directory; crun: the cgroup, relative
    /// to the cgroup mount.
    pub cgroup: Option<String>,
}

impl RecordedState {
    /// The init is still the process the runtime started (same start time).
    fn init_alive(&self) -> bool {
        self.init_pid != 0 && process_start_time(self.init_pid).is_some_and(|t| self.init_start.is_none_or(|s| s == t))
    }
}

/// Largest state file read: runc's holds the container's config (a few
/// to tens of KB); anything larger is not one.
const STATE_FILE_MAX: u64 = 4 << 20;

fn read_bounded(path: &Path, max: u64) -> Option<String> {
    use std::io::Read;
    let mut text = String::new();
    fs::File::open(path).ok()?.take(max + 1).read_to_string(&mut text).ok()?;
    (text.len() as u64 <= max).then_some(text)
}

/// Parses runc's `state.json`.
pub fn parse_runc_state(text: &str) -> Option<RecordedState> {
    let v: serde_json::Value = serde_json::from_str(text).ok()?;
    let id = v["id"].as_str()?.to_string();
    // A pid that does not fit is no pid (truncated, it would name another process).
    let init_pid = u32::try_from(v["init_process_pid"].as_u64()?).ok()?;
    let init_start = v["init_process_start"].as_u64().or_else(|| v["init_process_start"].as_str()?.parse().ok());
    let paths = &v["cgroup_paths"];
    let cgroup = paths["pids"].as_str().or_else(|| paths[""].as_str()).map(str::to_string);
    Some(RecordedState { id, init_pid, init_start, cgroup })
}

/// Parses crun's `status` file (`/run/crun/<id>/status`: `pid`,
/// `process-start-time`, `cgroup-path` relative to the cgroup mount).
pub fn parse_crun_status(text: &str, id: &str) -> Option<RecordedState> {
    let v: serde_json::Value = serde_json::from_str(text).ok()?;
    let init_pid = u32::try_from(v["pid"].as_u64()?).ok()?;
    let init_start = v["process-start-time"].as_u64();
    let cgroup = v["cgroup-path"].as_str().map(|rel| rel.trim_start_matches('/').to_string());
    Some(RecordedState { id: id.to_string(), init_pid, init_start, cgroup })
}

/// Reads runc's `state.json`; checks the init is the same process runc
/// started by comparing its start time with `/proc/PID/stat`.
fn read_state(path: &Path) -> Option<ContainerState> {
    let s = parse_runc_state(&read_bounded(path, STATE_FILE_MAX)?)?;
    Some(ContainerState { init_alive: s.init_alive(), pids_cgroup: s.cgroup.map(PathBuf::from), id: s.id, init_pid: s.init_pid })
}

/// Reads crun's `status` file; its cgroup is placed under the pids
/// controller's mount.
fn read_crun_status(path: &Path) -> Option<ContainerState> {
    let id = path.parent()?.file_name()?.to_string_lossy().into_owned();
    let s = parse_crun_status(&read_bounded(path, STATE_FILE_MAX)?, &id)?;
    let pids_cgroup = s
        .cgroup
        .as_deref()
        .map(|rel| pids_v1_mount().or_else(cgroup2_mount).unwrap_or_else(|| PathBuf::from("/sys/fs/cgroup")).join(rel));
    Some(ContainerState { init_alive: s.init_alive(), pids_cgroup, id: s.id, init_pid: s.init_pid })
}

fn process_start_time(pid: u32) -> Option<u64> {
    start_time_from_stat(&fs::read(format!("/proc/{pid}/stat")).ok()?)
}

/// Field 22 of a `/proc/PID/stat` line (start time in clock ticks), robust
/// to spaces, parentheses and bytes that are not UTF-8 in comm (a process
/// names itself). None for a zombie: a container's init that died unreaped
/// (its parent does not reap) is dead all the same.
pub fn start_time_from_stat(stat: &[u8]) -> Option<u64> {
    let close = stat.iter().rposition(|&b| b == b')')?;
    // What follows comm is ASCII: from field 3 (state); start time is field 22.
    let after_comm = std::str::from_utf8(stat.get(close + 1..)?).ok()?;
    let mut fields = after_comm.split_whitespace();
    if matches!(fields.next(), Some("Z" | "X")) {
        return None;
    }
    fields.nth(18)?.parse().ok()
}

/// Fixed answers for tests.
#[derive(Debug, Clone, Default)]
pub struct StaticProcesses {
    pub pids: Option<PidsLimit>,
    pub threads: Option<ThreadCount>,
    pub containers: Vec<ContainerState>,
    pub cgroups: HashMap<u64, String>,
    pub memory: Option<MemoryUsage>,
    pub cmdlines: HashMap<u32, Vec<String>>,
    /// Runtime log path -> its whole text.
    pub runtime_logs: HashMap<String, String>,
    /// Pids in a container's namespaces (everything else is the host's).
    pub foreign_pids: Vec<u32>,
    /// Every pid's cgroup, and its counters: the reading whose time is the
    /// latest at or before the caller's.
    pub cpu: Option<(ServingCgroup, Vec<CpuReading>)>,
    /// Pid -> the pipes its output goes to.
    pub output_pipes: HashMap<u32, Vec<u64>>,
    /// Processes holding pipes (any cgroup).
    pub pipe_holders: Vec<(PipeHolder, u64)>,
}

impl ProcessFacts for StaticProcesses {
    fn pids_limit(&self, _pid: u32, _cgroup_id: u64, _c: Option<&ContainerState>) -> Option<PidsLimit> {
        self.pids.clone()
    }
    fn thread_count(&self) -> Option<ThreadCount> {
        self.threads
    }
    fn container_state(&self, _roots: &[PathBuf], id: &str) -> Option<ContainerState> {
        self.containers.iter().find(|c| c.id == id).cloned()
    }
    fn container_by_init_pid(&self, _roots: &[PathBuf], pid: u32) -> Option<ContainerState> {
        self.containers.iter().find(|c| c.init_pid == pid).cloned()
    }
    fn cgroup_path(&self, cgroup_id: u64) -> Option<String> {
        self.cgroups.get(&cgroup_id).cloned()
    }
    fn memory_usage(&self, _pid: u32, _other: u32, _cgroup_id: u64) -> Option<MemoryUsage> {
        self.memory.clone()
    }
    fn cmdline(&self, pid: u32) -> Option<Vec<String>> {
        self.cmdlines.get(&pid).cloned()
    }
    fn runtime_log_error(&self, path: &str, since: SystemTime) -> Option<String> {
        last_runtime_error(self.runtime_logs.get(path)?, since)
    }
    fn in_host_namespaces(&self, pid: u32) -> Option<bool> {
        Some(!self.foreign_pids.contains(&pid))
    }
    fn cpu_of(&self, _pid: u32, now_ns: u64) -> Option<(ServingCgroup, CpuReading)> {
        let (cgroup, _) = self.cpu.as_ref()?;
        Some((cgroup.clone(), self.cpu_reading(cgroup, now_ns)?))
    }
    fn cpu_reading(&self, _cgroup: &ServingCgroup, now_ns: u64) -> Option<CpuReading> {
        self.cpu.as_ref()?.1.iter().rev().find(|r| r.ts_ns <= now_ns).copied()
    }
    fn stopped_containers(&self, _roots: &[PathBuf]) -> Vec<ContainerState> {
        self.containers.iter().filter(|c| c.init_pid != 0 && !c.init_alive).cloned().collect()
    }
    fn output_pipes(&self, pid: u32) -> Vec<u64> {
        self.output_pipes.get(&pid).cloned().unwrap_or_default()
    }
    fn pipe_holders(&self, _cgroup_dir: &Path, pipes: &[u64], except: u32) -> Vec<PipeHolder> {
        self.pipe_holders.iter().filter(|(h, pipe)| h.pid != except && pipes.contains(pipe)).map(|(h, _)| h.clone()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn level(cgroup: &str, current: u64, max: Option<u64>) -> PidsLimit {
        PidsLimit { cgroup: cgroup.into(), current, max }
    }

    #[test]
    fn pipe_links_give_their_inode() {
        assert_eq!(pipe_inode(Path::new("pipe:[4026532]")), Some(4026532));
        assert_eq!(pipe_inode(Path::new("socket:[4026532]")), None);
        assert_eq!(crate::network::fd_link_inode(Path::new("socket:[4026532]"), "socket"), Some(4026532));
        assert_eq!(pipe_inode(Path::new("/dev/null")), None);
    }

    #[test]
    fn a_child_holding_this_processs_output_pipe_is_found_in_its_cgroup() {
        use std::process::{Command, Stdio};
        // This process's cgroup, wherever the machine mounts it.
        let Some(cgroup) = cgroup_cpu::cgroup_of_pid(std::process::id()) else { return };
        let host = LiveProcesses::default();
        let mut child = Command::new("sleep").arg("30").stdout(Stdio::piped()).stderr(Stdio::null()).spawn().unwrap();
        let pipes = host.output_pipes(child.id());
        assert_eq!(pipes.len(), 1, "stdout is a pipe, stderr /dev/null: {pipes:?}");
        let holders = host.pipe_holders(&cgroup.cpu_dir, &pipes, std::process::id());
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(holders.iter().any(|h| h.pid == child.id() && h.comm == "sleep" && h.fd == 1), "{holders:?}");
    }

    #[test]
    fn picks_the_exhausted_level_then_the_nearest_limit() {
        let pod = level("/pod/c", 3, Some(3));
        let slice = level("/pod", 10, Some(100));
        assert_eq!(pick_limit(vec![level("/pod/c", 3, None), pod.clone(), slice.clone()]), Some(pod));
        assert_eq!(pick_limit(vec![level("/c", 1, None), slice.clone()]), Some(slice));
        assert_eq!(pick_limit(vec![level("/c", 1, None)]).unwrap().cgroup, "/c");
        assert_eq!(pick_limit(vec![]), None);
    }

    #[test]
    fn proc_cgroup_prefers_the_v1_pids_line() {
        // Only meaningful where a pids v1 controller is mounted; the v2 line
        // must always produce a candidate when cgroup2 is mounted.
        let text = "8:pids:/c1\n0::/user.slice\n";
        let dirs = pids_dirs_from_proc_cgroup(text);
        if let Some(m) = pids_v1_mount() {
            assert_eq!(dirs[0], m.join("c1"));
        }
        if let Some(m) = cgroup2_mount() {
            assert!(dirs.contains(&m.join("user.slice")));
        }
    }

    #[test]
    fn memory_usage_of_this_process_is_readable() {
        // Whatever the hierarchy (v1, v2, hybrid), our own cgroup reports usage.
        let me = std::process::id();
        let m = LiveProcesses::default().memory_usage(me, me, 0).expect("memory cgroup");
        assert!(m.usage_bytes > 0, "{m:?}");
    }

    #[test]
    fn own_start_time_and_threads_are_readable() {
        assert!(process_start_time(std::process::id()).is_some());
        let t = LiveProcesses::default().thread_count().unwrap();
        assert!(t.threads > 0 && t.threads_max > t.threads);
    }

    #[test]
    fn an_unreaped_process_has_no_start_time() {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let stat = format!("/proc/{}/stat", child.id());
        for _ in 0..500 {
            if fs::read_to_string(&stat).is_ok_and(|s| s.contains(") Z ")) {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert!(fs::read_to_string(&stat).unwrap().contains(") Z "), "the child never became a zombie");
        assert_eq!(process_start_time(child.id()), None);
        child.wait().unwrap();
    }

    #[test]
    fn state_files_parse_without_the_filesystem() {
        let s = parse_runc_state(r#"{"id":"c1","init_process_pid":7,"init_process_start":"99","cgroup_paths":{"":"/sys/fs/cgroup/c1"}}"#).unwrap();
        assert_eq!(s, RecordedState { id: "c1".into(), init_pid: 7, init_start: Some(99), cgroup: Some("/sys/fs/cgroup/c1".into()) });
        // A pid that does not fit a pid is not truncated into another one.
        assert!(parse_runc_state(r#"{"id":"c1","init_process_pid":4294967297}"#).is_none());
        let s = parse_crun_status(r#"{"pid":7,"process-start-time":99,"cgroup-path":"/kubepods/c1"}"#, "c1").unwrap();
        assert_eq!(s.cgroup.as_deref(), Some("kubepods/c1"));
    }

    #[test]
    fn a_stat_line_gives_its_start_time_whatever_comm_holds() {
        let fields = " S 1 4242 4242 0 -1 4194560 100 0 0 0 0 0 0 0 20 0 1 0 5512 1000 10";
        assert_eq!(start_time_from_stat(format!("4242 (a) b (c)){fields}").as_bytes()), Some(5512));
        // A comm that is not UTF-8 (read as text, the file was unreadable
        // and the container's init taken for dead).
        let mut stat = b"4242 (\xff\xfe)".to_vec();
        stat.extend_from_slice(fields.as_bytes());
        assert_eq!(start_time_from_stat(&stat), Some(5512));
        // Found by the runtime_state fuzz target: slicing two bytes past
        // the ')' panicked inside a multi-byte character or past the end.
        assert_eq!(start_time_from_stat("4242 (a)\u{fffd} 1".as_bytes()), None);
        assert_eq!(start_time_from_stat(b"4242 (a)"), None);
    }

    #[test]
    fn reads_a_runc_state_file() {
        let dir = std::env::temp_dir().join(format!("pt-state-{}", std::process::id()));
        fs::create_dir_all(dir.join("c1")).unwrap();
        let me = std::process::id();
        let start = process_start_time(me).unwrap();
        fs::write(
            dir.join("c1/state.json"),
            format!(r#"{{"id":"c1","init_process_pid":{me},"init_process_start":{start},"cgroup_paths":{{"pids":"/sys/fs/cgroup/pids/c1"}}}}"#),
        )
        .unwrap();
        let host = LiveProcesses::default();
        let roots = vec![dir.clone()];
        let s = host.container_state(&roots, "c1").unwrap();
        assert!(s.init_alive);
        assert_eq!(s.pids_cgroup, Some(PathBuf::from("/sys/fs/cgroup/pids/c1")));
        assert_eq!(host.container_by_init_pid(&roots, me).unwrap().id, "c1");
        assert!(host.container_state(&roots, "../etc").is_none());
        fs::remove_dir_all(dir).unwrap();
    }
}

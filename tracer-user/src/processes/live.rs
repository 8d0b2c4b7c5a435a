//! [`LiveProcesses`]: the real host's answers, from procfs and cgroupfs:
//! the pids and memory limits walking up a cgroup, the cgroup mounts, the
//! pipes a process writes to and who holds them.

use std::{
    collections::HashMap,
    fs,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::SystemTime,
};

use super::{
    ContainerState, MemoryUsage, PidsLimit, PipeHolder, ProcessFacts, ThreadCount,
    state_files::{last_runtime_error, read_crun_status, read_state},
};
use crate::cgroup_cpu::{self, CpuReading, ServingCgroup};

/// Processes of a cgroup, and descriptors of each, looked at for a pipe's
/// holders at most; holders named at most.
const PIPE_PROCS_MAX: usize = 1024;
const PIPE_FDS_MAX: usize = 1024;
const PIPE_HOLDERS_MAX: usize = 4;

/// `pipe:[12345]` (a descriptor's link in /proc) -> 12345.
fn pipe_inode(link: &Path) -> Option<u64> {
    crate::network::fd_link_inode(link, "pipe")
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
pub(super) fn cgroup2_mount() -> Option<PathBuf> {
    let mounts = fs::read_to_string("/proc/self/mounts").ok()?;
    mounts.lines().find_map(|line| {
        let mut cols = line.split_whitespace();
        let (_, dir, fstype) = (cols.next()?, cols.next()?, cols.next()?);
        (fstype == "cgroup2").then(|| PathBuf::from(dir))
    })
}

/// The v1 pids controller mount point, if any.
pub(super) fn pids_v1_mount() -> Option<PathBuf> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use super::super::state_files::process_start_time;

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
}

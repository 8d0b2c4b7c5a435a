//! The container runtimes' own records, read and parsed: runc's
//! `state.json`, crun's `status`, `/proc/PID/stat`'s start time (is the
//! init still the one the runtime started?) and the runtime's log.

use std::{
    fs,
    path::{Path, PathBuf},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use super::{
    ContainerState,
    live::{cgroup2_mount, pids_v1_mount},
};

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
pub(super) fn read_state(path: &Path) -> Option<ContainerState> {
    let s = parse_runc_state(&read_bounded(path, STATE_FILE_MAX)?)?;
    Some(ContainerState { init_alive: s.init_alive(), pids_cgroup: s.cgroup.map(PathBuf::from), id: s.id, init_pid: s.init_pid })
}

/// Reads crun's `status` file; its cgroup is placed under the pids
/// controller's mount.
pub(super) fn read_crun_status(path: &Path) -> Option<ContainerState> {
    let id = path.parent()?.file_name()?.to_string_lossy().into_owned();
    let s = parse_crun_status(&read_bounded(path, STATE_FILE_MAX)?, &id)?;
    let pids_cgroup = s
        .cgroup
        .as_deref()
        .map(|rel| pids_v1_mount().or_else(cgroup2_mount).unwrap_or_else(|| PathBuf::from("/sys/fs/cgroup")).join(rel));
    Some(ContainerState { init_alive: s.init_alive(), pids_cgroup, id: s.id, init_pid: s.init_pid })
}

pub(super) fn process_start_time(pid: u32) -> Option<u64> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use super::super::{LiveProcesses, ProcessFacts};

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

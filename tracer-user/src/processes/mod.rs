//! Facts about processes, cgroups and the container runtime that explain an
//! exec-probe verdict: which pids limit was hit, whether a container's init
//! is still alive. Read from procfs, cgroupfs and runc's state files; behind
//! a trait so the diagnosis logic is tested with recorded values.
//!
//! Here: the [`ProcessFacts`] trait and what it answers with. `live` reads
//! the host (procfs, cgroupfs); `state_files` parses the runtimes' state
//! files and logs; `recorded` answers with fixed values (tests, replay).

use std::{
    path::{Path, PathBuf},
    time::SystemTime,
};

use serde::Serialize;

use crate::cgroup_cpu::{CpuReading, ServingCgroup};

mod live;
mod recorded;
mod state_files;

pub use live::{LiveProcesses, MAX_CGROUP_PATHS, pick_limit};
pub use recorded::StaticProcesses;
pub use state_files::{RecordedState, last_runtime_error, parse_crun_status, parse_runc_state, start_time_from_stat};

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

//! [`StaticProcesses`]: recorded answers, for tests and replays.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    time::SystemTime,
};

use super::{ContainerState, MemoryUsage, PidsLimit, PipeHolder, ProcessFacts, ThreadCount, last_runtime_error};
use crate::cgroup_cpu::{CpuReading, ServingCgroup};

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

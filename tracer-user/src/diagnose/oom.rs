//! OOM kills (incident 4): who was killed, in which cgroup and pod, how much
//! memory against which limit, and whether the victim was part of the
//! container runtime: a killed `containerd-shim` or `runc` loses its
//! containers' exit events, which leaves pods stuck in Terminating.
//!
//! The verdict waits for the victim's exit (which gives its name on kernels
//! whose tracepoint lacks it, and proves the kill) or for a short timeout.

use std::collections::HashMap;

use serde_json::json;

use super::{Report, Slot, Workload};
use crate::{
    events::{Body, Event, OomKill, Role},
    processes::{ProcessFacts, MemoryUsage},
    k8s::cgroup::ContainerRef,
};

/// Processes whose death breaks the runtime's bookkeeping.
pub const RUNTIME_COMPONENTS: &[&str] = &[
    "dockerd", "containerd", "containerd-shim", "containerd-shim-runc-v2", "containerd-shim-runc-v1", "runc",
    "crio", "conmon", "cri-dockerd",
];

/// How long to wait for the victim's exit before reporting without it.
const EXIT_WAIT_NS: u64 = 2_000_000_000;

#[derive(Debug, Clone)]
struct Pending {
    oom: Event,
    kill: OomKill,
    memory: Option<MemoryUsage>,
    cgroup: Option<String>,
}

pub struct OomCorrelator<H: ProcessFacts> {
    host: H,
    pending: HashMap<u32, Pending>,
}

impl<H: ProcessFacts> OomCorrelator<H> {
    pub fn new(host: H) -> Self {
        Self { host, pending: HashMap::new() }
    }

    /// OOM kills waiting for their victim's exit.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    pub fn host(&self) -> &H {
        &self.host
    }

    /// Handles OOM events and OOM victims' exits; `None` for other events.
    pub fn handle(&mut self, ev: &Event) -> Option<Vec<Report>> {
        match &ev.body {
            Body::OomKill(kill) => {
                // Read the cgroup now: usage drops as soon as the victim dies.
                let memory = self.host.memory_usage(kill.victim_pid, ev.pid, ev.cgroup_id);
                let cgroup = self.host.cgroup_path(ev.cgroup_id);
                self.pending.insert(kill.victim_pid, Pending { oom: ev.clone(), kill: kill.clone(), memory, cgroup });
                Some(Vec::new())
            }
            Body::Exit { role: Role::OomVictim, exit_code, .. } => {
                let p = self.pending.remove(&ev.pid)?;
                Some(vec![verdict(p, Some((ev, *exit_code)))])
            }
            _ => None,
        }
    }

    pub fn expire(&mut self, now_ns: u64) -> Vec<Report> {
        let due: Vec<u32> = self
            .pending
            .iter()
            .filter(|(_, p)| now_ns.saturating_sub(p.oom.ts_ns) >= EXIT_WAIT_NS)
            .map(|(k, _)| *k)
            .collect();
        due.into_iter().filter_map(|pid| self.pending.remove(&pid)).map(|p| verdict(p, None)).collect()
    }

    pub fn finish(&mut self) -> Vec<Report> {
        self.pending.drain().map(|(_, p)| verdict(p, None)).collect()
    }
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

fn verdict(p: Pending, exit: Option<(&Event, i32)>) -> Report {
    let comm = match (&exit, p.kill.victim_comm.as_str()) {
        (Some((e, _)), _) => e.comm.clone(),
        (None, c) if !c.is_empty() => c.to_string(),
        _ => String::new(),
    };
    let runtime_component = RUNTIME_COMPONENTS.contains(&comm.as_str());
    let cgroup_path = p.memory.as_ref().map(|m| m.cgroup.clone()).or(p.cgroup.clone());
    let ids = cgroup_path.as_deref().map(ContainerRef::from_cgroup_path).unwrap_or_default();
    let (pod_uid, container_id) = (ids.pod_uid, ids.container_id);
    // A cgroup OOM when the usage reached a limit; otherwise the node ran out.
    let (constraint, usage_text) = match &p.memory {
        Some(m) => {
            let used = m.peak_bytes.unwrap_or(m.usage_bytes).max(m.usage_bytes);
            let counted = m.oom_kills.is_some_and(|n| n > 0);
            match m.limit_bytes {
                Some(limit) if used * 100 >= limit * 95 => {
                    ("cgroup", format!("its cgroup {} used {} of its {} limit", m.cgroup, mib(used), mib(limit)))
                }
                // No high-water mark (before 5.19) and usage already freed:
                // the cgroup's own OOM counter says it was its limit.
                Some(limit) if counted => {
                    ("cgroup", format!("its cgroup {} hit its {} limit", m.cgroup, mib(limit)))
                }
                Some(limit) => ("node", format!("its cgroup {} used {} of {} (the node ran out)", m.cgroup, mib(used), mib(limit))),
                None => ("node", format!("its cgroup {} has no limit (the node ran out)", m.cgroup)),
            }
        }
        None => ("unknown", "its memory cgroup could not be read".to_string()),
    };
    let who = if comm.is_empty() { format!("pid {}", p.kill.victim_pid) } else { format!("{comm} (pid {})", p.kill.victim_pid) };
    // Saturating: the kernel's numbers are trusted for nothing.
    let resident_kb = p.kill.anon_rss_kb.saturating_add(p.kill.file_rss_kb).saturating_add(p.kill.shmem_rss_kb);
    let rss = if resident_kb > 0 {
        format!(" with {} resident", mib(resident_kb.saturating_mul(1024)))
    } else {
        String::new()
    };
    let advice = if runtime_component {
        "it is part of the container runtime: the runtime loses its containers' exit events and their pods stay Terminating; give the runtime's cgroup (system.slice or the shim's) more memory or protect it with oom_score_adj"
    } else if constraint == "cgroup" {
        "raise the container's memory limit or find what grows"
    } else if constraint == "node" {
        "the node is out of memory: check requests against allocatable and the kubelet's eviction thresholds"
    } else {
        "check the victim's memory limit and the node's free memory (on cgroup v1 the killer's memory cgroup is not visible to the tracer once the victim is gone)"
    };
    let message = format!("the OOM killer killed {who}{rss}: {usage_text}; {advice}");
    let mut r = Report::new("oom_kill", exit.map_or(&p.oom, |(e, _)| e));
    r.pid = p.kill.victim_pid;
    r.comm = comm;
    let signal = exit.map(|(_, code)| code & 0x7f).filter(|s| *s != 0).map(super::exec::signal_name);
    let workload = Workload {
        container_id: Slot::of(container_id),
        pod_uid: Slot::of(pod_uid),
        cgroup: Slot::of(cgroup_path),
        ..Default::default()
    };
    r.with_workload(workload)
        .with("victim_pid", p.kill.victim_pid)
        .with("constraint", constraint)
        .with("memory_usage_bytes", json!(p.memory.as_ref().map(|m| m.usage_bytes)))
        .with("memory_peak_bytes", json!(p.memory.as_ref().and_then(|m| m.peak_bytes)))
        .with("memory_limit_bytes", json!(p.memory.as_ref().and_then(|m| m.limit_bytes)))
        .with("total_vm_kb", p.kill.total_vm_kb)
        .with("anon_rss_kb", p.kill.anon_rss_kb)
        .with("file_rss_kb", p.kill.file_rss_kb)
        .with("runtime_component", runtime_component)
        .with("exit_signal", json!(signal))
        .with("triggered_by_pid", p.oom.pid)
        .with("triggered_by_comm", p.oom.comm.clone())
        .message(message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{events::Mode, processes::StaticProcesses};

    fn ev(ts_ns: u64, pid: u32, comm: &str, body: Body) -> Event {
        Event { ts_ns, pid, tid: pid, comm: comm.into(), cgroup_id: 9, mode: Mode::Tracepoint, body }
    }

    fn kill(victim: u32, comm: &str) -> Body {
        Body::OomKill(OomKill {
            victim_pid: victim,
            victim_comm: comm.into(),
            total_vm_kb: 40_000,
            anon_rss_kb: 16_000,
            file_rss_kb: 300,
            shmem_rss_kb: 0,
        })
    }

    fn exit(ts: u64, pid: u32, comm: &str) -> Event {
        ev(ts, pid, comm, Body::Exit { exit_code: 9, ns_pid: pid, ppid: 1, group_dead: true, ns_level: 0, role: Role::OomVictim })
    }

    fn limited_host() -> StaticProcesses {
        let path = format!(
            "/sys/fs/cgroup/kubepods.slice/kubepods-pod0a1b2c3d_1111_2222_3333_444455556666.slice/cri-containerd-{}.scope",
            "ab".repeat(32)
        );
        StaticProcesses {
            memory: Some(MemoryUsage { cgroup: path, usage_bytes: 1 << 20, peak_bytes: Some(16 << 20), limit_bytes: Some(16 << 20), oom_kills: None }),
            ..Default::default()
        }
    }

    #[test]
    fn cgroup_oom_with_pod_attribution_on_victim_exit() {
        let mut c = OomCorrelator::new(limited_host());
        // Before 6.8 the tracepoint has no comm: it comes from the exit.
        assert_eq!(c.handle(&ev(1, 50, "memhog", kill(50, ""))), Some(vec![]));
        let r = c.handle(&exit(2, 50, "memhog")).unwrap().remove(0);
        assert_eq!(r.kind, "oom_kill");
        assert_eq!((r.pid, r.comm.as_str()), (50, "memhog"));
        assert_eq!(r.to_json()["constraint"], "cgroup");
        assert_eq!(r.to_json()["memory_limit_bytes"], 16 << 20);
        assert_eq!(r.to_json()["pod_uid"], "0a1b2c3d-1111-2222-3333-444455556666");
        assert_eq!(r.to_json()["container_id"], "ab".repeat(32));
        assert_eq!(r.to_json()["exit_signal"], "SIGKILL");
        assert_eq!(r.to_json()["runtime_component"], false);
        assert!(r.message.contains("used 16.0 MiB of its 16.0 MiB limit"), "{}", r.message);
    }

    #[test]
    fn a_killed_shim_is_flagged_as_a_runtime_component() {
        let mut c = OomCorrelator::new(limited_host());
        c.handle(&ev(1, 50, "containerd-shim", kill(51, "containerd-shim")));
        // No exit seen: reported after the wait, with the tracepoint's comm.
        assert!(c.expire(1_000).is_empty());
        let r = c.expire(1 + EXIT_WAIT_NS).remove(0);
        assert_eq!(r.to_json()["runtime_component"], true);
        assert!(r.message.contains("stay Terminating"), "{}", r.message);
        assert!(c.finish().is_empty());
    }

    #[test]
    fn without_a_peak_the_cgroup_oom_counter_decides() {
        let host = StaticProcesses {
            memory: Some(MemoryUsage { cgroup: "/sys/fs/cgroup/pt-oom".into(), usage_bytes: 24_576, peak_bytes: None, limit_bytes: Some(32 << 20), oom_kills: Some(1) }),
            ..Default::default()
        };
        let mut c = OomCorrelator::new(host);
        c.handle(&ev(1, 50, "memhog", kill(50, "")));
        let r = c.handle(&exit(2, 50, "memhog")).unwrap().remove(0);
        assert_eq!(r.to_json()["constraint"], "cgroup");
        assert!(r.message.contains("hit its 32.0 MiB limit"), "{}", r.message);
    }

    #[test]
    fn unrelated_exits_are_not_taken() {
        let mut c = OomCorrelator::new(StaticProcesses::default());
        assert!(c.handle(&exit(1, 7, "x")).is_none());
        let other = ev(1, 7, "x", Body::Fork { child_tid: 8 });
        assert!(c.handle(&other).is_none());
        c.handle(&ev(1, 50, "a", kill(50, "a")));
        let r = c.finish().remove(0);
        assert_eq!(r.to_json()["constraint"], "unknown");
    }
}

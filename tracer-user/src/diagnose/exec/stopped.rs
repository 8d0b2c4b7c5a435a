//! Container inits that exit, and containers the runtime holds stopped:
//! every exec into them fails.

use super::*;

/// A container init that exited, kept to explain later execs into it.
#[derive(Debug, Clone)]
pub(super) struct InitExit {
    pub(super) ts_ns: u64,
    pub(super) pid: u32,
    pub(super) status: ExitStatus,
    pub(super) killer: Option<(u32, String, i32)>,
    pub(super) comm: String,
    /// Whether the runtime still holding it was checked (after the grace).
    pub(super) checked: bool,
}
impl<H: ProcessFacts> ExecCorrelator<H> {
    /// Remembers which container a `runc run`/`create` init belongs to.
    pub(super) fn note_container_init(&mut self, ev: &Event, info: &ExecInfo, command: &RuncCommand) {
        let creates = matches!(command.subcommand.as_deref(), Some("run" | "create"));
        if let (Role::Container, true, 1, Some(id)) = (info.role, creates, info.ns_pid, &command.container) {
            // Bounded: a node runs far fewer containers.
            if self.known_inits.len() >= 65536 {
                self.known_inits.clear();
            }
            self.known_inits.insert(ev.pid, id.clone());
        }
    }

    pub(super) fn container_init_exit(&mut self, ev: &Event, status: ExitStatus, root: Option<u32>, role: Role) -> Option<Report> {
        // Which container: the traced runc that created it, else runc's
        // state files (they keep the pid until the container is deleted).
        let _ = root;
        let container = self
            .known_inits
            .remove(&ev.pid)
            .or_else(|| self.host.container_by_init_pid(&self.settings.runtime_roots, ev.pid).map(|s| s.id));
        let killer = self.init_signals.remove(&ev.pid);
        // Pid 1 of a namespace no runtime made, ran or signalled (unshare,
        // a sandbox, a process a tenant names as it likes) is no container.
        let by_runtime = killer.as_ref().is_some_and(|(_, comm, _, _)| self.settings.runtime_comms.iter().any(|c| c == comm));
        if container.is_none() && role != Role::Container && !by_runtime {
            return None;
        }
        // A signal long before this exit was to an earlier holder of the pid.
        let killer = killer.filter(|k| ev.ts_ns.saturating_sub(k.3) < KEEP_NS).map(|(p, c, s, _)| (p, c, s));
        let cgroup = self.host.cgroup_path(ev.cgroup_id);
        let name = container_phrase(container.as_deref());
        let how = match (&killer, status.signal) {
            (Some((pid, comm, _)), s) if s != 0 => format!("was killed by {} sent by {comm} (pid {pid})", signal_name(s)),
            _ => status.describe(),
        };
        let message = format!(
            "the init process of {name} ({}, pid {}) {how}; the container is stopped, and execs into it (exec probes) now fail with \"cannot exec in a stopped state\" until the runtime notices",
            ev.comm, ev.pid
        );
        if let Some(c) = &container {
            if self.stopped.len() >= 65536 {
                self.stopped.clear();
            }
            let checked = by_runtime_killer(&killer, &self.settings.runtime_comms) || !status.failed();
            self.stopped.insert(
                c.clone(),
                InitExit { ts_ns: ev.ts_ns, pid: ev.pid, status, killer: killer.clone(), comm: ev.comm.clone(), checked },
            );
        }
        // Stopped by the runtime itself (runc kill/delete: a pod being
        // deleted or restarted) is a record, not a verdict.
        let by_runtime = by_runtime_killer(&killer, &self.settings.runtime_comms);
        let (kind, message) = if by_runtime {
            ("container_stopped", format!("{name} ({}, pid {}) was stopped by the runtime: its init {how}", ev.comm, ev.pid))
        } else if !status.failed() {
            // A command that finished (a job, a one-shot container).
            ("container_stopped", format!("{name} ({}, pid {}) completed: its init exited with code 0", ev.comm, ev.pid))
        } else {
            ("container_init_exit", message)
        };
        let state = container.as_deref().and_then(|id| self.host.container_state(&self.settings.runtime_roots, id));
        let state_cgroup = state.and_then(|s| s.pids_cgroup).map(|p| p.to_string_lossy().into_owned());
        let cgroup = state_cgroup.or(cgroup);
        let pod_uid = cgroup.as_deref().and_then(|c| ContainerRef::from_cgroup_path(c).pod_uid);
        let workload = Workload {
            container_id: Slot::of(container),
            cgroup_id: Slot::Known(ev.cgroup_id),
            pod_uid: Slot::of(pod_uid),
            cgroup: Slot::of(cgroup),
        };
        let r = status.fields(Report::new(kind, ev).with_workload(workload));
        Some(
            r.with("killed_by_pid", json!(killer.as_ref().map(|k| k.0)))
                .with("killed_by_comm", json!(killer.as_ref().map(|k| k.1.clone())))
                .message(message),
        )
    }

    /// Containers the runtime still holds with their init gone: those seen
    /// to die `stopped_grace_ns` ago (evidence `observed`) and, once, those
    /// whose state already named a dead init when the tracer started
    /// (evidence `state`). Every exec into them fails, with or without a
    /// runc: containerd's shim refuses "cannot exec in a stopped state" by
    /// itself.
    pub(super) fn held_stopped(&mut self, now_ns: u64) -> Vec<Report> {
        let mut out = Vec::new();
        let grace = self.settings.stopped_grace_ns;
        let due: Vec<String> = self
            .stopped
            .iter()
            .filter(|(id, x)| !x.checked && now_ns.saturating_sub(x.ts_ns) >= grace && !self.reported_stopped.contains(*id))
            .map(|(id, _)| id.clone())
            .collect();
        for id in due {
            let state = self.host.container_state(&self.settings.runtime_roots, &id);
            let Some(x) = self.stopped.get_mut(&id) else { continue };
            x.checked = true;
            let x = x.clone();
            // Deleted, or restarted with a new init: the runtime noticed.
            let Some(state) = state.filter(|s| !s.init_alive && s.init_pid == x.pid) else { continue };
            let killer = x.killer.as_ref().map(|(pid, comm, _)| format!(" by {comm} (pid {pid})")).unwrap_or_default();
            let cause = format!("container {id}'s init (pid {}) {}{killer}", x.pid, x.status.describe());
            let ago = now_ns.saturating_sub(x.ts_ns) / 1_000_000_000;
            out.push(self.stopped_report(&state, "observed", cause, &x.comm, Some(ago), now_ns));
        }
        if self.settings.scan_runtime_state && !self.state_scanned {
            self.state_scanned = true;
            for state in self.host.stopped_containers(&self.settings.runtime_roots) {
                if self.stopped.contains_key(&state.id) || self.reported_stopped.contains(&state.id) {
                    continue;
                }
                let cause = format!("container {}'s init (pid {}) is no longer running", state.id, state.init_pid);
                out.push(self.stopped_report(&state, "state", cause, "", None, now_ns));
            }
        }
        out
    }

    fn stopped_report(&mut self, state: &ContainerState, evidence: &str, cause: String, comm: &str, ago: Option<u64>, now_ns: u64) -> Report {
        if self.reported_stopped.len() >= 65536 {
            self.reported_stopped.clear();
        }
        self.reported_stopped.insert(state.id.clone());
        let cgroup = state.pids_cgroup.as_ref().map(|p| p.to_string_lossy().into_owned());
        let pod_uid = cgroup.as_deref().and_then(|c| ContainerRef::from_cgroup_path(c).pod_uid);
        let anchor = Event {
            ts_ns: now_ns,
            pid: state.init_pid,
            tid: state.init_pid,
            comm: comm.to_string(),
            cgroup_id: 0,
            mode: crate::events::Mode::Tracepoint,
            body: Body::Fork { child_tid: 0 },
        };
        let since = match ago {
            Some(s) => format!(" {s} s ago"),
            None => " before the tracer started".to_string(),
        };
        let message = format!(
            "container {} is stopped but the runtime still holds it: {cause}{since} and its state still names that init; every exec probe into it fails with \"cannot exec in a stopped state\" (under containerd's shim the shim refuses by itself, so no runc runs): restart the pod and find out why its init died",
            state.id
        );
        let workload = Workload {
            container_id: Slot::Known(state.id.clone()),
            pod_uid: Slot::of(pod_uid),
            cgroup: Slot::of(cgroup.clone()),
            ..Default::default()
        };
        Report::new("exec_into_stopped_container", &anchor)
            .with_workload(workload)
            .with("evidence", evidence)
            .with("container_cgroup", json!(cgroup))
            .with("init_pid", state.init_pid)
            .with("runtime_pid", json!(null))
            .with("subcommand", json!(null))
            .with("cause", cause)
            .message(message)
    }

    pub(super) fn exec_into_stopped(&self, inv: &Invocation, end: Option<&Event>) -> Option<Report> {
        let id = inv.command.container.as_deref()?;
        let anchor = end.unwrap_or(&inv.started);
        let (evidence, cause, init_pid) = if let Some(x) = self.stopped.get(id) {
            let killer = x.killer.as_ref().map(|(pid, comm, _)| format!(" by {comm} (pid {pid})")).unwrap_or_default();
            (
                "observed",
                format!("container {id}'s init (pid {}) {}{killer}", x.pid, x.status.describe()),
                Some(x.pid),
            )
        } else if !inv.forked {
            // runc refused before starting runc init: check its state file,
            // else what it said when the runtime started (a delete right
            // after the failed exec removes it).
            let state = self.host.container_state(&self.settings.runtime_roots, id).or_else(|| inv.state.clone())?;
            if state.init_alive {
                return None;
            }
            ("state", format!("container {id}'s init (pid {}) is no longer running", state.init_pid), Some(state.init_pid))
        } else {
            return None;
        };
        let ago = self.stopped.get(id).map(|x| anchor.ts_ns.saturating_sub(x.ts_ns) / 1_000_000_000);
        let message = format!(
            "{} exec into stopped container {id}: {cause}{}; the runtime still treats it as running, so every exec probe fails (\"cannot exec in a stopped state\"): restart the pod and find out why its init died",
            inv.started.comm,
            ago.map(|s| format!(" {s} s earlier")).unwrap_or_default()
        );
        let mut r = common(Report::new("exec_into_stopped_container", anchor), inv)
            .with("evidence", evidence)
            .with("init_pid", json!(init_pid))
            .with("cause", cause)
            .message(message)
            .grouped();
        // The runtime by the name it was started as: crun re-executes
        // itself from a memfd, and before 6.x the kernel names such a
        // process after the descriptor ("4").
        r.pid = inv.started.pid;
        r.comm = inv.started.comm.clone();
        Some(r)
    }
}

fn by_runtime_killer(killer: &Option<(u32, String, i32)>, runtime_comms: &[String]) -> bool {
    killer.as_ref().is_some_and(|(_, comm, _)| runtime_comms.iter().any(|c| c == comm))
}

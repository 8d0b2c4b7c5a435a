//! Exec probes inside the container runtime: what made a `runc exec` (or
//! `runc run`) fail, told as one story per invocation.
//!
//! An *invocation* starts when a runtime binary (`runc`) is exec'd by a
//! process outside any invocation, and takes in every process it forks (runc
//! init and its `runc:[0:PARENT]`, `[1:CHILD]`, `[2:INIT]` stages). It ends
//! when that first runc process exits. Its failures become verdicts:
//! - `fork_failed`: clone/clone3/fork/vfork returned an error (EAGAIN at a
//!   pids limit), with the pids cgroup's counters read at that moment;
//! - `setns_failed`: joining a namespace failed;
//! - `runc_init_died`: a runc init stage died (signal or non-zero exit)
//!   before the container's command ran: runc's "read init-p: connection
//!   reset by peer";
//! - `exec_into_stopped_container`: `runc exec` into a container whose init
//!   is gone (incident 3).
//!
//! `container_init_exit` is reported as it happens, for any container init
//! (pid 1 of a pid namespace) that dies on a signal or a non-zero code, with
//! who signalled it; an init the runtime itself stopped (runc kill/delete)
//! or one that exited 0 is a `container_stopped` record instead.
//!
//! Where to look: this file follows events to invocations (`handle`);
//! `argv` reads the runtime's command line; `story` judges an invocation's
//! failures; `command` follows the command an exec started; `stopped`
//! covers container inits that exit and containers held stopped; `latency`
//! makes `runtime_slow`; `names` says errnos, signals and exit statuses.
//! Each adds its own `impl ExecCorrelator` block.

use std::{
    collections::{BTreeMap, HashMap},
    path::PathBuf,
};

use serde_json::json;

use super::{Report, Slot, Workload, probe::CpuWindow};
use crate::{
    cgroup_cpu::{CpuReading, ServingCgroup},
    events::{Body, Event, ExecInfo, Role},
    processes::{ContainerState, DEFAULT_RUNTIME_ROOTS, ProcessFacts, PidsLimit, ThreadCount},
    k8s::cgroup::ContainerRef,
};

mod argv;
mod command;
mod latency;
mod names;
mod stopped;
mod story;

pub use argv::{RuncCommand, known_subcommand, parse_exec_args, parse_runc_args};
pub(crate) use command::{cpu_over_life, shown_argv};
pub use command::CommandDone;
pub use latency::LatencyStats;
pub use names::{ExitStatus, errno_name, namespace_name, signal_name};

// The child modules `use super::*`: what they share is named here.
use command::{ExecCommand, Kill};
use latency::LatencyWindow;
use names::container_phrase;
use stopped::InitExit;
use story::{Death, ForkFailure, SetnsFailure, common, fork_failed};

const EAGAIN: i32 = 11;

#[derive(Debug, Clone)]
pub struct ExecSettings {
    /// Runtime binary names (`--runtime-comm`).
    pub runtime_comms: Vec<String>,
    /// Where runc state files are looked for (`--runtime-root`, defaults,
    /// and every `--root` a traced runc was given).
    pub runtime_roots: Vec<PathBuf>,
    /// An invocation with failures and no activity this long is judged even
    /// if its first process has not exited.
    pub idle_ns: u64,
    /// A runc call slower than this at the 99th percentile of an interval
    /// (or still running after it) is a `runtime_slow` verdict.
    pub slow_threshold_ns: u64,
    /// Length of a latency interval.
    pub latency_interval_ns: u64,
    /// A container whose init died and that the runtime still holds this
    /// long after (its state still names the dead init) is one that every
    /// exec probe fails on, whether or not a runc runs for them: under
    /// containerd's shim "cannot exec in a stopped state" is the shim's own
    /// refusal.
    pub stopped_grace_ns: u64,
    /// Read the runtime's state files once at the first housekeeping tick,
    /// for containers whose init died before the tracer started.
    pub scan_runtime_state: bool,
}

impl Default for ExecSettings {
    fn default() -> Self {
        Self {
            runtime_comms: vec!["runc".into(), "crun".into()],
            runtime_roots: DEFAULT_RUNTIME_ROOTS.iter().map(PathBuf::from).collect(),
            idle_ns: 10_000_000_000,
            slow_threshold_ns: 1_000_000_000,
            latency_interval_ns: 10_000_000_000,
            stopped_grace_ns: 5_000_000_000,
            scan_runtime_state: true,
        }
    }
}

#[derive(Debug, Clone)]
struct Invocation {
    started: Event,
    command: RuncCommand,
    fork_failures: Vec<ForkFailure>,
    setns_failures: Vec<SetnsFailure>,
    deaths: Vec<Death>,
    /// Fatal signals to processes of this invocation, by target pid.
    signals: HashMap<u32, i32>,
    forked: bool,
    command_started: bool,
    last_ts: u64,
    /// When it started, by the wall clock the runtime stamps its `--log`
    /// lines with: what it wrote since is this invocation's.
    started_wall: std::time::SystemTime,
    /// The target container's state when the invocation started (its
    /// cgroup names the pod).
    state: Option<ContainerState>,
    /// The pipes the runtime's standard output and error are (an exec's:
    /// the runtime passes them on to the command, and the shim waits on
    /// them). Read at its start: the runtime lives tens of milliseconds,
    /// a quick command may be gone before its exec is handled.
    output_pipes: Vec<u64>,
}

impl Invocation {
    /// What its processes that outlive it carry of it.
    fn lingering(&self) -> Lingering {
        Lingering { started: self.started.clone(), command: self.command.clone(), state: self.state.clone(), output_pipes: self.output_pipes.clone() }
    }
}

/// A process that outlived its invocation's runtime, and what started it.
#[derive(Debug, Clone)]
struct Lingering {
    started: Event,
    command: RuncCommand,
    state: Option<ContainerState>,
    output_pipes: Vec<u64>,
}

/// How long a stopped container and a signal to a container init are
/// remembered, and how many of each at most.
const KEEP_NS: u64 = 3600 * 1_000_000_000;
const MAX_KEPT: usize = 8192;

pub struct ExecCorrelator<H: ProcessFacts> {
    settings: ExecSettings,
    host: H,
    invocations: HashMap<u32, Invocation>,
    /// pid -> the invocation (its first runc pid) it belongs to.
    members: HashMap<u32, u32>,
    /// Fatal signals sent to container inits: target pid -> (sender pid, comm, sig).
    init_signals: HashMap<u32, (u32, String, i32, u64)>,
    stopped: BTreeMap<String, InitExit>,
    /// Container inits started by a traced `runc run`/`create`: pid -> id.
    known_inits: HashMap<u32, String>,
    /// Processes that outlived their invocation's runc (`runc run -d`
    /// returns before runc init execs the container's command).
    lingering: HashMap<u32, Lingering>,
    /// Commands started by a traced `exec`, while they run.
    commands: HashMap<u32, ExecCommand>,
    /// Commands that ran long and exited by themselves, until taken.
    commands_done: Vec<CommandDone>,
    /// Durations of the runc calls that ended in the current interval.
    interval: LatencyWindow,
    /// Durations over the whole run, for the summary.
    total: LatencyWindow,
    /// Durations not yet taken by the metrics (daemon mode).
    recent: Vec<(String, u64)>,
    /// Containers already reported as stopped-but-held (bounded).
    reported_stopped: std::collections::HashSet<String>,
    state_scanned: bool,
    /// Invocations judged so far (for the summary).
    pub finished: u64,
    pub failed: u64,
}

impl<H: ProcessFacts> ExecCorrelator<H> {
    pub fn new(settings: ExecSettings, host: H) -> Self {
        Self {
            settings,
            host,
            invocations: HashMap::new(),
            members: HashMap::new(),
            init_signals: HashMap::new(),
            stopped: BTreeMap::new(),
            known_inits: HashMap::new(),
            lingering: HashMap::new(),
            commands: HashMap::new(),
            commands_done: Vec::new(),
            interval: LatencyWindow::default(),
            total: LatencyWindow::default(),
            recent: Vec::new(),
            reported_stopped: Default::default(),
            state_scanned: false,
            finished: 0,
            failed: 0,
        }
    }

    pub fn in_flight(&self) -> usize {
        self.invocations.len()
    }

    pub fn handle(&mut self, ev: &Event) -> Vec<Report> {
        match &ev.body {
            Body::Exec(info) => {
                self.on_exec(ev, info);
                Vec::new()
            }
            Body::Fork { child_tid } => {
                if let Some(&root) = self.members.get(&ev.pid) {
                    self.members.insert(*child_tid, root);
                    if let Some(inv) = self.invocations.get_mut(&root) {
                        inv.forked = true;
                        inv.last_ts = ev.ts_ns;
                        for s in inv.setns_failures.iter_mut().filter(|s| s.ev.pid == ev.pid) {
                            s.went_on = true;
                        }
                    }
                }
                Vec::new()
            }
            Body::SyscallFailed { syscall, nstype, errno } => {
                // An exec's command is the container's: never its
                // runtime's failure, even before the runtime exits.
                if self.commands.contains_key(&ev.pid) {
                    return self.command_fork_failed(ev, syscall, *errno).into_iter().collect();
                }
                self.on_syscall_failed(ev, syscall, *nstype, *errno);
                Vec::new()
            }
            Body::Signal { sig, target_pid, .. } => {
                if let Some(x) = self.commands.get_mut(target_pid).filter(|_| ev.pid != *target_pid) {
                    x.killed = Some(Kill { pid: ev.pid, comm: ev.comm.clone(), sig: *sig, ts_ns: ev.ts_ns });
                }
                match self.members.get(target_pid).and_then(|root| self.invocations.get_mut(root)) {
                    Some(inv) => {
                        inv.signals.insert(*target_pid, *sig);
                    }
                    None => {
                        self.init_signals.insert(*target_pid, (ev.pid, ev.comm.clone(), *sig, ev.ts_ns));
                    }
                }
                Vec::new()
            }
            Body::Exit { exit_code, ns_pid, ns_level, role, .. } => {
                self.on_exit(ev, ExitStatus::from_raw(*exit_code), *ns_pid, *ns_level, *role)
            }
            _ => Vec::new(),
        }
    }

    fn on_exec(&mut self, ev: &Event, info: &ExecInfo) {
        if let Some(l) = self.lingering.remove(&ev.pid) {
            self.note_container_init(ev, info, &l.command);
            self.note_exec_command(ev, info, l);
            return;
        }
        if let Some(&root) = self.members.get(&ev.pid) {
            if let Some(inv) = self.invocations.get_mut(&root) {
                inv.last_ts = ev.ts_ns;
                if info.role == Role::Container {
                    inv.command_started = true;
                }
                let l = inv.lingering();
                self.note_container_init(ev, info, &l.command);
                self.note_exec_command(ev, info, l);
            }
            return;
        }
        if !self.settings.runtime_comms.iter().any(|c| c.as_str() == ev.comm) {
            return;
        }
        // Only the node's runtime counts: a runc in a container's pid or
        // mount namespace (hostPID or not) is a tenant's binary. Gone before
        // it could be checked: judged, but its --root is not learned.
        let host_ns = if info.ns_level > 0 { Some(false) } else { self.host.in_host_namespaces(ev.pid) };
        if host_ns == Some(false) {
            return;
        }
        let command = parse_exec_args(info, ev.pid, &ev.comm, &self.host);
        if let Some(root) = command.root.as_ref().filter(|_| host_ns == Some(true)) {
            let root = PathBuf::from(root);
            if !self.settings.runtime_roots.contains(&root) {
                self.settings.runtime_roots.push(root);
            }
        }
        self.members.insert(ev.pid, ev.pid);
        let started_wall = crate::output::Clock::now().wall(ev.ts_ns);
        let state = command.container.as_deref().and_then(|id| self.host.container_state(&self.settings.runtime_roots, id));
        let output_pipes = if command.subcommand.as_deref() == Some("exec") { self.host.output_pipes(ev.pid) } else { Vec::new() };
        self.invocations.insert(
            ev.pid,
            Invocation {
                started: ev.clone(),
                command,
                fork_failures: Vec::new(),
                setns_failures: Vec::new(),
                deaths: Vec::new(),
                signals: HashMap::new(),
                forked: false,
                command_started: false,
                last_ts: ev.ts_ns,
                started_wall,
                state,
                output_pipes,
            },
        );
    }

    /// Ends an invocation: its processes still alive become lingering.
    fn close_invocation(&mut self, root: u32) -> Option<Invocation> {
        let inv = self.invocations.remove(&root)?;
        let mut remaining = Vec::new();
        self.members.retain(|pid, r| {
            if *r == root {
                remaining.push(*pid);
                false
            } else {
                true
            }
        });
        if self.lingering.len() >= 65536 {
            self.lingering.clear();
        }
        for pid in remaining.into_iter().filter(|p| *p != root) {
            self.lingering.insert(pid, inv.lingering());
        }
        Some(inv)
    }

    fn on_exit(&mut self, ev: &Event, status: ExitStatus, ns_pid: u32, ns_level: u32, role: Role) -> Vec<Report> {
        let mut out = Vec::new();
        self.lingering.remove(&ev.pid);
        if let Some(x) = self.commands.remove(&ev.pid) {
            match self.exec_probe_timeout(ev, status, &x).or_else(|| self.exec_output_held(ev, status, &x)) {
                Some(r) => out.push(r),
                None => self.note_command_done(ev, status, x),
            }
        }
        let root = self.members.get(&ev.pid).copied();
        if root != Some(ev.pid) {
            self.members.remove(&ev.pid);
        }
        if ns_pid == 1 && ns_level > 0 {
            out.extend(self.container_init_exit(ev, status, root, role));
        }
        let Some(root) = root else { return out };
        if root == ev.pid {
            if let Some(inv) = self.close_invocation(root) {
                out.extend(self.judge(inv, Some((ev, status))));
            }
            return out;
        }
        if let Some(inv) = self.invocations.get_mut(&root) {
            inv.last_ts = ev.ts_ns;
            // A runtime stage (never exec'd the container's command) that
            // died: the container's command will not run.
            if role == Role::Runtime && status.failed() {
                let signal_before = inv.signals.get(&ev.pid).copied();
                inv.deaths.push(Death { ev: ev.clone(), status, signal_before });
            }
        }
        out
    }

    /// Entries held per map (the soak test bounds them).
    #[cfg(test)]
    pub(crate) fn state_sizes(&self) -> Vec<(&'static str, usize)> {
        vec![
            ("invocations", self.invocations.len()),
            ("members", self.members.len()),
            ("init_signals", self.init_signals.len()),
            ("stopped", self.stopped.len()),
            ("known_inits", self.known_inits.len()),
            ("lingering", self.lingering.len()),
            ("commands", self.commands.len()),
            ("commands_done", self.commands_done.len()),
            ("recent", self.recent.len()),
        ]
    }

    /// Judges invocations with failures that went quiet (their runc may
    /// linger, e.g. a foreground `runc run`).
    pub fn expire(&mut self, now_ns: u64) -> Vec<Report> {
        // Bounded for weeks of container churn (issue 27): stopped
        // containers and signals to inits are kept KEEP_NS, at most MAX_KEPT.
        self.stopped.retain(|_, x| now_ns.saturating_sub(x.ts_ns) < KEEP_NS);
        self.init_signals.retain(|_, k| now_ns.saturating_sub(k.3) < KEEP_NS);
        crate::diagnose::bound_oldest(&mut self.stopped, MAX_KEPT, |x| x.ts_ns);
        crate::diagnose::bound_oldest(&mut self.init_signals, MAX_KEPT, |k| k.3);
        let mut out: Vec<Report> = self.tick(now_ns).into_iter().collect();
        out.extend(self.held_stopped(now_ns));
        let idle = self.settings.idle_ns;
        let stale: Vec<u32> = self
            .invocations
            .iter()
            .filter(|(_, inv)| {
                let has_failures = !inv.fork_failures.is_empty() || !inv.setns_failures.is_empty() || !inv.deaths.is_empty();
                let age = now_ns.saturating_sub(inv.last_ts);
                (has_failures && age >= idle) || age >= idle * 360
            })
            .map(|(k, _)| *k)
            .collect();
        for root in stale {
            if let Some(inv) = self.close_invocation(root) {
                out.extend(self.judge(inv, None));
            }
        }
        out
    }

    /// End of the run: judge whatever has failures, and the last latency
    /// interval.
    pub fn finish(&mut self, now_ns: u64) -> Vec<Report> {
        let mut out: Vec<Report> = self.close_latency_interval(now_ns).into_iter().collect();
        let roots: Vec<u32> = self.invocations.keys().copied().collect();
        for root in roots {
            if let Some(inv) = self.invocations.remove(&root) {
                out.extend(self.judge(inv, None));
            }
        }
        self.members.clear();
        out
    }
}

#[cfg(test)]
mod tests;

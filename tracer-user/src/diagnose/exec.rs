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

use std::{
    collections::{BTreeMap, HashMap},
    path::PathBuf,
};

use serde_json::json;

use super::{Report, probe::CpuWindow};
use crate::{
    cgroup_cpu::{CpuReading, ServingCgroup},
    events::{Body, Event, ExecInfo, Role},
    host::{ContainerState, DEFAULT_RUNTIME_ROOTS, HostView, PidsLimit, ThreadCount},
    k8s::cgroup::ContainerRef,
};

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

/// What a runc command line asks for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuncCommand {
    pub subcommand: Option<String>,
    pub container: Option<String>,
    /// `--root`: where this runc keeps its state.
    pub root: Option<String>,
    /// `--log`: where this runc writes its errors (containerd's shim:
    /// `<bundle>/log.json`).
    pub log: Option<String>,
    /// The kernel's copy of argv was cut short and the process was gone
    /// before the rest could be read from `/proc/PID/cmdline`: the
    /// container ID may be missing (never a cut-off prefix of one).
    pub args_truncated: bool,
}

/// runc options that take a value (global and per-subcommand), so the
/// container id is not mistaken for one of their values.
const RUNC_VALUE_OPTIONS: &[&str] = &[
    "--root", "--log", "--log-format", "--criu", "--rootless", "--bundle", "-b", "--console-socket",
    "--pidfd-socket", "--pid-file", "--preserve-fds", "--cwd", "--env", "-e", "--user", "-u",
    "--additional-gids", "-g", "--process", "-p", "--apparmor", "--process-label", "--cap", "-c",
    "--cgroup", "--signal", "-s",
];

/// Parses `runc [global options] <subcommand> [options] <container-id> ...`.
/// `comm` is the runtime's name: a wrapper script's argv starts with its
/// interpreter (`/bin/sh /usr/local/bin/runc ...`), so parsing starts after
/// the argument that names the runtime.
pub fn parse_runc_args(args: &[String], comm: &str) -> RuncCommand {
    let mut cmd = RuncCommand::default();
    let named = |a: &String| a.rsplit('/').next() == Some(comm);
    let mut i = args.iter().position(named).unwrap_or(0) + 1;
    while i < args.len() {
        let a = args[i].as_str();
        if let Some(opt) = a.strip_prefix("--").map(|_| a).or_else(|| a.starts_with('-').then_some(a)) {
            let (name, inline_value) = match opt.split_once('=') {
                Some((n, v)) => (n, Some(v)),
                None => (opt, None),
            };
            let takes_value = RUNC_VALUE_OPTIONS.contains(&name);
            let value = match inline_value {
                Some(v) => Some(v.to_string()),
                None if takes_value => {
                    i += 1;
                    args.get(i).cloned()
                }
                None => None,
            };
            if name == "--root" && cmd.subcommand.is_none() {
                cmd.root = value;
            } else if name == "--log" && cmd.subcommand.is_none() {
                cmd.log = value;
            } else if matches!(name, "--pid-file" | "--bundle" | "-b") && cmd.container.is_none() {
                // containerd and Docker keep a container's bundle in a
                // directory named after its ID: a fallback when argv was
                // cut before the ID itself.
                cmd.container = value.as_deref().and_then(bundle_id);
            }
        } else if cmd.subcommand.is_none() {
            cmd.subcommand = Some(a.to_string());
        } else {
            cmd.container = Some(a.to_string());
            break;
        }
        i += 1;
    }
    if cmd.container.is_none() {
        cmd.container = cmd.log.as_deref().and_then(bundle_id);
    }
    cmd
}

/// The container ID a bundle path names: a 64-hex directory
/// (`.../k8s.io/<id>/log.json`, `.../<id>/<exec-id>.pid`, `.../<id>`).
fn bundle_id(path: &str) -> Option<String> {
    let is_id = |s: &str| s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit());
    let mut parts = path.rsplit('/').filter(|p| !p.is_empty());
    let last = parts.next()?;
    if is_id(last) {
        return Some(last.to_string());
    }
    parts.next().filter(|p| is_id(p)).map(str::to_string)
}

/// Parses an exec's argv, completing it from `/proc/PID/cmdline` when the
/// kernel's copy was cut short. A cut argv's last string is incomplete and
/// is dropped rather than taken for (a prefix of) the container ID.
pub fn parse_exec_args<H: HostView>(info: &ExecInfo, pid: u32, comm: &str, host: &H) -> RuncCommand {
    if !info.args_truncated {
        return parse_runc_args(&info.args, comm);
    }
    let known = info.args.len().saturating_sub(1);
    if let Some(full) = host.cmdline(pid).filter(|full| full.len() > known && full[..known] == info.args[..known]) {
        return parse_runc_args(&full, comm);
    }
    let mut cmd = parse_runc_args(&info.args[..known], comm);
    cmd.args_truncated = true;
    cmd
}

/// `errno` number to its name (EAGAIN...).
pub fn errno_name(errno: i32) -> String {
    format!("{:?}", nix::errno::Errno::from_raw(errno))
}

pub fn signal_name(sig: i32) -> String {
    nix::sys::signal::Signal::try_from(sig).map(|s| s.as_str().to_string()).unwrap_or_else(|_| format!("signal {sig}"))
}

/// Namespace type names for setns's nstype (CLONE_NEW* flags).
pub fn namespace_name(nstype: i32) -> &'static str {
    match nstype {
        0 => "any",
        0x0002_0000 => "mnt",
        0x0200_0000 => "cgroup",
        0x0400_0000 => "uts",
        0x0800_0000 => "ipc",
        0x1000_0000 => "user",
        0x2000_0000 => "pid",
        0x4000_0000 => "net",
        0x0000_0080 => "time",
        _ => "several",
    }
}

/// A wait(2) status as people say it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExitStatus {
    pub code: i32,
    pub signal: i32,
}

impl ExitStatus {
    pub fn from_raw(raw: i32) -> Self {
        Self { code: (raw >> 8) & 0xff, signal: raw & 0x7f }
    }

    pub fn failed(&self) -> bool {
        self.code != 0 || self.signal != 0
    }

    pub fn describe(&self) -> String {
        if self.signal != 0 { format!("was killed by {}", signal_name(self.signal)) } else { format!("exited with code {}", self.code) }
    }

    fn fields(&self, r: Report) -> Report {
        let r = r.with("exit_code", self.code);
        if self.signal != 0 { r.with("signal", signal_name(self.signal)) } else { r.with("signal", serde_json::Value::Null) }
    }
}

#[derive(Debug, Clone)]
struct ForkFailure {
    first: Event,
    syscall: String,
    errno: i32,
    count: u32,
    pids: Option<PidsLimit>,
    threads: Option<ThreadCount>,
}

#[derive(Debug, Clone)]
struct SetnsFailure {
    ev: Event,
    nstype: i32,
    errno: i32,
    /// The process forked after it: it got past joining namespaces.
    went_on: bool,
}

/// setns(2)'s nstype for a user namespace.
const CLONE_NEWUSER: i32 = 0x1000_0000;
const EINVAL: i32 = 22;

impl SetnsFailure {
    /// A try the runtime got past, not what made it fail: setns(2)
    /// returns EINVAL to a caller joining the user namespace it is
    /// already in, and crun tries to join every namespace of the
    /// container, its user namespace too (as a pidfd with CLONE_NEWUSER,
    /// then as a namespace file with nstype 0, which hides its type), and
    /// goes on to fork the command. A runtime that cannot join a
    /// namespace does not fork after it (runc's stage 1 gives up).
    fn recovered(&self) -> bool {
        self.went_on || (self.errno == EINVAL && self.nstype == CLONE_NEWUSER)
    }
}

#[derive(Debug, Clone)]
struct Death {
    ev: Event,
    status: ExitStatus,
    /// A fatal signal the process got (or raised) before it died: a Go
    /// runtime abort ends as exit code 2 after SIGABRT.
    signal_before: Option<i32>,
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

/// A container init that exited, kept to explain later execs into it.
#[derive(Debug, Clone)]
struct InitExit {
    ts_ns: u64,
    pid: u32,
    status: ExitStatus,
    killer: Option<(u32, String, i32)>,
    comm: String,
    /// Whether the runtime still holding it was checked (after the grace).
    checked: bool,
}

/// A process that outlived its invocation's runtime, and what started it.
#[derive(Debug, Clone)]
struct Lingering {
    started: Event,
    command: RuncCommand,
    state: Option<ContainerState>,
    output_pipes: Vec<u64>,
}

/// The command a traced `exec` started in a container (an exec probe's
/// `sh -c ...`), while it runs: its own failed forks are the probe's
/// failure ("sh: can't fork"), though the runtime succeeded.
#[derive(Debug, Clone)]
struct ExecCommand {
    started: Event,
    command: RuncCommand,
    state: Option<ContainerState>,
    /// Failed forks so far: the first is reported, a shell gives up then.
    failures: u32,
    /// Its argv, as the kernel copied it.
    argv: Vec<String>,
    /// The last fatal signal another process sent it.
    killed: Option<Kill>,
    /// Its cgroup's CPU counters when it started: a probe killed at its
    /// timeout says what its container's limits did over its life.
    cpu_at_start: Option<(ServingCgroup, CpuReading)>,
    /// The pipes its output goes to: its runtime's ([`Invocation`]).
    output_pipes: Vec<u64>,
}

/// An exec's command that exited by itself, slow enough that it may have
/// come near its probe's timeoutSeconds; the pod's spec (in the enricher)
/// says whether it is a probe and what its timeout is.
#[derive(Debug, Clone)]
pub struct CommandDone {
    /// The `probe_near_timeout` it would be, its sentence not yet written.
    pub report: Report,
    pub container_id: String,
    pub argv: Vec<String>,
    /// From the runtime's start to the command's exit: what ExecSync waits.
    pub runtime_ms: u64,
    /// The container's CPU counters when the command started.
    pub cpu_at_start: Option<(ServingCgroup, CpuReading)>,
}

/// The smallest timeoutSeconds is 1: a command done within 80 % of it is
/// near no probe's timeout.
const NEAR_TIMEOUT_FLOOR_MS: u64 = 800;
/// Slow commands kept between two drains, at most.
const MAX_COMMANDS_DONE: usize = 256;

/// A fatal signal and who sent it.
#[derive(Debug, Clone)]
struct Kill {
    pid: u32,
    comm: String,
    sig: i32,
    ts_ns: u64,
}

const SIGKILL: i32 = 9;

/// "container <id>", or "a container" where the runtime's argv named none.
fn container_phrase(id: Option<&str>) -> String {
    id.map_or_else(|| "a container".to_string(), |c| format!("container {c}"))
}

/// A command line as a sentence shows it: 200 characters at most.
pub(crate) fn shown_argv(argv: &[String]) -> String {
    let shown = argv.join(" ");
    if shown.chars().count() > 200 { shown.chars().take(200).collect::<String>() + "..." } else { shown }
}

/// Whether `comm` kills an exec's command at the exec's timeout:
/// containerd's shim (comm `containerd-shim`, the kernel's 15 bytes of
/// `containerd-shim-runc-v2`; Docker's too) on CRI `ExecSync`'s timeout,
/// and CRI-O's `conmon` (`--timeout`). The runtime binary itself (`runc
/// kill --all`) kills every process of a container being stopped: no
/// timeout.
fn kills_at_exec_timeout(comm: &str) -> bool {
    comm.starts_with("containerd-shim") || comm == "conmon"
}

impl ExecCommand {
    /// The runtime call that started the command, as the story helpers
    /// take it.
    fn invocation(&self, last_ts: u64) -> Invocation {
        Invocation {
            started: self.started.clone(),
            command: self.command.clone(),
            fork_failures: Vec::new(),
            setns_failures: Vec::new(),
            deaths: Vec::new(),
            signals: HashMap::new(),
            forked: true,
            command_started: true,
            last_ts,
            started_wall: std::time::SystemTime::UNIX_EPOCH,
            state: self.state.clone(),
            output_pipes: self.output_pipes.clone(),
        }
    }
}

/// How long a stopped container and a signal to a container init are
/// remembered, and how many of each at most.
const KEEP_NS: u64 = 3600 * 1_000_000_000;
const MAX_KEPT: usize = 8192;

pub struct ExecCorrelator<H: HostView> {
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

/// Durations of runc calls by subcommand, with the slowest few.
#[derive(Debug, Clone, Default)]
struct LatencyWindow {
    started_ns: u64,
    by_subcommand: BTreeMap<String, Vec<u64>>,
    /// (duration, pid, container) of the slowest calls, slowest first.
    slowest: Vec<(u64, u32, String, Option<String>)>,
}

impl LatencyWindow {
    fn add(&mut self, sub: &str, ns: u64, pid: u32, container: Option<String>) {
        let samples = self.by_subcommand.entry(sub.to_string()).or_default();
        // Bounded for a daemon that runs for weeks: percentiles over the
        // most recent calls.
        if samples.len() >= MAX_SAMPLES {
            samples.drain(..MAX_SAMPLES / 2);
        }
        samples.push(ns);
        self.slowest.push((ns, pid, sub.to_string(), container));
        self.slowest.sort_by_key(|s| std::cmp::Reverse(s.0));
        self.slowest.truncate(3);
    }

    /// `{subcommand: {count, p50_ms, p99_ms, max_ms}}`.
    fn stats(&self) -> serde_json::Value {
        let mut map = serde_json::Map::new();
        for (sub, durations) in &self.by_subcommand {
            let mut d = durations.clone();
            d.sort_unstable();
            map.insert(sub.clone(), json!({
                "count": d.len(),
                "p50_ms": ms(percentile(&d, 50)),
                "p99_ms": ms(percentile(&d, 99)),
                "max_ms": ms(*d.last().unwrap_or(&0)),
            }));
        }
        serde_json::Value::Object(map)
    }
}

/// Durations kept per subcommand.
const MAX_SAMPLES: usize = 10_000;

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[u64], p: usize) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (p * sorted.len()).div_ceil(100).max(1);
    sorted[rank - 1]
}

fn ms(ns: u64) -> f64 {
    (ns as f64 / 1e6 * 10.0).round() / 10.0
}

impl<H: HostView> ExecCorrelator<H> {
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

    /// Remembers which container a `runc run`/`create` init belongs to.
    fn note_container_init(&mut self, ev: &Event, info: &ExecInfo, command: &RuncCommand) {
        let creates = matches!(command.subcommand.as_deref(), Some("run" | "create"));
        if let (Role::Container, true, 1, Some(id)) = (info.role, creates, info.ns_pid, &command.container) {
            // Bounded: a node runs far fewer containers.
            if self.known_inits.len() >= 65536 {
                self.known_inits.clear();
            }
            self.known_inits.insert(ev.pid, id.clone());
        }
    }

    /// Remembers the command an `exec` started in its container.
    fn note_exec_command(&mut self, ev: &Event, info: &ExecInfo, l: Lingering) {
        if info.role != Role::Container || l.command.subcommand.as_deref() != Some("exec") {
            return;
        }
        if self.commands.len() >= 65536 {
            self.commands.clear();
        }
        let cpu_at_start = self.host.cpu_of(ev.pid, ev.ts_ns);
        self.commands.insert(
            ev.pid,
            ExecCommand {
                started: l.started,
                command: l.command,
                state: l.state,
                failures: 0,
                argv: info.args.clone(),
                killed: None,
                cpu_at_start,
                output_pipes: l.output_pipes,
            },
        );
    }

    /// The command an exec started could not fork: the probe fails with
    /// the command's own message ("sh: can't fork"), which names no limit.
    fn command_fork_failed(&mut self, ev: &Event, syscall: &str, errno: i32) -> Option<Report> {
        if syscall == "setns" {
            return None;
        }
        let x = self.commands.get_mut(&ev.pid)?;
        x.failures += 1;
        if x.failures > 1 {
            return None;
        }
        let x = x.clone();
        let inv = x.invocation(ev.ts_ns);
        let failure = ForkFailure {
            first: ev.clone(),
            syscall: syscall.to_string(),
            errno,
            count: 1,
            pids: self.host.pids_limit(ev.pid, ev.cgroup_id, x.state.as_ref()),
            threads: self.host.thread_count(),
        };
        let (r, _) = fork_failed(&inv, &failure);
        let target = container_phrase(inv.command.container.as_deref());
        let message = format!(
            "{} exec into {target} started its command, but {}; the exec itself succeeded, and the command's own error (a shell's \"can't fork\") names no limit",
            inv.started.comm, r.message
        );
        Some(r.with("exec_command", true).with("command", json!(x.argv)).message(message))
    }

    /// The command an exec started exited: killed with SIGKILL by what
    /// kills an exec at its timeout, it is an exec probe that timed out
    /// (containerd's CRI plugin has the shim SIGKILL the command when
    /// ExecSync's timeout, the probe's timeoutSeconds, expires).
    fn exec_probe_timeout(&self, ev: &Event, status: ExitStatus, x: &ExecCommand) -> Option<Report> {
        if status.signal != SIGKILL {
            return None;
        }
        let k = x.killed.clone().filter(|k| k.sig == SIGKILL && kills_at_exec_timeout(&k.comm))?;
        let inv = x.invocation(ev.ts_ns);
        let runtime_ms = ev.ts_ns.saturating_sub(x.started.ts_ns) / 1_000_000;
        let killed_after_ms = k.ts_ns.saturating_sub(x.started.ts_ns) / 1_000_000;
        let shown = shown_argv(&x.argv);
        let target = container_phrase(inv.command.container.as_deref());
        // The command's life, from the counters at its start to now.
        let cpu = match &x.cpu_at_start {
            Some((cgroup, before)) => match self.host.cpu_reading(cgroup, ev.ts_ns) {
                Some(after) => CpuWindow::between(cgroup, before, &after),
                None => CpuWindow::Unmeasured("cgroup_gone", Some(cgroup.path.clone())),
            },
            None => CpuWindow::Unmeasured("no_reading_at_the_start", None),
        };
        let why = match cpu.explanation() {
            Some(limits) => format!("; {limits}"),
            None => format!("; {}", cpu.ruled_out()),
        };
        let message = format!(
            "the exec probe's command `{shown}` (pid {}) in {target} was killed with SIGKILL by {} (pid {}) {killed_after_ms} ms after {} {} started it ({runtime_ms} ms until it exited): the runtime kills an exec's command when its timeout (the probe's timeoutSeconds) expires; find why the command is slow, or raise timeoutSeconds{why}",
            ev.pid,
            k.comm,
            k.pid,
            inv.started.comm,
            inv.command.subcommand.as_deref().unwrap_or("exec"),
        );
        Some(
            cpu.add_counters_to(common(Report::new("exec_probe_timeout", ev), &inv))
                .with("command", json!(x.argv))
                .with("runtime_ms", runtime_ms)
                .with("killed_after_ms", killed_after_ms)
                .with("killed_by_pid", k.pid)
                .with("killed_by_comm", k.comm)
                .with("signal", signal_name(SIGKILL))
                .message(message),
        )
    }

    /// The command an exec started exited by itself, but a process it left
    /// in the container holds its output open: the runtime waits for the
    /// output to close before it answers the exec (containerd's ExecSync
    /// does), so the probe fails at its timeout though the command is done.
    fn exec_output_held(&self, ev: &Event, status: ExitStatus, x: &ExecCommand) -> Option<Report> {
        if status.signal != 0 || x.output_pipes.is_empty() {
            return None;
        }
        // The container's cgroup: from the runtime's state, else where its
        // CPU was read.
        let cgroup = x.state.as_ref().and_then(|s| s.pids_cgroup.clone()).or_else(|| x.cpu_at_start.as_ref().map(|(c, _)| c.cpu_dir.clone()))?;
        // The runtime's own stages (still ending, traced as its members or
        // lingering) hold the same pipes: not what the command left.
        let runtime = |pid: u32| self.members.contains_key(&pid) || self.lingering.contains_key(&pid);
        let holders: Vec<_> = self.host.pipe_holders(&cgroup, &x.output_pipes, ev.pid).into_iter().filter(|h| !runtime(h.pid)).collect();
        let h = holders.first()?;
        let inv = x.invocation(ev.ts_ns);
        let runtime_ms = ev.ts_ns.saturating_sub(x.started.ts_ns) / 1_000_000;
        let target = container_phrase(inv.command.container.as_deref());
        let stream = match h.fd {
            1 => "output".to_string(),
            2 => "error output".to_string(),
            fd => format!("output (as descriptor {fd})"),
        };
        let message = format!(
            "the exec probe's command `{}` (pid {}) in {target} exited with code {} {runtime_ms} ms after {} {} started it, but {} (pid {}) it left \
             running still holds its {stream}: the runtime answers the exec only once its output closes, so the probe fails at its \
             timeoutSeconds although the command is done; send that process's output elsewhere (`cmd >/dev/null 2>&1 &`) or do not leave it running",
            shown_argv(&x.argv),
            ev.pid,
            status.code,
            inv.started.comm,
            inv.command.subcommand.as_deref().unwrap_or("exec"),
            h.comm,
            h.pid,
        );
        Some(
            common(Report::new("exec_probe_output_held", ev), &inv)
                .with("command", json!(x.argv))
                .with("exit_code", status.code)
                .with("runtime_ms", runtime_ms)
                .with("held_by_pid", h.pid)
                .with("held_by_comm", h.comm.clone())
                .with("held_fd", h.fd)
                .with("holders", holders.len())
                .message(message),
        )
    }

    /// The command an exec started exited by itself with no verdict: kept
    /// when it ran long enough to be near any probe's timeout, for the
    /// enricher to judge against the pod's spec (`probe_near_timeout`).
    fn note_command_done(&mut self, ev: &Event, status: ExitStatus, x: ExecCommand) {
        let runtime_ms = ev.ts_ns.saturating_sub(x.started.ts_ns) / 1_000_000;
        if status.signal != 0 || runtime_ms <= NEAR_TIMEOUT_FLOOR_MS || self.commands_done.len() >= MAX_COMMANDS_DONE {
            return;
        }
        let Some(container_id) = x.command.container.clone() else { return };
        let inv = x.invocation(ev.ts_ns);
        let report = common(Report::new("probe_near_timeout", ev), &inv)
            .with("command", json!(x.argv))
            .with("exit_code", status.code)
            .with("runtime_ms", runtime_ms);
        self.commands_done.push(CommandDone { report, container_id, argv: x.argv, runtime_ms, cpu_at_start: x.cpu_at_start });
    }

    /// The commands noted by [`Self::note_command_done`] since the last call.
    pub fn take_commands_done(&mut self) -> Vec<CommandDone> {
        std::mem::take(&mut self.commands_done)
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

    fn on_syscall_failed(&mut self, ev: &Event, syscall: &str, nstype: i32, errno: i32) {
        let Some(&root) = self.members.get(&ev.pid) else { return };
        let Some(inv) = self.invocations.get_mut(&root) else { return };
        inv.last_ts = ev.ts_ns;
        if syscall == "setns" {
            inv.setns_failures.push(SetnsFailure { ev: ev.clone(), nstype, errno, went_on: false });
            return;
        }
        // The Go runtime retries thread creation in a loop: one verdict per
        // (process, syscall, errno), with a count.
        if let Some(f) = inv
            .fork_failures
            .iter_mut()
            .find(|f| f.first.pid == ev.pid && f.syscall == syscall && f.errno == errno)
        {
            f.count += 1;
            return;
        }
        // Read the limits now, while the failing process still exists.
        let container = inv.command.container.clone();
        let state = container.and_then(|id| self.host.container_state(&self.settings.runtime_roots, &id));
        let pids = self.host.pids_limit(ev.pid, ev.cgroup_id, state.as_ref());
        let threads = self.host.thread_count();
        let inv = self.invocations.get_mut(&root).expect("present");
        inv.fork_failures.push(ForkFailure {
            first: ev.clone(),
            syscall: syscall.to_string(),
            errno,
            count: 1,
            pids,
            threads,
        });
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

    fn container_init_exit(&mut self, ev: &Event, status: ExitStatus, root: Option<u32>, role: Role) -> Option<Report> {
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
        let r = Report::new(kind, ev).with("container_id", json!(container)).with("pod_uid", json!(pod_uid));
        let r = status.fields(r);
        Some(
            r.with("killed_by_pid", json!(killer.as_ref().map(|k| k.0)))
                .with("killed_by_comm", json!(killer.as_ref().map(|k| k.1.clone())))
                .with("cgroup", json!(cgroup))
                .with("cgroup_id", ev.cgroup_id)
                .message(message),
        )
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

    /// Containers the runtime still holds with their init gone: those seen
    /// to die `stopped_grace_ns` ago (evidence `observed`) and, once, those
    /// whose state already named a dead init when the tracer started
    /// (evidence `state`). Every exec into them fails, with or without a
    /// runc: containerd's shim refuses "cannot exec in a stopped state" by
    /// itself.
    fn held_stopped(&mut self, now_ns: u64) -> Vec<Report> {
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
            mode: crate::events::HookMode::Tracepoint,
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
        Report::new("exec_into_stopped_container", &anchor)
            .with("evidence", evidence)
            .with("container_id", state.id.clone())
            .with("pod_uid", json!(pod_uid))
            .with("cgroup", json!(cgroup))
            .with("container_cgroup", json!(cgroup))
            .with("init_pid", state.init_pid)
            .with("runtime_pid", json!(null))
            .with("subcommand", json!(null))
            .with("cause", cause)
            .message(message)
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

    /// Durations of runc calls that ended since the last call.
    pub fn take_durations(&mut self) -> Vec<(String, u64)> {
        std::mem::take(&mut self.recent)
    }

    /// Runtime latency over the whole run, for the summary.
    pub fn latency_summary(&self) -> serde_json::Value {
        self.total.stats()
    }

    /// Called periodically: closes the latency interval once it is long
    /// enough and judges it.
    pub fn tick(&mut self, now_ns: u64) -> Option<Report> {
        if self.interval.started_ns == 0 {
            // Nothing ended yet: a stuck call opens the interval, so it is
            // reported once per interval, not on every tick.
            if !self.backlog(now_ns).is_empty() {
                self.interval.started_ns = now_ns;
            }
            return None;
        }
        if now_ns.saturating_sub(self.interval.started_ns) < self.settings.latency_interval_ns {
            return None;
        }
        self.close_latency_interval(now_ns)
    }

    /// runc calls still running past the slow threshold: (pid, subcommand, age).
    fn backlog(&self, now_ns: u64) -> Vec<(u32, String, u64)> {
        self.invocations
            .values()
            .map(|inv| (inv.started.pid, inv.command.subcommand.clone().unwrap_or_default(), now_ns.saturating_sub(inv.started.ts_ns)))
            .filter(|(_, sub, age)| *age >= self.settings.slow_threshold_ns && !matches!(sub.as_str(), "run" | "events"))
            .collect()
    }

    /// `runtime_slow` when a subcommand's p99 in the interval, or a call
    /// still running, is past the threshold: kubelet's relist (PLEG) waits
    /// on these calls, and the node goes NotReady when a relist takes more
    /// than 3 minutes.
    fn close_latency_interval(&mut self, now_ns: u64) -> Option<Report> {
        let window = std::mem::take(&mut self.interval);
        let threshold = self.settings.slow_threshold_ns;
        let backlog = self.backlog(now_ns);
        let slow: Vec<(String, u64, usize)> = window
            .by_subcommand
            .iter()
            .map(|(sub, d)| {
                let mut d = d.clone();
                d.sort_unstable();
                (sub.clone(), percentile(&d, 99), d.len())
            })
            .filter(|(_, p99, _)| *p99 >= threshold)
            .collect();
        if slow.is_empty() && backlog.is_empty() {
            return None;
        }
        let mut parts: Vec<String> = slow
            .iter()
            .map(|(sub, p99, n)| format!("runc {sub} p99 {} ms over {n} calls", ms(*p99)))
            .collect();
        if !backlog.is_empty() {
            let oldest = backlog.iter().map(|b| b.2).max().unwrap_or(0);
            parts.push(format!("{} runc calls still running, the oldest for {} ms", backlog.len(), ms(oldest)));
        }
        let slowest: Vec<serde_json::Value> = window
            .slowest
            .iter()
            .map(|(d, pid, sub, c)| json!({ "pid": pid, "subcommand": sub, "container_id": c, "ms": ms(*d) }))
            .collect();
        let message = format!(
            "the container runtime is slow: {} (threshold {} ms); kubelet's pod lifecycle relist waits on such calls and the node turns NotReady (\"PLEG is not healthy\") when a relist passes 3 minutes: look at the runtime's load, its disk and the number of containers",
            parts.join("; "),
            ms(threshold)
        );
        let anchor = Event {
            ts_ns: now_ns,
            pid: window.slowest.first().map_or(0, |s| s.1),
            tid: 0,
            comm: "runc".into(),
            cgroup_id: 0,
            mode: crate::events::HookMode::Tracepoint,
            body: Body::Fork { child_tid: 0 },
        };
        Some(
            Report::new("runtime_slow", &anchor)
                .with("threshold_ms", ms(threshold))
                .with("interval_ms", ms(now_ns.saturating_sub(window.started_ns.min(now_ns))))
                .with("latency", window.stats())
                .with("slowest", slowest)
                .with("backlog", backlog.len())
                .message(message),
        )
    }

    /// The verdicts of one invocation, then the one-line story that ties
    /// them together. `end` is the first runc process's exit, if seen.
    fn judge(&mut self, inv: Invocation, end: Option<(&Event, ExitStatus)>) -> Vec<Report> {
        self.finished += 1;
        let sub = inv.command.subcommand.clone().unwrap_or_else(|| "?".into());
        // Latency maps and metric labels take known subcommands only: a
        // binary named runc anywhere must not mint label values.
        let label = known_subcommand(&sub).to_string();
        if let Some((e, _)) = end {
            let took = e.ts_ns.saturating_sub(inv.started.ts_ns);
            if self.interval.by_subcommand.is_empty() {
                self.interval.started_ns = inv.started.ts_ns;
            }
            self.interval.add(&label, took, inv.started.pid, inv.command.container.clone());
            self.total.add(&label, took, inv.started.pid, inv.command.container.clone());
            if self.recent.len() < 100_000 {
                self.recent.push((label.clone(), took));
            }
        }
        let container = inv.command.container.clone();
        let runc_failed = end.is_some_and(|(_, s)| s.failed());
        let mut verdicts: Vec<Report> = Vec::new();
        let mut causes: Vec<String> = Vec::new();
        // What runc itself said went wrong (its --log file), when it failed.
        let runtime_error = match &inv.command.log {
            Some(log) if runc_failed || !inv.deaths.is_empty() => self.host.runtime_log_error(log, inv.started_wall),
            _ => None,
        };

        // A runtime that exited 0 with no stage dead recovered from what
        // it tried and failed: crun probes setns per namespace (EINVAL for
        // the user namespace it is already in), runc 1.4 retries clone3
        // without CLONE_INTO_CGROUP. Those tries are no failure.
        let recovered = end.is_some_and(|(_, s)| !s.failed()) && inv.deaths.is_empty();
        // Where the runtime wrote its own error and it names no namespace,
        // its failed setns tries were not what failed (crun's missing
        // binary comes after its per-namespace tries).
        let setns_not_the_cause = runtime_error.as_deref().is_some_and(|e| !e.contains("setns") && !e.contains("namespace"));
        let fork_failures = if recovered { &[][..] } else { &inv.fork_failures[..] };
        let setns_failures = if recovered || setns_not_the_cause { &[][..] } else { &inv.setns_failures[..] };
        for f in fork_failures {
            let (r, cause) = fork_failed(&inv, f);
            verdicts.push(r);
            causes.push(cause);
        }
        for s in setns_failures.iter().filter(|s| !s.recovered()) {
            let ns = namespace_name(s.nstype);
            let why = match s.errno {
                22 => "the file it was given is not a namespace of that type (a torn-down pod sandbox leaves an empty placeholder behind)",
                2 | 3 => "the process or namespace to join is gone",
                1 => "not permitted (a user namespace or security module refused it)",
                _ => "the kernel refused it",
            };
            let cause = format!("setns({ns}) returned {}", errno_name(s.errno));
            let message = format!("{} (pid {}) could not join the container's {ns} namespace: {cause}: {why}", s.ev.comm, s.ev.pid);
            verdicts.push(
                common(Report::new("setns_failed", &s.ev), &inv)
                    .with("errno", s.errno)
                    .with("errno_name", errno_name(s.errno))
                    .with("nstype", s.nstype)
                    .with("namespace_type", ns)
                    .message(message),
            );
            causes.push(cause);
        }
        // The first stage to die is the one that matters; later ones are
        // its parents noticing. A stage that exited with a code after runc
        // wrote its error (missing binary, permission denied, bad cwd) did
        // not die: it reported, and runc's error is the cause.
        let reported = |d: &&Death| runtime_error.is_some() && d.status.signal == 0 && d.signal_before.is_none();
        if let Some(d) = inv.deaths.iter().filter(|d| !reported(d)).min_by_key(|d| d.ev.ts_ns) {
            let how = match (d.status.signal, d.signal_before) {
                (0, Some(sig)) => format!("died after {} (exit code {})", signal_name(sig), d.status.code),
                _ => d.status.describe().replacen("was killed", "died", 1).replacen("exited", "died", 1),
            };
            let because = causes.first().map(|c| format!(" after {c}")).unwrap_or_default();
            let message = format!(
                "runc init stage {} (pid {}) {how}{because}, before starting the container's command; runc reports this as \"read init-p: connection reset by peer\" (or an EOF from its init pipe)",
                d.ev.comm, d.ev.pid
            );
            let r = common(Report::new("runc_init_died", &d.ev), &inv);
            let r = d.status.fields(r)
                .with("signal_before", json!(d.signal_before.map(signal_name)))
                .with("stage", d.ev.comm.clone())
                .with("caused_by", json!(causes.first()))
                .message(message);
            causes.push(format!("runc init {how}"));
            verdicts.push(r);
        }
        if sub == "exec"
            && runc_failed
            && let Some(r) = self.exec_into_stopped(&inv, end.map(|(e, _)| e))
        {
            causes.push(r.field_str("cause").unwrap_or("its init is gone").to_string());
            verdicts.push(r);
            if let Some(id) = &container {
                self.reported_stopped.insert(id.clone());
            }
        }

        if let Some(e) = &runtime_error {
            causes.push(format!("runc reported: {e}"));
        }
        if verdicts.is_empty() && !runc_failed {
            return Vec::new();
        }
        self.failed += 1;
        // The story: one line a person reads. Verdict lines are still
        // written in JSON; text output shows the story instead of them.
        let target = match (container.as_deref(), inv.command.args_truncated) {
            (Some(c), _) => format!(" into container {c}"),
            (None, true) => " into a container (its ID was past the argv the kernel copied)".to_string(),
            (None, false) => String::new(),
        };
        let runtime = inv.started.comm.clone();
        let exit = match end {
            Some((_, s)) if s.failed() => format!(" ({})", s.describe().replace("exited with", "exit")),
            Some(_) => String::new(),
            None => " (runc still running)".to_string(),
        };
        let story = if causes.is_empty() {
            format!("{runtime} {sub}{target} failed{exit}; no fork, setns or init failure was seen (see {runtime}'s own error)")
        } else {
            format!("{runtime} {sub}{target} failed{exit}: {}", causes.join("; "))
        };
        let anchor = end.map_or(&inv.started, |(e, _)| e);
        let mut story_report = common(Report::new("runc_failed", anchor), &inv)
            .with("causes", json!(verdicts.iter().map(|v| v.kind).collect::<Vec<_>>()))
            .with("runtime_error", json!(runtime_error));
        if let Some((_, s)) = end {
            story_report = s.fields(story_report);
        }
        story_report.pid = inv.started.pid;
        story_report.comm = inv.started.comm.clone();
        let mut out: Vec<Report> = verdicts.into_iter().map(|r| r.grouped()).collect();
        out.push(story_report.message(story));
        out
    }

    fn exec_into_stopped(&self, inv: &Invocation, end: Option<&Event>) -> Option<Report> {
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
        Some(
            common(Report::new("exec_into_stopped_container", anchor), inv)
                .with("evidence", evidence)
                .with("init_pid", json!(init_pid))
                .with("cause", cause)
                .message(message)
                .grouped(),
        )
    }
}

/// The subcommands runc and crun have; anything else is "other".
pub fn known_subcommand(sub: &str) -> &str {
    const KNOWN: &[&str] = &[
        "checkpoint", "create", "delete", "events", "exec", "features", "init", "kill", "list", "pause", "ps", "restore",
        "resume", "run", "spec", "start", "state", "update",
    ];
    if KNOWN.contains(&sub) { sub } else { "other" }
}

fn by_runtime_killer(killer: &Option<(u32, String, i32)>, runtime_comms: &[String]) -> bool {
    killer.as_ref().is_some_and(|(_, comm, _)| runtime_comms.iter().any(|c| c == comm))
}

/// Fields every exec verdict carries: the container and its pod (from
/// the container's own cgroup: the runtime runs in its own, the shim's).
fn common(r: Report, inv: &Invocation) -> Report {
    let cgroup = inv.state.as_ref().and_then(|s| s.pids_cgroup.as_ref()).map(|p| p.to_string_lossy().into_owned());
    let pod_uid = cgroup.as_deref().and_then(|c| ContainerRef::from_cgroup_path(c).pod_uid);
    r.with("container_id", json!(inv.command.container))
        .with("args_truncated", inv.command.args_truncated)
        .with("runtime", inv.started.comm.clone())
        .with("runtime_pid", inv.started.pid)
        .with("subcommand", json!(inv.command.subcommand))
        .with("cgroup_id", inv.started.cgroup_id)
        .with("pod_uid", json!(pod_uid))
        .with("container_cgroup", json!(cgroup))
        .with("cgroup", json!(cgroup))
}

/// Whose limit a pids cgroup is: the container's own, its pod's (an
/// ancestor holding the pod UID), or, when it is no ancestor of the
/// container's cgroup, the runtime's (the shim's and runc's, e.g.
/// containerd.service).
fn limit_scope(limit_cgroup: &str, inv: &Invocation) -> &'static str {
    let container_cgroup = inv.state.as_ref().and_then(|s| s.pids_cgroup.as_ref()).map(|p| p.to_string_lossy().into_owned());
    let under = |c: &str| c == limit_cgroup || c.starts_with(&format!("{}/", limit_cgroup.trim_end_matches('/')));
    let named = ContainerRef::from_cgroup_path(limit_cgroup);
    match container_cgroup.as_deref() {
        Some(c) if c == limit_cgroup => "container",
        Some(c) if under(c) => if named.pod_uid.is_some() { "pod" } else { "node" },
        _ if named.container_id.is_some() || inv.command.container.as_deref().is_some_and(|id| limit_cgroup.contains(id)) => "container",
        _ if named.pod_uid.is_some() => "pod",
        Some(_) => "runtime",
        None => "unknown",
    }
}

fn fork_failed(inv: &Invocation, f: &ForkFailure) -> (Report, String) {
    let errno = errno_name(f.errno);
    let mut cause = format!("{} returned {errno}", f.syscall);
    let mut limit_sentence = String::new();
    let mut r = common(Report::new("fork_failed", &f.first), inv)
        .with("syscall", f.syscall.clone())
        .with("errno", f.errno)
        .with("errno_name", errno.clone())
        .with("count", f.count);
    let max_text = |l: &PidsLimit| l.max.map_or("max".to_string(), |m| m.to_string());
    if let Some(l) = &f.pids {
        r = r
            .with("cgroup", l.cgroup.clone())
            .with("pids_current", l.current)
            .with("pids_max", json!(l.max));
        let scope = limit_scope(&l.cgroup, inv);
        r = r.with("limit_scope", scope);
        if l.exhausted() {
            cause.push_str(&format!(" (pids.current {} = pids.max {} in {})", l.current, max_text(l), l.cgroup));
            limit_sentence = match scope {
                "runtime" => {
                    let unit = l.cgroup.trim_end_matches('/').rsplit('/').next().unwrap_or(&l.cgroup);
                    format!(
                        "the container runtime's cgroup ({unit}) is at its pids limit (pids.current {} = pids.max {} in {}), not the container's: the runtime's own fork failed before the container was touched; raise TasksMax= of {unit} (systemctl set-property {unit} TasksMax=...) or of the runtime's slice, or find what fills it (leaked shims or runtime processes)",
                        l.current, max_text(l), l.cgroup
                    )
                }
                "pod" => format!(
                    "the pod's pids limit is exhausted (pids.current {} = pids.max {} in {}); raise it (kubelet podPidsLimit) or find which of the pod's containers fills it",
                    l.current, max_text(l), l.cgroup
                ),
                _ => format!("the pids limit of cgroup {} is exhausted; raise it (the pod's pids limit, kubelet podPidsLimit) or find what fills it", l.cgroup),
            };
        }
    } else {
        r = r.with("cgroup", json!(null)).with("pids_current", json!(null)).with("pids_max", json!(null));
    }
    if let Some(t) = f.threads {
        // Node-wide limit: relevant when it is (nearly) reached.
        if t.threads * 10 >= t.threads_max * 9 {
            r = r.with("threads", t.threads).with("threads_max", t.threads_max);
            cause.push_str(&format!(" ({} tasks of kernel.threads-max {})", t.threads, t.threads_max));
            if limit_sentence.is_empty() {
                limit_sentence = "the node is at kernel.threads-max; raise it or find the process leaking threads".into();
            }
        }
    }
    if limit_sentence.is_empty() {
        limit_sentence = match (f.errno, &f.pids) {
            (EAGAIN, Some(l)) => format!(
                "EAGAIN with pids.current {} of pids.max {} in {} (the limit may have been reached only briefly, or RLIMIT_NPROC applies)",
                l.current, max_text(l), l.cgroup
            ),
            (EAGAIN, None) => "EAGAIN: a pids cgroup limit, kernel.threads-max or RLIMIT_NPROC was reached".into(),
            (12, _) => "ENOMEM: the kernel could not allocate the new task (memory pressure or the cgroup's memory limit)".into(),
            _ => "the kernel refused to create a process".into(),
        };
    }
    let times = if f.count > 1 { format!(" {} times", f.count) } else { String::new() };
    let message = format!(
        "{} (pid {}) could not create a process or thread: {} failed with {errno}{times}: {limit_sentence}",
        f.first.comm, f.first.pid, f.syscall
    );
    (r.message(message), cause)
}

#[cfg(test)]
mod tests;

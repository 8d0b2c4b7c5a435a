//! The command an exec started in its container (an exec probe's `sh -c
//! ...`), while it runs and when it ends: it could not fork, it was killed
//! at its timeout, its output was held open, or it ran near a timeout.

use super::*;

/// The command a traced `exec` started in a container (an exec probe's
/// `sh -c ...`), while it runs: its own failed forks are the probe's
/// failure ("sh: can't fork"), though the runtime succeeded.
#[derive(Debug, Clone)]
pub(super) struct ExecCommand {
    pub(super) started: Event,
    pub(super) command: RuncCommand,
    pub(super) state: Option<ContainerState>,
    /// Failed forks so far: the first is reported, a shell gives up then.
    pub(super) failures: u32,
    /// Its argv, as the kernel copied it.
    pub(super) argv: Vec<String>,
    /// The last fatal signal another process sent it.
    pub(super) killed: Option<Kill>,
    /// Its cgroup's CPU counters when it started: a probe killed at its
    /// timeout says what its container's limits did over its life.
    pub(super) cpu_at_start: Option<(ServingCgroup, CpuReading)>,
    /// The pipes its output goes to: its runtime's ([`Invocation`]).
    pub(super) output_pipes: Vec<u64>,
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
pub(super) struct Kill {
    pub(super) pid: u32,
    pub(super) comm: String,
    pub(super) sig: i32,
    pub(super) ts_ns: u64,
}

const SIGKILL: i32 = 9;

/// The container's CPU over a command's life: from the counters read when
/// it started to its cgroup's counters at `end_ns`.
pub(crate) fn cpu_over_life<H: ProcessFacts>(host: &H, at_start: Option<&(ServingCgroup, CpuReading)>, end_ns: u64) -> CpuWindow {
    match at_start {
        Some((cgroup, before)) => match host.cpu_reading(cgroup, end_ns) {
            Some(after) => CpuWindow::between(cgroup, before, &after),
            None => CpuWindow::Unmeasured("cgroup_gone", Some(cgroup.path.clone())),
        },
        None => CpuWindow::Unmeasured("no_reading_at_the_start", None),
    }
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
impl<H: ProcessFacts> ExecCorrelator<H> {
    /// Remembers the command an `exec` started in its container.
    pub(super) fn note_exec_command(&mut self, ev: &Event, info: &ExecInfo, l: Lingering) {
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
    pub(super) fn command_fork_failed(&mut self, ev: &Event, syscall: &str, errno: i32) -> Option<Report> {
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
        Some(r.with("exec_command", true).with_command(&x.argv).message(message))
    }

    /// The command an exec started exited: killed with SIGKILL by what
    /// kills an exec at its timeout, it is an exec probe that timed out
    /// (containerd's CRI plugin has the shim SIGKILL the command when
    /// ExecSync's timeout, the probe's timeoutSeconds, expires).
    pub(super) fn exec_probe_timeout(&self, ev: &Event, status: ExitStatus, x: &ExecCommand) -> Option<Report> {
        if status.signal != SIGKILL {
            return None;
        }
        let k = x.killed.clone().filter(|k| k.sig == SIGKILL && kills_at_exec_timeout(&k.comm))?;
        let inv = x.invocation(ev.ts_ns);
        let runtime_ms = ev.ts_ns.saturating_sub(x.started.ts_ns) / 1_000_000;
        let killed_after_ms = k.ts_ns.saturating_sub(x.started.ts_ns) / 1_000_000;
        let shown = shown_argv(&x.argv);
        let target = container_phrase(inv.command.container.as_deref());
        let cpu = cpu_over_life(&self.host, x.cpu_at_start.as_ref(), ev.ts_ns);
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
                .with_command(&x.argv)
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
    pub(super) fn exec_output_held(&self, ev: &Event, status: ExitStatus, x: &ExecCommand) -> Option<Report> {
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
                .with_command(&x.argv)
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
    pub(super) fn note_command_done(&mut self, ev: &Event, status: ExitStatus, x: ExecCommand) {
        let runtime_ms = ev.ts_ns.saturating_sub(x.started.ts_ns) / 1_000_000;
        if status.signal != 0 || runtime_ms <= NEAR_TIMEOUT_FLOOR_MS || self.commands_done.len() >= MAX_COMMANDS_DONE {
            return;
        }
        let Some(container_id) = x.command.container.clone() else { return };
        let inv = x.invocation(ev.ts_ns);
        let report = common(Report::new("probe_near_timeout", ev), &inv)
            .with_command(&x.argv)
            .with("exit_code", status.code)
            .with("runtime_ms", runtime_ms);
        self.commands_done.push(CommandDone { report, container_id, argv: x.argv, runtime_ms, cpu_at_start: x.cpu_at_start });
    }

    /// The commands noted by [`Self::note_command_done`] since the last call.
    pub fn take_commands_done(&mut self) -> Vec<CommandDone> {
        std::mem::take(&mut self.commands_done)
    }
}

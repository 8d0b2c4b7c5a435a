//! The failures an invocation collects (forks, setns, deaths of runtime
//! stages), and the verdicts and one-line story they make.

use super::*;

#[derive(Debug, Clone)]
pub(super) struct ForkFailure {
    pub(super) first: Event,
    pub(super) syscall: String,
    pub(super) errno: i32,
    pub(super) count: u32,
    pub(super) pids: Option<PidsLimit>,
    pub(super) threads: Option<ThreadCount>,
}

#[derive(Debug, Clone)]
pub(super) struct SetnsFailure {
    pub(super) ev: Event,
    pub(super) nstype: i32,
    pub(super) errno: i32,
    /// The process forked after it: it got past joining namespaces.
    pub(super) went_on: bool,
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
pub(super) struct Death {
    pub(super) ev: Event,
    pub(super) status: ExitStatus,
    /// A fatal signal the process got (or raised) before it died: a Go
    /// runtime abort ends as exit code 2 after SIGABRT.
    pub(super) signal_before: Option<i32>,
}
impl<H: ProcessFacts> ExecCorrelator<H> {
    pub(super) fn on_syscall_failed(&mut self, ev: &Event, syscall: &str, nstype: i32, errno: i32) {
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

    /// The verdicts of one invocation, then the one-line story that ties
    /// them together. `end` is the first runc process's exit, if seen.
    pub(super) fn judge(&mut self, inv: Invocation, end: Option<(&Event, ExitStatus)>) -> Vec<Report> {
        self.finished += 1;
        let sub = inv.command.subcommand.clone().unwrap_or_else(|| "?".into());
        if let Some((e, _)) = end {
            self.record_duration(&inv, &sub, e.ts_ns.saturating_sub(inv.started.ts_ns));
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
            let (r, cause) = setns_failed(&inv, s);
            verdicts.push(r);
            causes.push(cause);
        }
        // The first stage to die is the one that matters; later ones are
        // its parents noticing. A stage that exited with a code after runc
        // wrote its error (missing binary, permission denied, bad cwd) did
        // not die: it reported, and runc's error is the cause.
        // crun has no init protocol: its child writes its own error and
        // exits with a code, which crun passes on; only a signal kills it.
        let writes_own_errors = inv.started.comm == "crun";
        let reported =
            |d: &&Death| (runtime_error.is_some() || writes_own_errors) && d.status.signal == 0 && d.signal_before.is_none();
        if let Some(d) = inv.deaths.iter().filter(|d| !reported(d)).min_by_key(|d| d.ev.ts_ns) {
            let (r, cause) = init_died(&inv, d, causes.first());
            causes.push(cause);
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
        let reporter = inv.deaths.iter().find(|d| reported(d));
        let story = story(&inv, &sub, end, &causes, reporter, &verdicts, runtime_error);
        let mut out: Vec<Report> = verdicts.into_iter().map(|r| r.grouped()).collect();
        out.push(story);
        out
    }

    /// A finished call's duration, for the latency summary and
    /// `runtime_slow`.
    fn record_duration(&mut self, inv: &Invocation, sub: &str, took: u64) {
        // Latency maps and metric labels take known subcommands only: a
        // binary named runc anywhere must not mint label values.
        let label = known_subcommand(sub).to_string();
        if self.interval.by_subcommand.is_empty() {
            self.interval.started_ns = inv.started.ts_ns;
        }
        self.interval.add(&label, took, inv.started.pid, inv.command.container.clone());
        self.total.add(&label, took, inv.started.pid, inv.command.container.clone());
        if self.recent.len() < 100_000 {
            self.recent.push((label, took));
        }
    }
}

/// The story (`runc_failed`): one line a person reads. Verdict lines are
/// still written in JSON; text output shows the story instead of them.
fn story(
    inv: &Invocation,
    sub: &str,
    end: Option<(&Event, ExitStatus)>,
    causes: &[String],
    reporter: Option<&Death>,
    verdicts: &[Report],
    runtime_error: Option<String>,
) -> Report {
    let container = inv.command.container.clone();
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
    let story = if let (true, Some(d)) = (causes.is_empty(), reporter) {
        format!(
            "{runtime} {sub}{target} failed{exit}: its child {} (pid {}) exited with code {} after writing {runtime}'s own error \
             (a missing binary, a bad working directory, a permission: the kubelet's probe message carries its text); \
             no fork or namespace join failed",
            d.ev.comm, d.ev.pid, d.status.code
        )
    } else if causes.is_empty() {
        format!("{runtime} {sub}{target} failed{exit}; no fork, setns or init failure was seen (see {runtime}'s own error)")
    } else {
        format!("{runtime} {sub}{target} failed{exit}: {}", causes.join("; "))
    };
    let anchor = end.map_or(&inv.started, |(e, _)| e);
    let mut story_report = common(Report::new("runc_failed", anchor), inv).with("runtime_error", json!(runtime_error));
    story_report.causes = Some(verdicts.iter().map(|v| v.kind).collect());
    if let Some((_, s)) = end {
        story_report = s.fields(story_report);
    }
    story_report.pid = inv.started.pid;
    story_report.comm = inv.started.comm.clone();
    story_report.message(story)
}

fn setns_failed(inv: &Invocation, s: &SetnsFailure) -> (Report, String) {
    let ns = namespace_name(s.nstype);
    let why = match s.errno {
        22 => "the file it was given is not a namespace of that type (a torn-down pod sandbox leaves an empty placeholder behind)",
        2 | 3 => "the process or namespace to join is gone",
        1 => "not permitted (a user namespace or security module refused it)",
        _ => "the kernel refused it",
    };
    let cause = format!("setns({ns}) returned {}", errno_name(s.errno));
    let message = format!("{} (pid {}) could not join the container's {ns} namespace: {cause}: {why}", s.ev.comm, s.ev.pid);
    let r = common(Report::new("setns_failed", &s.ev), inv)
        .with("errno", s.errno)
        .with("errno_name", errno_name(s.errno))
        .with("nstype", s.nstype)
        .with("namespace_type", ns)
        .message(message);
    (r, cause)
}

/// The first runc init stage to die (`runc_init_died`), after `first_cause`
/// if something failed before it.
fn init_died(inv: &Invocation, d: &Death, first_cause: Option<&String>) -> (Report, String) {
    let how = match (d.status.signal, d.signal_before) {
        (0, Some(sig)) => format!("died after {} (exit code {})", signal_name(sig), d.status.code),
        _ => d.status.describe().replacen("was killed", "died", 1).replacen("exited", "died", 1),
    };
    let because = first_cause.map(|c| format!(" after {c}")).unwrap_or_default();
    let message = format!(
        "runc init stage {} (pid {}) {how}{because}, before starting the container's command; runc reports this as \"read init-p: connection reset by peer\" (or an EOF from its init pipe)",
        d.ev.comm, d.ev.pid
    );
    let r = d
        .status
        .fields(common(Report::new("runc_init_died", &d.ev), inv))
        .with("signal_before", json!(d.signal_before.map(signal_name)))
        .with("stage", d.ev.comm.clone())
        .with("caused_by", json!(first_cause))
        .message(message);
    (r, format!("runc init {how}"))
}

/// Fields every exec verdict carries: the container and its pod (from
/// the container's own cgroup: the runtime runs in its own, the shim's).
pub(super) fn common(r: Report, inv: &Invocation) -> Report {
    let cgroup = inv.state.as_ref().and_then(|s| s.pids_cgroup.as_ref()).map(|p| p.to_string_lossy().into_owned());
    let pod_uid = cgroup.as_deref().and_then(|c| ContainerRef::from_cgroup_path(c).pod_uid);
    let workload = Workload {
        container_id: Slot::of(inv.command.container.clone()),
        cgroup_id: Slot::Known(inv.started.cgroup_id),
        pod_uid: Slot::of(pod_uid),
        cgroup: Slot::of(cgroup.clone()),
    };
    r.with_workload(workload)
        .with("args_truncated", inv.command.args_truncated)
        .with("runtime", inv.started.comm.clone())
        .with("runtime_pid", inv.started.pid)
        .with("subcommand", json!(inv.command.subcommand))
        .with("container_cgroup", json!(cgroup))
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

pub(super) fn fork_failed(inv: &Invocation, f: &ForkFailure) -> (Report, String) {
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
        // `cgroup` names the limit that was full.
        r.workload.cgroup = Slot::Known(l.cgroup.clone());
        r = r
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
        r.workload.cgroup = Slot::Unknown;
        r = r.with("pids_current", json!(null)).with("pids_max", json!(null));
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

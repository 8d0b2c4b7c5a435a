//! The exec correlator over recorded event sequences: `runc_bare_6.18.jsonl`
//! is a real `probe-tracer run --record` of the runc scenario (healthy exec,
//! pids-limited exec, setns into a torn-down netns, exec into a container
//! whose init was killed) on the bare 6.18 kernel.

use super::*;
use crate::{
    events::Mode,
    processes::{ContainerState, StaticProcesses},
};

const RECORDED: &str = include_str!("runc_bare_6.18.jsonl");

fn recorded() -> Vec<Event> {
    RECORDED.lines().map(|l| serde_json::from_str(l).expect("recorded event")).collect()
}

fn exhausted_host() -> StaticProcesses {
    StaticProcesses {
        pids: Some(PidsLimit { cgroup: "/sys/fs/cgroup/pids/pt-probe".into(), current: 1, max: Some(1) }),
        threads: Some(ThreadCount { threads: 300, threads_max: 200_000 }),
        ..Default::default()
    }
}

fn run_all(host: StaticProcesses, events: &[Event]) -> Vec<Report> {
    let mut c = ExecCorrelator::new(ExecSettings::default(), host);
    let mut out: Vec<Report> = events.iter().flat_map(|e| c.handle(e)).collect();
    let last = events.last().map_or(0, |e| e.ts_ns);
    out.extend(c.finish(last));
    out
}

fn only<'a>(reports: &'a [Report], kind: &str) -> Vec<&'a Report> {
    reports.iter().filter(|r| r.kind == kind).collect()
}

#[test]
fn recorded_scenario_gives_one_story_per_failed_invocation() {
    let reports = run_all(exhausted_host(), &recorded());
    let kinds: Vec<&str> = reports.iter().map(|r| r.kind).collect();
    assert_eq!(
        kinds,
        [
            "fork_failed", "runc_init_died", "runc_failed", // pids limit
            "setns_failed", "runc_init_died", "runc_failed", // torn-down netns
            "container_init_exit", "exec_into_stopped_container", "runc_failed", // stopped
        ]
    );
    // Components are grouped under their story; the story and the
    // independent init exit are not.
    for r in &reports {
        assert_eq!(r.grouped, !matches!(r.kind, "runc_failed" | "container_init_exit"), "{}", r.kind);
    }
}

#[test]
fn pids_limit_fork_failure_names_the_cgroup_and_counts_retries() {
    let reports = run_all(exhausted_host(), &recorded());
    let f = only(&reports, "fork_failed")[0];
    assert_eq!(f.comm, "runc:[2:INIT]");
    assert_eq!(f.to_json()["syscall"], "clone3");
    assert_eq!(f.to_json()["errno"], 11);
    assert_eq!(f.to_json()["errno_name"], "EAGAIN");
    assert_eq!(f.to_json()["count"], 20);
    assert_eq!(f.to_json()["pids_current"], 1);
    assert_eq!(f.to_json()["pids_max"], 1);
    assert_eq!(f.to_json()["container_id"], "pt-probe");
    assert!(f.message.contains("pids limit of cgroup /sys/fs/cgroup/pids/pt-probe is exhausted"), "{}", f.message);
    // threads-max is far away: not mentioned.
    assert!(!f.fields.contains_key("threads_max"));

    let died = only(&reports, "runc_init_died")[0];
    assert_eq!(died.pid, f.pid);
    assert_eq!(died.to_json()["signal_before"], "SIGABRT");
    assert_eq!(died.to_json()["exit_code"], 2);
    assert_eq!(died.to_json()["caused_by"], "clone3 returned EAGAIN (pids.current 1 = pids.max 1 in /sys/fs/cgroup/pids/pt-probe)");
    assert!(died.message.contains("read init-p: connection reset by peer"));

    let story = only(&reports, "runc_failed")[0];
    assert_eq!(story.comm, "runc");
    assert_eq!(
        story.message,
        "runc exec into container pt-probe failed (exit code 255): clone3 returned EAGAIN \
         (pids.current 1 = pids.max 1 in /sys/fs/cgroup/pids/pt-probe); runc init died after SIGABRT (exit code 2)"
    );
}

#[test]
fn setns_failure_names_the_namespace_and_errno() {
    let reports = run_all(exhausted_host(), &recorded());
    let s = only(&reports, "setns_failed")[0];
    assert_eq!(s.comm, "runc:[1:CHILD]");
    assert_eq!(s.to_json()["namespace_type"], "net");
    assert_eq!(s.to_json()["errno_name"], "EINVAL");
    assert_eq!(s.to_json()["subcommand"], "run");
    assert_eq!(s.to_json()["container_id"], "pt-netns");
    let died = only(&reports, "runc_init_died")[1];
    assert_eq!(died.to_json()["stage"], "runc:[1:CHILD]");
    assert_eq!(died.to_json()["exit_code"], 1);
}

#[test]
fn killed_container_init_then_exec_into_it() {
    let reports = run_all(exhausted_host(), &recorded());
    let exit = only(&reports, "container_init_exit")[0];
    assert_eq!(exit.comm, "sleep");
    assert_eq!(exit.to_json()["container_id"], "pt-stopped");
    assert_eq!(exit.to_json()["signal"], "SIGKILL");
    assert_eq!(exit.to_json()["killed_by_comm"], "bash");
    let stopped = only(&reports, "exec_into_stopped_container")[0];
    assert_eq!(stopped.to_json()["container_id"], "pt-stopped");
    assert_eq!(stopped.to_json()["evidence"], "observed");
    assert_eq!(stopped.to_json()["init_pid"], exit.pid);
}

#[test]
fn successful_and_non_exec_invocations_say_nothing() {
    let events = recorded();
    // The first invocation (up to the first runc exit) is a healthy exec.
    let end = events
        .iter()
        .position(|e| e.comm == "runc" && matches!(e.body, Body::Exit { .. }))
        .unwrap();
    assert!(run_all(exhausted_host(), &events[..=end]).is_empty());
}

fn ev(ts_ns: u64, pid: u32, comm: &str, body: Body) -> Event {
    Event { ts_ns, pid, tid: pid, comm: comm.into(), cgroup_id: 7, mode: Mode::Tracepoint, body }
}

fn runc_exec(ts: u64, pid: u32, args: &[&str]) -> Event {
    ev(
        ts,
        pid,
        "runc",
        Body::Exec(ExecInfo {
            ppid: 1,
            ns_pid: pid,
            ns_level: 0,
            role: Role::Runtime,
            filename: "/usr/sbin/runc".into(),
            args: args.iter().map(|s| s.to_string()).collect(),
            args_truncated: false,
        }),
    )
}

fn exit(ts: u64, pid: u32, comm: &str, raw: i32) -> Event {
    ev(ts, pid, comm, Body::Exit { exit_code: raw, ns_pid: pid, ppid: 1, group_dead: true, ns_level: 0, role: Role::Runtime })
}

#[test]
fn exec_into_a_container_stopped_before_the_tracer_started() {
    let host = StaticProcesses {
        containers: vec![ContainerState { id: "c9".into(), init_pid: 4242, init_alive: false, pids_cgroup: None }],
        ..Default::default()
    };
    let events = [runc_exec(1, 100, &["runc", "--root", "/run/x", "exec", "c9", "cat", "/ready"]), exit(2, 100, "runc", 255 << 8)];
    let reports = run_all(host.clone(), &events);
    let stopped = only(&reports, "exec_into_stopped_container");
    assert_eq!(stopped.len(), 1);
    assert_eq!(stopped[0].to_json()["evidence"], "state");
    assert!(stopped[0].message.contains("pid 4242"));

    // Same, but the container is alive: a failure with no known cause.
    let alive = StaticProcesses {
        containers: vec![ContainerState { id: "c9".into(), init_pid: 4242, init_alive: true, pids_cgroup: None }],
        ..Default::default()
    };
    let reports = run_all(alive, &events);
    assert_eq!(reports.iter().map(|r| r.kind).collect::<Vec<_>>(), ["runc_failed"]);
}

#[test]
fn quiet_failed_invocation_is_judged_by_expire() {
    let settings = ExecSettings { slow_threshold_ns: u64::MAX / 2, ..Default::default() };
    let mut c = ExecCorrelator::new(settings, exhausted_host());
    c.handle(&runc_exec(1_000, 100, &["runc", "exec", "c1", "true"]));
    c.handle(&ev(2_000, 100, "runc", Body::Fork { child_tid: 101 }));
    c.handle(&ev(3_000, 101, "runc", Body::SyscallFailed { syscall: "clone".into(), nstype: 0, errno: 11 }));
    assert!(c.expire(5_000).is_empty(), "too early");
    let reports = c.expire(3_000 + ExecSettings::default().idle_ns);
    assert_eq!(reports.iter().map(|r| r.kind).collect::<Vec<_>>(), ["fork_failed", "runc_failed"]);
    assert!(reports[1].message.contains("runc still running"), "{}", reports[1].message);
    assert_eq!(c.in_flight(), 0);
}

/// A runtime whose own tries fail and that then succeeds says nothing:
/// crun's setns per namespace (EINVAL for the user namespace it is in),
/// runc 1.4's clone3 with CLONE_INTO_CGROUP retried without it. The same
/// tries in a runtime that then fails are its story.
#[test]
fn failed_tries_of_a_runtime_that_then_succeeds_are_no_verdict() {
    let run = |exit_raw: i32| {
        let mut c = ExecCorrelator::new(ExecSettings { slow_threshold_ns: u64::MAX / 2, ..Default::default() }, exhausted_host());
        let mut out = Vec::new();
        out.extend(c.handle(&runc_exec(1_000, 100, &["runc", "exec", "c1", "true"])));
        out.extend(c.handle(&ev(2_000, 100, "runc", Body::SyscallFailed { syscall: "setns".into(), nstype: 0x1000_0000, errno: 22 })));
        out.extend(c.handle(&ev(2_200, 100, "runc", Body::SyscallFailed { syscall: "setns".into(), nstype: 0x4000_0000, errno: 22 })));
        out.extend(c.handle(&ev(2_500, 100, "runc", Body::SyscallFailed { syscall: "clone3".into(), nstype: 0, errno: 1 })));
        out.extend(c.handle(&exit(3_000, 100, "runc", exit_raw)));
        out.extend(c.finish(4_000));
        out.into_iter().map(|r| r.kind).collect::<Vec<_>>()
    };
    assert_eq!(run(0), Vec::<&str>::new());
    // The user namespace's EINVAL is never a cause (setns(2): already a
    // member); the net namespace's is.
    assert_eq!(run(1 << 8), ["fork_failed", "setns_failed", "runc_failed"]);
}

/// crun's per-namespace setns tries, then a missing binary: the story's
/// cause is crun's own error, not the tries; an error naming a namespace
/// keeps them.
#[test]
fn setns_tries_are_no_cause_when_the_runtimes_own_error_names_another() {
    let run = |error: &str| {
        let log = "/run/bundle/log.json";
        let host = StaticProcesses { runtime_logs: [(log.to_string(), format!("{{\"level\":\"error\",\"msg\":\"{error}\"}}"))].into(), ..Default::default() };
        let mut c = ExecCorrelator::new(ExecSettings { slow_threshold_ns: u64::MAX / 2, ..Default::default() }, host);
        let mut out = Vec::new();
        out.extend(c.handle(&runc_exec(1_000, 100, &["crun", "--log", log, "exec", "c1", "/bin/nonexistent"])));
        out.extend(c.handle(&ev(2_000, 100, "runc", Body::SyscallFailed { syscall: "setns".into(), nstype: 0x4000_0000, errno: 22 })));
        out.extend(c.handle(&exit(3_000, 100, "runc", 1 << 8)));
        out.extend(c.finish(4_000));
        out
    };
    let reports = run("executable file `/bin/nonexistent` not found in $PATH: No such file or directory");
    assert_eq!(reports.iter().map(|r| r.kind).collect::<Vec<_>>(), ["runc_failed"], "{reports:?}");
    assert!(reports[0].message.contains("/bin/nonexistent"), "{}", reports[0].message);
    let reports = run("nsexec: failed to setns into netns: Invalid argument");
    assert_eq!(reports.iter().map(|r| r.kind).collect::<Vec<_>>(), ["setns_failed", "runc_failed"]);
}

#[test]
fn node_wide_thread_limit_is_named_when_reached() {
    let host = StaticProcesses { threads: Some(ThreadCount { threads: 9_990, threads_max: 10_000 }), ..Default::default() };
    let events = [
        runc_exec(1, 100, &["runc", "exec", "c1", "true"]),
        ev(2, 100, "runc", Body::SyscallFailed { syscall: "clone".into(), nstype: 0, errno: 11 }),
        exit(3, 100, "runc", 1 << 8),
    ];
    let reports = run_all(host, &events);
    let f = only(&reports, "fork_failed")[0];
    assert_eq!(f.to_json()["threads_max"], 10_000);
    assert!(f.message.contains("kernel.threads-max"), "{}", f.message);
}

#[test]
fn runc_command_lines() {
    let parse = |s: &str| parse_runc_args(&s.split(' ').map(String::from).collect::<Vec<_>>(), "runc");
    // What containerd's shim runs for an exec probe.
    let c = parse("runc --root /run/containerd/runc/k8s.io --log /run/x/log.json --log-format json exec --process /tmp/runc-process1 --detach --pid-file /run/x/p.pid 3f2a9c");
    assert_eq!(c.subcommand.as_deref(), Some("exec"));
    assert_eq!(c.container.as_deref(), Some("3f2a9c"));
    assert_eq!(c.root.as_deref(), Some("/run/containerd/runc/k8s.io"));
    let c = parse("runc --root=/r run -d --bundle /b pt-probe");
    assert_eq!((c.subcommand.as_deref(), c.container.as_deref(), c.root.as_deref()), (Some("run"), Some("pt-probe"), Some("/r")));
    // A wrapper script: argv starts with the interpreter.
    let c = parse("/bin/sh /usr/local/bin/runc --root /r state c1");
    assert_eq!((c.subcommand.as_deref(), c.container.as_deref()), (Some("state"), Some("c1")));
    let c = parse("runc init");
    assert_eq!((c.subcommand.as_deref(), c.container), (Some("init"), None));
}

#[test]
fn names_for_people() {
    assert_eq!(errno_name(11), "EAGAIN");
    assert_eq!(errno_name(22), "EINVAL");
    assert_eq!(signal_name(9), "SIGKILL");
    assert_eq!(namespace_name(0x4000_0000), "net");
    assert_eq!(ExitStatus::from_raw(9).describe(), "was killed by SIGKILL");
    assert_eq!(ExitStatus::from_raw(2 << 8).describe(), "exited with code 2");
}

fn runc_call(c: &mut ExecCorrelator<StaticProcesses>, start: u64, pid: u32, sub: &str, took: u64) -> Vec<Report> {
    let mut out = c.handle(&runc_exec(start, pid, &["runc", sub, "c1"]));
    out.extend(c.handle(&exit(start + took, pid, "runc", 0)));
    out
}

#[test]
fn slow_runtime_calls_raise_runtime_slow_with_percentiles() {
    const MS: u64 = 1_000_000;
    let mut c = ExecCorrelator::new(ExecSettings::default(), StaticProcesses::default());
    let mut t = 1_000 * MS;
    // 20 fast `runc state` calls, then 3 that take 1.5 s (a stuck runtime).
    for i in 0..20 {
        assert!(runc_call(&mut c, t, 100 + i, "state", 20 * MS).is_empty());
        t += 100 * MS;
    }
    assert!(c.tick(t).is_none(), "interval not over yet");
    for i in 0..3 {
        assert!(runc_call(&mut c, t, 200 + i, "state", 1_500 * MS).is_empty());
        t += 1_600 * MS;
    }
    let r = c.tick(t + 10_000 * MS).expect("runtime_slow");
    assert_eq!(r.kind, "runtime_slow");
    assert_eq!(r.to_json()["latency"]["state"]["count"], 23);
    assert_eq!(r.to_json()["latency"]["state"]["p99_ms"], 1500.0);
    assert_eq!(r.to_json()["latency"]["state"]["p50_ms"], 20.0);
    assert_eq!(r.to_json()["slowest"][0]["ms"], 1500.0);
    assert!(r.message.contains("PLEG is not healthy"), "{}", r.message);
    // The next interval is quiet.
    assert!(c.tick(t + 30_000 * MS).is_none());
    assert_eq!(c.latency_summary()["state"].count, 23);
}

#[test]
fn fast_runtime_calls_are_not_slow_and_a_stuck_call_is() {
    const MS: u64 = 1_000_000;
    let mut c = ExecCorrelator::new(ExecSettings::default(), StaticProcesses::default());
    for i in 0..50 {
        runc_call(&mut c, 1_000 * MS + i * 50 * MS, 100 + i as u32, "exec", 30 * MS);
    }
    assert!(c.tick(20_000 * MS).is_none());
    // A `runc exec` that never returns is backlog.
    c.handle(&runc_exec(30_000 * MS, 500, &["runc", "exec", "c1", "true"]));
    assert!(c.tick(32_000 * MS).is_none(), "opens the interval");
    assert!(c.tick(33_000 * MS).is_none(), "once per interval");
    let r = c.tick(45_000 * MS).expect("stuck call");
    assert_eq!(r.to_json()["backlog"], 1);
    assert!(r.message.contains("1 runc calls still running"), "{}", r.message);
}

#[test]
fn a_container_stopped_by_the_runtime_is_a_record() {
    let mut c = ExecCorrelator::new(ExecSettings::default(), StaticProcesses::default());
    c.handle(&runc_exec(1, 100, &["runc", "delete", "-f", "c1"]));
    c.handle(&ev(2, 100, "runc", Body::Signal { sig: 9, errno: 0, code: 0, result: 0, target_pid: 40, target_comm: "sleep".into() }));
    let out = c.handle(&ev(3, 40, "sleep", Body::Exit { exit_code: 9, ns_pid: 1, ppid: 1, group_dead: true, ns_level: 1, role: Role::Untracked }));
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].kind, "container_stopped");
    assert!(!out[0].is_verdict());
}

#[test]
fn pid_one_of_a_namespace_no_runtime_made_is_no_container() {
    // `unshare --pid --fork prober` on the host: its pid 1 exits 1.
    let mut c = ExecCorrelator::new(ExecSettings::default(), StaticProcesses::default());
    let out = c.handle(&ev(1, 50, "kubelet", Body::Exit { exit_code: 1, ns_pid: 1, ppid: 1, group_dead: true, ns_level: 1, role: Role::Untracked }));
    assert!(out.is_empty(), "{out:?}");
}

// ---------------------------------------------------------------------------
// containerd's road (issue 26): the shim's ~500-byte command line, runc's
// --log file, a stopped container the shim refuses by itself.

const ID: &str = "c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0";
const POD: &str = "0a1b2c3d-1111-2222-3333-444455556666";

fn bundle() -> String {
    format!("/run/containerd/io.containerd.runtime.v2.task/k8s.io/{ID}")
}

/// What containerd-shim-runc-v2 runs for an exec probe (as seen on this
/// machine's containerd 1.6).
fn shim_argv() -> Vec<String> {
    let b = bundle();
    format!(
        "runc --root /run/containerd/runc/k8s.io --log {b}/log.json --log-format json exec --process /tmp/runc-process1234567890 --detach --pid-file {b}/probe-1234567890.pid {ID}"
    )
    .split(' ')
    .map(String::from)
    .collect()
}

/// argv as the kernel copies it into `limit` bytes.
fn kernel_copy(argv: &[String], limit: usize) -> ExecInfo {
    let raw: Vec<u8> = argv.iter().flat_map(|a| a.bytes().chain([0])).collect();
    let copied = &raw[..raw.len().min(limit)];
    let copied = copied.strip_suffix(&[0]).unwrap_or(copied);
    ExecInfo {
        ppid: 1,
        ns_pid: 100,
        ns_level: 0,
        role: Role::Runtime,
        filename: "/usr/sbin/runc".into(),
        args: copied.split(|&b| b == 0).map(|a| String::from_utf8_lossy(a).into_owned()).collect(),
        args_truncated: raw.len() > limit,
    }
}

fn pod_state(alive: bool) -> ContainerState {
    ContainerState {
        id: ID.into(),
        init_pid: 4242,
        init_alive: alive,
        pids_cgroup: Some(format!("/sys/fs/cgroup/pids/kubepods/burstable/pod{POD}/{ID}").into()),
    }
}

#[test]
fn containerds_command_line_fits_and_a_cut_one_never_loses_the_id() {
    let argv = shim_argv();
    let len: usize = argv.iter().map(|a| a.len() + 1).sum();
    assert!(len > 400 && len < tracer_common::ARGS_LEN, "{len}");
    let host = StaticProcesses::default();
    let full = parse_exec_args(&kernel_copy(&argv, tracer_common::ARGS_LEN), 100, "runc", &host);
    assert_eq!((full.container.as_deref(), full.args_truncated), (Some(ID), false));
    assert_eq!(full.log, Some(format!("{}/log.json", bundle())));
    // The old 256-byte copy cut it after --log: the ID comes from the
    // bundle path, and the cut last string is never taken for an ID.
    for limit in [256, 300, len - 10, len - 1] {
        let cut = kernel_copy(&argv, limit);
        assert!(cut.args_truncated, "{limit}");
        let c = parse_exec_args(&cut, 100, "runc", &host);
        assert_eq!(c.container.as_deref(), Some(ID), "{limit}");
    }
    // Cut before even the bundle path: no ID, said so; or completed from
    // /proc/PID/cmdline while runc lives.
    let cut = kernel_copy(&argv, 60);
    let c = parse_exec_args(&cut, 100, "runc", &host);
    assert_eq!((c.container, c.args_truncated), (None, true));
    let live = StaticProcesses { cmdlines: [(100, argv.clone())].into(), ..Default::default() };
    let c = parse_exec_args(&cut, 100, "runc", &live);
    assert_eq!((c.container.as_deref(), c.args_truncated), (Some(ID), false));
    // A direct runc with a short ID is unaffected.
    let direct = parse_exec_args(&kernel_copy(&["runc".into(), "exec".into(), "pt".into()], 256), 1, "runc", &host);
    assert_eq!(direct.container.as_deref(), Some("pt"));
}

fn shim_exec(ts: u64, pid: u32) -> Event {
    ev(ts, pid, "runc", Body::Exec(kernel_copy(&shim_argv(), tracer_common::ARGS_LEN)))
}

#[test]
fn runc_reporting_a_missing_binary_is_not_an_init_death() {
    let log = format!("{}/log.json", bundle());
    let host = StaticProcesses {
        containers: vec![pod_state(true)],
        runtime_logs: [(
            log,
            // containerd's shim appends every exec's errors to one file.
            "{\"level\":\"error\",\"msg\":\"an older exec's error\",\"time\":\"2000-01-01T00:00:00Z\"}\n\
             {\"level\":\"error\",\"msg\":\"exec failed: unable to start container process: exec: \\\"/bin/nonexistent\\\": stat /bin/nonexistent: no such file or directory\",\"time\":\"2099-12-01T11:52:56Z\"}\n\
             {\"level\":\"warning\",\"msg\":\"not an error\",\"time\":\"2099-12-01T11:52:56Z\"}\n".to_string(),
        )]
        .into(),
        ..Default::default()
    };
    let events = [
        shim_exec(1, 100),
        ev(2, 100, "runc", Body::Fork { child_tid: 101 }),
        exit(3, 101, "runc:[2:INIT]", 1 << 8),
        exit(4, 100, "runc", 1 << 8),
    ];
    let reports = run_all(host, &events);
    assert_eq!(reports.iter().map(|r| r.kind).collect::<Vec<_>>(), ["runc_failed"], "{reports:?}");
    let story = reports[0].clone();
    assert_eq!(story.to_json()["container_id"], ID);
    assert_eq!(story.to_json()["pod_uid"], POD);
    assert_eq!(story.to_json()["cgroup"], format!("/sys/fs/cgroup/pids/kubepods/burstable/pod{POD}/{ID}"));
    assert!(story.message.contains("runc reported: exec failed: unable to start container process: exec: \"/bin/nonexistent\""), "{}", story.message);
    assert!(story.to_json()["runtime_error"].as_str().unwrap().contains("no such file or directory"));

    // Only an older exec's error in the file: not this call's cause.
    let stale = StaticProcesses {
        containers: vec![pod_state(true)],
        runtime_logs: [(format!("{}/log.json", bundle()), "{\"level\":\"error\",\"msg\":\"old\",\"time\":\"2000-01-01T00:00:00Z\"}".into())].into(),
        ..Default::default()
    };
    let reports = run_all(stale, &events);
    assert_eq!(only(&reports, "runc_init_died").len(), 1, "{reports:?}");
    assert_eq!(only(&reports, "runc_failed")[0].fields["runtime_error"], serde_json::Value::Null);

    // A real death (SIGABRT) stays runc_init_died, even with a log line.
    let host = StaticProcesses { containers: vec![pod_state(true)], runtime_logs: [(format!("{}/log.json", bundle()), "{\"level\":\"error\",\"msg\":\"read init-p: connection reset by peer\"}".into())].into(), ..Default::default() };
    let events = [shim_exec(1, 100), ev(2, 100, "runc", Body::Fork { child_tid: 101 }), exit(3, 101, "runc:[2:INIT]", 6), exit(4, 100, "runc", 1 << 8)];
    let reports = run_all(host, &events);
    let died = only(&reports, "runc_init_died");
    assert_eq!(died.len(), 1, "{reports:?}");
    assert_eq!(died[0].to_json()["pod_uid"], POD);
}

fn init_exit(ts: u64, pid: u32) -> Event {
    ev(ts, pid, "sleep", Body::Exit { exit_code: 9, ns_pid: 1, ppid: 1, group_dead: true, ns_level: 1, role: Role::Untracked })
}

#[test]
fn a_stopped_container_the_shim_still_holds_is_reported_without_any_runc() {
    const S: u64 = 1_000_000_000;
    let settings = ExecSettings { scan_runtime_state: false, ..Default::default() };
    let mut c = ExecCorrelator::new(settings.clone(), StaticProcesses { containers: vec![pod_state(false)], ..Default::default() });
    c.handle(&ev(S, 1, "bash", Body::Signal { sig: 9, errno: 0, code: 0, result: 0, target_pid: 4242, target_comm: "sleep".into() }));
    let out = c.handle(&init_exit(S + 1, 4242));
    assert_eq!(out[0].kind, "container_init_exit");
    assert_eq!(out[0].to_json()["pod_uid"], POD);
    assert!(c.expire(2 * S).iter().all(|r| r.kind != "exec_into_stopped_container"), "within the grace");
    let held = c.expire(7 * S);
    let r = only(&held, "exec_into_stopped_container");
    assert_eq!(r.len(), 1, "{held:?}");
    assert_eq!(r[0].to_json()["evidence"], "observed");
    assert_eq!(r[0].to_json()["container_id"], ID);
    assert_eq!(r[0].to_json()["pod_uid"], POD);
    assert_eq!(r[0].to_json()["init_pid"], 4242);
    assert!(r[0].to_json()["cgroup"].as_str().unwrap().ends_with(ID));
    assert!(r[0].message.contains("killed by SIGKILL by bash"), "{}", r[0].message);
    assert!(c.expire(20 * S).is_empty(), "once");

    // Deleted (or restarted) within the grace: the runtime noticed; nothing.
    let mut c = ExecCorrelator::new(settings, StaticProcesses { containers: vec![pod_state(true)], ..Default::default() });
    c.handle(&init_exit(S, 4242));
    assert!(c.expire(10 * S).is_empty());

    // The tracer started after the death: from the runtime's state, once.
    let mut c = ExecCorrelator::new(ExecSettings::default(), StaticProcesses { containers: vec![pod_state(false)], ..Default::default() });
    let r = c.expire(S);
    assert_eq!(r.len(), 1, "{r:?}");
    assert_eq!(r[0].kind, "exec_into_stopped_container");
    assert_eq!(r[0].to_json()["evidence"], "state");
    assert_eq!(r[0].to_json()["pod_uid"], POD);
    assert!(c.expire(20 * S).is_empty());
}

fn fork_failure_under(limit: PidsLimit) -> Report {
    let host = StaticProcesses { containers: vec![pod_state(true)], pids: Some(limit), ..Default::default() };
    let events = [
        shim_exec(1, 100),
        ev(2, 100, "runc", Body::SyscallFailed { syscall: "clone".into(), nstype: 0, errno: 11 }),
        exit(3, 100, "runc", 1 << 8),
    ];
    let reports = run_all(host, &events);
    only(&reports, "fork_failed")[0].clone()
}

#[test]
fn the_runtimes_own_fork_failing_names_the_runtimes_cgroup_and_tasksmax() {
    let f = fork_failure_under(PidsLimit { cgroup: "/sys/fs/cgroup/pids/system.slice/containerd.service".into(), current: 12, max: Some(12) });
    assert_eq!(f.to_json()["limit_scope"], "runtime");
    assert_eq!(f.to_json()["cgroup"], "/sys/fs/cgroup/pids/system.slice/containerd.service");
    assert_eq!(f.to_json()["container_id"], ID);
    assert_eq!(f.to_json()["pod_uid"], POD);
    assert!(f.message.contains("the container runtime's cgroup (containerd.service) is at its pids limit"), "{}", f.message);
    assert!(f.message.contains("TasksMax"), "{}", f.message);
    assert!(!f.message.contains("podPidsLimit"), "{}", f.message);

    let pod = format!("/sys/fs/cgroup/pids/kubepods/burstable/pod{POD}");
    let f = fork_failure_under(PidsLimit { cgroup: pod.clone(), current: 5, max: Some(5) });
    assert_eq!(f.to_json()["limit_scope"], "pod");
    assert!(f.message.contains(&format!("the pod's pids limit is exhausted (pids.current 5 = pids.max 5 in {pod})")), "{}", f.message);
    let f = fork_failure_under(PidsLimit { cgroup: format!("{pod}/{ID}"), current: 1, max: Some(1) });
    assert_eq!(f.to_json()["limit_scope"], "container");
}

#[test]
fn a_runc_inside_a_container_is_not_the_runtime() {
    // issue 27 item 3: a tenant's binary named runc, in a container's
    // namespaces (hostPID: same pid level, another mount namespace).
    let host = StaticProcesses { foreign_pids: vec![100], ..Default::default() };
    let mut c = ExecCorrelator::new(ExecSettings::default(), host);
    let before = c.settings.runtime_roots.len();
    c.handle(&runc_exec(1, 100, &["runc", "--root", "/tmp/tenant", "zzz-label-1", "c1"]));
    assert_eq!(c.in_flight(), 0);
    assert_eq!(c.settings.runtime_roots.len(), before, "its --root is not searched");
    assert!(c.handle(&exit(2, 100, "runc", 1 << 8)).is_empty());
    assert!(c.latency_summary().is_empty());
    // The node's runc with a made-up subcommand: judged, labelled "other".
    let mut c = ExecCorrelator::new(ExecSettings::default(), StaticProcesses::default());
    runc_call(&mut c, 1, 200, "zzz-label-2", 5);
    assert_eq!(c.latency_summary().keys().collect::<Vec<_>>(), ["other"]);
    assert_eq!(c.take_durations()[0].0, "other");
}

#[test]
fn an_exec_commands_own_failed_fork_is_the_probes_failure_not_the_runtimes() {
    // The probe's `sh -c ...` started (runc exec succeeded), then the pod
    // hit its pids limit: "sh: can't fork". Its fork fails once before and
    // once after runc exits; one verdict, with the pod's numbers, no story.
    let pod = format!("/sys/fs/cgroup/pids/kubepods/burstable/pod{POD}");
    let host = StaticProcesses {
        containers: vec![pod_state(true)],
        pids: Some(PidsLimit { cgroup: pod.clone(), current: 7, max: Some(7) }),
        ..Default::default()
    };
    let command = |ts, pid| {
        let mut info = kernel_copy(&["sh".into(), "-c".into(), "read x </tmp/go; /bin/true; echo forked".into()], 1024);
        (info.role, info.ns_pid, info.ns_level, info.filename) = (Role::Container, 5, 1, "/bin/sh".into());
        ev(ts, pid, "sh", Body::Exec(info))
    };
    let failed = |ts, pid| ev(ts, pid, "sh", Body::SyscallFailed { syscall: "clone".into(), nstype: 0, errno: 11 });
    for exec_after_runc_exit in [false, true] {
        let mut events = vec![shim_exec(1, 100), ev(2, 100, "runc", Body::Fork { child_tid: 101 })];
        if exec_after_runc_exit {
            events.extend([exit(3, 100, "runc", 0), command(4, 101)]);
        } else {
            events.extend([command(3, 101), failed(4, 101), exit(5, 100, "runc", 0)]);
        }
        events.extend([failed(6, 101), ev(7, 101, "sh", Body::Exit { exit_code: 2 << 8, ns_pid: 5, ppid: 100, group_dead: true, ns_level: 1, role: Role::Container })]);
        let reports = run_all(host.clone(), &events);
        assert_eq!(reports.iter().map(|r| r.kind).collect::<Vec<_>>(), ["fork_failed"], "{reports:?}");
        let f = &reports[0];
        assert!(!f.grouped);
        assert_eq!((f.pid, f.comm.as_str()), (101, "sh"));
        assert_eq!(f.to_json()["exec_command"], true);
        assert_eq!(f.to_json()["container_id"], ID);
        assert_eq!(f.to_json()["pod_uid"], POD);
        assert_eq!(f.to_json()["limit_scope"], "pod");
        assert_eq!(f.to_json()["cgroup"], pod);
        assert_eq!(f.to_json()["container_cgroup"], format!("{pod}/{ID}"));
        assert_eq!((f.to_json()["pids_current"].as_u64(), f.to_json()["pids_max"].as_u64()), (Some(7), Some(7)));
        assert!(f.message.starts_with(&format!("runc exec into container {ID} started its command, but sh (pid 101)")), "{}", f.message);
        assert!(f.message.contains(&format!("(pids.current 7 = pids.max 7 in {pod})")), "{}", f.message);
    }
    // The container's init (runc run, not exec) is no probe command.
    let mut run = kernel_copy(&shim_argv(), tracer_common::ARGS_LEN);
    let exec_at = run.args.iter().position(|a| a == "exec").unwrap();
    run.args[exec_at] = "run".into();
    let events = [ev(1, 100, "runc", Body::Exec(run)), ev(2, 100, "runc", Body::Fork { child_tid: 101 }), command(3, 101), exit(4, 100, "runc", 0), failed(5, 101)];
    assert!(run_all(host, &events).is_empty());
}

/// A real `probe-tracer run --record` on the bare 6.18 kernel of the
/// containerd scenario's `exec-timeout` (`ctr task exec ... sleep 30`,
/// SIGKILLed through the shim 1 s later, as containerd does at ExecSync's
/// timeout), then a healthy exec of `/bin/true`.
const EXEC_TIMEOUT: &str = include_str!("containerd_exec_timeout_bare_6.18.jsonl");

fn exec_timeout_recorded() -> Vec<Event> {
    EXEC_TIMEOUT.lines().map(|l| serde_json::from_str(l).expect("recorded event")).collect()
}

#[test]
fn an_exec_command_the_shim_kills_at_the_timeout_is_exec_probe_timeout() {
    let host = StaticProcesses { containers: vec![pod_state(true)], ..Default::default() };
    let events = exec_timeout_recorded();
    let reports = run_all(host, &events);
    assert_eq!(reports.iter().map(|r| r.kind).collect::<Vec<_>>(), ["exec_probe_timeout"], "{reports:?}");
    let t = &reports[0];
    let sleep = events.iter().find(|e| matches!(&e.body, Body::Exec(i) if i.filename == "/bin/sleep")).unwrap();
    let runc = &events[0];
    let kill = events.iter().find(|e| matches!(e.body, Body::Signal { .. })).unwrap();
    assert_eq!((t.pid, t.comm.as_str()), (sleep.pid, "sleep"));
    assert_eq!(t.to_json()["command"], json!(["/bin/sleep", "30"]));
    assert_eq!(t.to_json()["container_id"], ID);
    assert_eq!(t.to_json()["pod_uid"], POD);
    assert_eq!(t.to_json()["cgroup"], format!("/sys/fs/cgroup/pids/kubepods/burstable/pod{POD}/{ID}"));
    assert_eq!(t.to_json()["subcommand"], "exec");
    assert_eq!(t.to_json()["runtime_pid"], runc.pid);
    assert_eq!((t.to_json()["killed_by_comm"].as_str(), t.to_json()["killed_by_pid"].as_u64()), (Some("containerd-shim"), Some(kill.pid as u64)));
    assert_eq!(t.to_json()["signal"], "SIGKILL");
    // From runc's start: killed after the 1 s timeout (and ctr's call).
    let killed_after = t.to_json()["killed_after_ms"].as_u64().unwrap();
    assert_eq!(killed_after, (kill.ts_ns - runc.ts_ns) / 1_000_000);
    assert!((1000..2000).contains(&killed_after), "{killed_after}");
    assert!(t.to_json()["runtime_ms"].as_u64().unwrap() >= killed_after);
    assert!(
        t.message.starts_with(&format!(
            "the exec probe's command `/bin/sleep 30` (pid {}) in container {ID} was killed with SIGKILL by containerd-shim (pid {}) {killed_after} ms after runc exec started it",
            sleep.pid, kill.pid
        )),
        "{}",
        t.message
    );
    assert!(t.message.contains("timeoutSeconds"), "{}", t.message);
    // No counters were read when the command started.
    assert_eq!(t.to_json()["cpu_measured"], "no_reading_at_the_start");
    assert!(t.message.ends_with("its container's CPU in the window is unknown (no reading at the start)"), "{}", t.message);
}

/// The container's counters over the killed command's life: read when it
/// started and at the verdict, and the sentence leads with the throttling
/// when it explains the slowness.
#[test]
fn an_exec_probe_timeout_says_what_the_containers_cpu_limit_did_over_the_commands_life() {
    let events = exec_timeout_recorded();
    let sleep = events.iter().find(|e| matches!(&e.body, Body::Exec(i) if i.filename == "/bin/sleep")).unwrap().ts_ns;
    let exit = events.iter().rev().find(|e| matches!(e.body, Body::Exit { .. }) && e.comm == "sleep").unwrap().ts_ns;
    let cgroup = crate::cgroup_cpu::ServingCgroup {
        pid: 0,
        path: format!("/kubepods/burstable/pod{POD}/{ID}"),
        cpu_dir: "/sys/fs/cgroup/cpu,cpuacct/kubepods".into(),
        psi_dir: None,
        v1: true,
    };
    let reading = |ts_ns, periods, throttled, throttled_us| crate::cgroup_cpu::CpuReading {
        ts_ns,
        nr_periods: periods,
        nr_throttled: throttled,
        throttled_us,
        cpu_limit: Some(0.1),
        ..Default::default()
    };
    let throttled = |periods: u64, throttled: u64, us: u64| StaticProcesses {
        containers: vec![pod_state(true)],
        cpu: Some((cgroup.clone(), vec![reading(sleep - 1_000_000, 500, 40, 900_000), reading(exit, 500 + periods, 40 + throttled, 900_000 + us)])),
        ..Default::default()
    };
    let reports = run_all(throttled(11, 10, 950_000), &events);
    let t = only(&reports, "exec_probe_timeout")[0];
    assert_eq!(t.to_json()["cpu_measured"], "sampled");
    assert_eq!((t.to_json()["cpu_throttled_periods"].as_u64(), t.to_json()["cpu_periods"].as_u64()), (Some(10), Some(11)));
    assert_eq!(t.to_json()["cpu_throttled_ms"], 950);
    assert_eq!(t.to_json()["cpu_limit"], 0.1);
    assert_eq!(t.to_json()["cpu_window_ms"], (exit - sleep + 1_000_000) / 1_000_000);
    // The verdict's cgroup stays the one the runtime put the container in.
    assert_eq!(t.to_json()["cgroup"], format!("/sys/fs/cgroup/pids/kubepods/burstable/pod{POD}/{ID}"));
    assert!(t.message.contains("its container was CPU-throttled in 10 of 11 periods") && t.message.contains("at a limit of 0.1 CPU"), "{}", t.message);
    // Unthrottled: the limits are ruled out.
    let reports = run_all(throttled(11, 0, 0), &events);
    let t = only(&reports, "exec_probe_timeout")[0];
    assert!(t.message.contains("not held back by its limits (0 ms CPU-throttled"), "{}", t.message);
}

#[test]
fn an_exec_command_killed_otherwise_or_ending_by_itself_is_no_timeout() {
    let host = StaticProcesses { containers: vec![pod_state(true)], ..Default::default() };
    let events = exec_timeout_recorded();
    let at = events.iter().position(|e| matches!(e.body, Body::Signal { .. })).unwrap();
    let with_kill = |f: &dyn Fn(&mut Event)| {
        let mut events = events.clone();
        f(&mut events[at]);
        events
    };
    // `runc kill --all` while the container is stopped, and a user's kill.
    for comm in ["runc", "bash"] {
        let events = with_kill(&|e: &mut Event| e.comm = comm.into());
        assert!(run_all(host.clone(), &events).is_empty(), "{comm}");
    }
    // The shim's SIGTERM that the command survives (and then exits 0).
    let mut events = with_kill(&|e: &mut Event| {
        if let Body::Signal { sig, .. } = &mut e.body {
            *sig = 15;
        }
    });
    if let Body::Exit { exit_code, .. } = &mut events[at + 1].body {
        *exit_code = 0;
    }
    assert!(run_all(host.clone(), &events).is_empty());
    // A SIGKILL nobody sent through a signal event (the OOM killer).
    let mut events = events.clone();
    events.remove(at);
    if let Body::Exit { exit_code, .. } = &mut events[at].body {
        *exit_code = 9;
    }
    assert!(run_all(host.clone(), &events).is_empty());
    // The container's init (runc run), killed by the shim: no probe.
    let mut events = exec_timeout_recorded();
    if let Body::Exec(info) = &mut events[0].body {
        let i = info.args.iter().position(|a| a == "exec").unwrap();
        info.args[i] = "run".into();
    }
    assert_eq!(run_all(host, &events).iter().map(|r| r.kind).collect::<Vec<_>>(), Vec::<&str>::new());
}

/// The command exits by itself, but what it left running holds its
/// output: the runtime waits for that pipe, so the probe fails at its
/// timeout. Named with the holder; without a holder, nothing.
#[test]
fn an_exec_command_whose_output_a_leftover_process_holds_is_named_with_it() {
    let mut events = exec_timeout_recorded();
    let at = events.iter().position(|e| matches!(e.body, Body::Signal { .. })).unwrap();
    events.remove(at);
    if let Body::Exit { exit_code, .. } = &mut events[at].body {
        *exit_code = 0;
    }
    let sleep = events.iter().find(|e| matches!(&e.body, Body::Exec(i) if i.filename == "/bin/sleep")).unwrap().pid;
    // The pipes are read from the runtime (containerd's shim hands them to
    // runc, which passes them on): the command may be gone before its exec
    // is handled. The container's cgroup comes from its state.
    let runc = events[0].pid;
    let holder = crate::processes::PipeHolder { pid: 4242, comm: "sleep".into(), fd: 1 };
    let host = |holders: Vec<(crate::processes::PipeHolder, u64)>| StaticProcesses {
        containers: vec![pod_state(true)],
        output_pipes: [(runc, vec![77])].into(),
        pipe_holders: holders,
        ..Default::default()
    };
    let reports = run_all(host(vec![(holder.clone(), 77)]), &events);
    assert_eq!(reports.iter().map(|r| r.kind).collect::<Vec<_>>(), ["exec_probe_output_held"], "{reports:?}");
    let h = &reports[0];
    assert_eq!((h.pid, h.to_json()["command"].clone(), h.to_json()["exit_code"].as_i64()), (sleep, json!(["/bin/sleep", "30"]), Some(0)));
    assert_eq!((h.to_json()["held_by_pid"].as_u64(), h.to_json()["held_by_comm"].as_str(), h.to_json()["held_fd"].as_u64()), (Some(4242), Some("sleep"), Some(1)));
    assert_eq!((h.to_json()["container_id"].as_str(), h.to_json()["pod_uid"].as_str()), (Some(ID), Some(POD)));
    assert!(
        h.message.starts_with(&format!("the exec probe's command `/bin/sleep 30` (pid {sleep}) in container {ID} exited with code 0"))
            && h.message.contains("but sleep (pid 4242) it left running still holds its output")
            && h.message.contains("`cmd >/dev/null 2>&1 &`"),
        "{}",
        h.message
    );
    // Another pipe held, or none: the command's output closed with it.
    assert!(run_all(host(vec![(holder, 78)]), &events).is_empty());
    assert!(run_all(host(Vec::new()), &events).is_empty());
}

/// A command that ends by itself but ran long (here `sleep 30` exiting
/// 0 where the recording has it killed) is kept for the enricher, which
/// knows the probe's timeout; the healthy `/bin/true` after it is quick
/// and is not.
#[test]
fn a_slow_exec_command_ending_by_itself_is_kept_to_be_judged_against_its_timeout() {
    let mut events = exec_timeout_recorded();
    let at = events.iter().position(|e| matches!(e.body, Body::Signal { .. })).unwrap();
    events.remove(at);
    if let Body::Exit { exit_code, .. } = &mut events[at].body {
        *exit_code = 0;
    }
    let host = StaticProcesses { containers: vec![pod_state(true)], ..Default::default() };
    let mut c = ExecCorrelator::new(ExecSettings::default(), host);
    let reports: Vec<Report> = events.iter().flat_map(|e| c.handle(e)).collect();
    assert!(reports.is_empty(), "{reports:?}");
    let done = c.take_commands_done();
    assert_eq!(done.len(), 1, "{done:?}");
    let d = &done[0];
    let (runc, exit) = (&events[0], &events[at]);
    assert_eq!((d.argv.as_slice(), d.container_id.as_str()), (["/bin/sleep".to_string(), "30".to_string()].as_slice(), ID));
    assert_eq!(d.runtime_ms, (exit.ts_ns - runc.ts_ns) / 1_000_000);
    assert!(d.runtime_ms > 1000, "{}", d.runtime_ms);
    assert_eq!((d.report.kind, d.report.pid), ("probe_near_timeout", exit.pid));
    assert_eq!(d.report.to_json()["pod_uid"], POD);
    assert_eq!(d.report.to_json()["exit_code"], 0);
    assert!(c.take_commands_done().is_empty(), "taken once");
}

/// A real `probe-tracer run --record` on the bare 6.18 kernel of the runc
/// scenario's crun cases: crun run directly as CRI-O's conmon runs it
/// (`crun --root=/run/crun exec --pid-file .. --process .. --detach`, no
/// `--log`): a healthy exec, an exec of a missing binary, an exec whose
/// command forks at the container's pids limit of 1, an exec into a
/// container whose init was killed before the tracer started. Every crun
/// exec's child tries setns(pidfd, CLONE_NEWUSER) and setns(user ns fd, 0)
/// twice, each EINVAL, then forks the command.
const CRUN: &str = include_str!("crun_bare_6.18.jsonl");

fn crun_host() -> StaticProcesses {
    let state = |id: &str, init_pid: u32, init_alive: bool| ContainerState {
        id: id.into(),
        init_pid,
        init_alive,
        pids_cgroup: Some(format!("/sys/fs/cgroup/pids/{id}").into()),
    };
    StaticProcesses {
        containers: vec![state("pt-crun", 29_990, true), state("pt-crun-stopped", 30_069, false)],
        pids: Some(PidsLimit { cgroup: "/sys/fs/cgroup/pids/pt-crun".into(), current: 4, max: Some(1) }),
        ..Default::default()
    }
}

#[test]
fn crun_without_log_its_setns_tries_are_never_the_cause() {
    let events: Vec<Event> = CRUN.lines().map(|l| serde_json::from_str(l).expect("recorded event")).collect();
    let tries = events.iter().filter(|e| matches!(&e.body, Body::SyscallFailed { syscall, errno: 22, .. } if syscall == "setns")).count();
    assert_eq!(tries, 9, "three execs that reach setns, three tries each");
    let reports = run_all(crun_host(), &events);
    assert!(only(&reports, "setns_failed").is_empty(), "{reports:?}");

    // The missing binary: crun failed, and no setns try is named.
    let stories = only(&reports, "runc_failed");
    let missing = stories.iter().find(|r| r.to_json()["exit_code"] == 255).expect("the missing binary's story");
    assert_eq!(missing.to_json()["container_id"], "pt-crun");
    assert!(missing.message.starts_with("crun exec into container pt-crun failed"), "{}", missing.message);
    assert!(!missing.message.contains("setns"), "{}", missing.message);
    // crun's child wrote its own error and exited with a code: no death.
    assert!(only(&reports, "runc_init_died").is_empty(), "{reports:?}");

    // The command's fork at the pids limit: the probe's failure, crun's exec.
    let fork = only(&reports, "fork_failed");
    assert_eq!(fork.len(), 1, "{reports:?}");
    assert_eq!(fork[0].to_json()["exec_command"], true);
    assert_eq!(fork[0].to_json()["container_id"], "pt-crun");
    assert_eq!(fork[0].to_json()["pids_max"], 1);
    assert!(fork[0].message.starts_with("crun exec into container pt-crun started its command"), "{}", fork[0].message);

    // The stopped container, from crun's state: named after crun.
    let stopped = only(&reports, "exec_into_stopped_container");
    assert_eq!(stopped.len(), 1, "{reports:?}");
    assert_eq!(stopped[0].to_json()["evidence"], "state");
    assert_eq!(stopped[0].to_json()["init_pid"], 30_069);
    assert!(stopped[0].message.starts_with("crun exec into stopped container pt-crun-stopped"), "{}", stopped[0].message);
    assert_eq!(stories.len(), 2, "the missing binary and the stopped container: {reports:?}");
}

/// A setns EINVAL is a cause only in a process that then gave up: the same
/// nstype-0 failure followed by a fork of that process was a try.
#[test]
fn a_setns_failure_the_process_forked_after_is_no_cause() {
    let run = |fork_after: bool| {
        let mut c = ExecCorrelator::new(ExecSettings { slow_threshold_ns: u64::MAX / 2, ..Default::default() }, StaticProcesses::default());
        let mut out = Vec::new();
        out.extend(c.handle(&runc_exec(1_000, 100, &["crun", "exec", "c1", "true"])));
        out.extend(c.handle(&ev(1_500, 100, "crun", Body::Fork { child_tid: 101 })));
        out.extend(c.handle(&ev(2_000, 101, "crun", Body::SyscallFailed { syscall: "setns".into(), nstype: 0, errno: 22 })));
        if fork_after {
            out.extend(c.handle(&ev(2_500, 101, "crun", Body::Fork { child_tid: 102 })));
        }
        out.extend(c.handle(&exit(2_800, 101, "crun", 0)));
        out.extend(c.handle(&exit(3_000, 100, "crun", 1 << 8)));
        out.extend(c.finish(4_000));
        out.into_iter().map(|r| r.kind).collect::<Vec<_>>()
    };
    assert_eq!(run(true), ["runc_failed"]);
    assert_eq!(run(false), ["setns_failed", "runc_failed"]);
}

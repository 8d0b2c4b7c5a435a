//! Weeks of uptime in a unit test: 10,000 container lifecycles (runc
//! create, the init, a kill, its exit), pod-IP churn (every container a new
//! address probed), signals to pids that never exit and reused pids, all
//! through the Correlators with its housekeeping; every map stays bounded.

use std::net::IpAddr;

use super::*;
use crate::{
    events::{Body, Event, ExecInfo, Mode, Role, TcpInfo},
    processes::StaticProcesses,
    network::StaticNetwork,
};

const S: u64 = 1_000_000_000;

fn ev(ts_ns: u64, pid: u32, comm: &str, body: Body) -> Event {
    Event { ts_ns, pid, tid: pid, comm: comm.into(), cgroup_id: 7, mode: Mode::Tracepoint, body }
}

fn exec(ts: u64, pid: u32, comm: &str, role: Role, ns_pid: u32, ns_level: u32, args: &[String]) -> Event {
    ev(
        ts,
        pid,
        comm,
        Body::Exec(ExecInfo {
            ppid: 1,
            ns_pid,
            ns_level,
            role,
            filename: format!("/usr/bin/{comm}"),
            args: args.to_vec(),
            args_truncated: false,
        }),
    )
}

fn exit(ts: u64, pid: u32, comm: &str, raw: i32, ns_pid: u32, ns_level: u32, role: Role) -> Event {
    ev(ts, pid, comm, Body::Exit { exit_code: raw, ns_pid, ppid: 1, group_dead: true, ns_level, role })
}

fn signal(ts: u64, from: u32, to: u32) -> Event {
    ev(ts, from, "bash", Body::Signal { sig: 9, errno: 0, code: 0, result: 0, target_pid: to, target_comm: "sleep".into() })
}

fn tcp(skaddr: u64, daddr: IpAddr, old: u8, new: u8) -> TcpInfo {
    TcpInfo { skaddr, saddr: "10.0.0.1".parse().unwrap(), sport: 40000, daddr, dport: 8080, oldstate: old, newstate: new }
}

/// One container's life at `t` (seconds apart), with pids that wrap
/// around as a node's do.
fn lifecycle(i: u32, t: u64) -> Vec<Event> {
    let runc = 1000 + (i * 3) % 30000;
    let init = runc + 1;
    let id = format!("c{i:05}");
    let args: Vec<String> = ["runc", "create", id.as_str()].iter().map(|s| s.to_string()).collect();
    let pod: IpAddr = [10, 100 + (i / 65536) as u8, (i / 256 % 256) as u8, (i % 256) as u8].into();
    let sk = 0xffff_0000_0000_0000 | i as u64;
    vec![
        exec(t, runc, "runc", Role::Runtime, runc, 0, &args),
        ev(t + 1000, runc, "runc", Body::Fork { child_tid: init }),
        exec(t + 2000, init, "sleep", Role::Container, 1, 1, &["sleep".into(), "inf".into()]),
        exit(t + 3000, runc, "runc", 0, runc, 0, Role::Runtime),
        // Its pod is probed, healthy.
        ev(t + 4000, 4242, "kubelet", Body::TcpConnect(tcp(sk, pod, 2, 2))),
        ev(t + 5000, 0, "swapper/0", Body::TcpSynSentRcv(tcp(sk, pod, 2, 2))),
        ev(t + 5000, 0, "swapper/0", Body::TcpState(tcp(sk, pod, 2, 1))),
        // A signal to a pid that never exits, and the kill of the init.
        signal(t + 6000, 77, 40000 + i),
        signal(t + S / 2, 77, init),
        exit(t + S / 2 + 1000, init, "sleep", 9, 1, 1, Role::Container),
    ]
}

#[test]
fn ten_thousand_container_lifecycles_and_pod_ip_churn_keep_every_map_bounded() {
    let mut agg = Correlators::new(probe::ProbeSettings::default(), StaticNetwork::default(), exec::ExecSettings::default(), StaticProcesses::default());
    let mut most: BTreeMap<&'static str, usize> = BTreeMap::new();
    let mut verdicts = 0;
    for i in 0..10_000u32 {
        let t = (i as u64 + 1) * S;
        for e in lifecycle(i, t) {
            verdicts += agg.handle(&e).iter().filter(|r| r.is_verdict()).count();
        }
        // The daemon's housekeeping (every second there; every 10 s here,
        // to keep the test quick), and its metrics taking durations.
        if i % 10 != 9 {
            continue;
        }
        agg.expire(t + S - 1, 180 * S);
        agg.exec.take_durations();
        agg.exec.take_commands_done();
        for (name, n) in agg.state_sizes() {
            let m = most.entry(name).or_default();
            *m = (*m).max(n);
        }
    }
    // About an hour of containers at one a second: the retention, not the run.
    for (name, bound) in [("stopped", 3700), ("init_signals", 7400), ("destinations", 3700 + 60), ("destination_seen", 3700 + 60)] {
        assert!(most[name] <= bound, "{name} reached {} (bound {bound}): {most:?}", most[name]);
    }
    for name in ["invocations", "members", "lingering", "known_inits", "attempts", "oom_pending", "recent"] {
        assert!(most[name] <= 10, "{name} reached {}: {most:?}", most[name]);
    }
    // Forgetting a destination's row keeps its counts in the totals.
    let summary = agg.summary();
    assert_eq!(summary.attempts.established, 10_000);
    assert!(summary.destinations.len() <= 3760);
    // Each kill is a verdict (a bash killed the init); none lost.
    assert_eq!(verdicts, 10_000, "{most:?}");
    eprintln!("most entries held over 10,000 lifecycles: {most:?}");
}

#[test]
fn a_signal_to_an_earlier_holder_of_a_pid_is_not_blamed_for_its_reuse() {
    let mut agg = Correlators::new(probe::ProbeSettings::default(), StaticNetwork::default(), exec::ExecSettings::default(), StaticProcesses::default());
    agg.handle(&signal(S, 77, 5000));
    // Two hours later pid 5000 is another container's init, and exits.
    let r = agg.handle(&exit(2 * 3600 * S, 5000, "sleep", 9, 1, 1, Role::Container));
    let exit = r.iter().find(|r| r.kind == "container_init_exit" || r.kind == "container_stopped").expect("init exit");
    assert!(exit.to_json()["killed_by_pid"].is_null(), "{exit:?}");
}

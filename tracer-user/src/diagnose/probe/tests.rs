//! Recorded event sequences for each probe outcome, shaped like what the
//! kernel programs emit (see tests/scenarios/nodeport for the live version).

use super::*;
use crate::{
    events::HookMode,
    node::{PortRanges, StaticNode},
};

const SK: u64 = 0xffff_8880_1234_5600;
const MS: u64 = 1_000_000;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn tcp(skaddr: u64, sport: u16, dport: u16, old: u8, new: u8) -> TcpInfo {
    TcpInfo { skaddr, saddr: ip("10.200.0.1"), sport, daddr: ip("10.200.1.2"), dport, oldstate: old, newstate: new }
}

fn ev(ts_ms: u64, comm: &str, body: Body) -> Event {
    Event { ts_ns: ts_ms * MS, pid: 4242, tid: 4242, comm: comm.into(), cgroup_id: 1, mode: HookMode::Kprobe, body }
}

fn kubelet(ts_ms: u64, body: Body) -> Event {
    ev(ts_ms, "kubelet", body)
}

fn softirq(ts_ms: u64, body: Body) -> Event {
    ev(ts_ms, "swapper/0", body)
}

fn correlator(settings: ProbeSettings, node: StaticNode) -> ProbeCorrelator<StaticNode> {
    ProbeCorrelator::new(settings, node)
}

fn run(c: &mut ProbeCorrelator<StaticNode>, events: &[Event]) -> Vec<Report> {
    events.iter().flat_map(|e| c.handle(e)).collect()
}

fn verdicts(reports: &[Report]) -> Vec<&Report> {
    reports.iter().filter(|r| r.is_verdict()).collect()
}

fn ipvs_service() -> IpvsService {
    IpvsService { protocol: "TCP".into(), vip: ip("10.200.0.1"), vport: 31055, reals: vec![(ip("10.200.2.2"), 80)] }
}

/// Incident 1: connect from 31055, IPVS takes the SYN-ACK, SYN retransmits,
/// the prober gives up.
fn hijacked_probe() -> Vec<Event> {
    vec![
        kubelet(0, Body::TcpConnect(tcp(SK, 31055, 8080, 2, 2))),
        softirq(1, Body::IpvsConn(IpvsConn {
            protocol: 6,
            caddr: ip("10.200.1.2"),
            cport: 8080,
            vaddr: ip("10.200.0.1"),
            vport: 31055,
            daddr: ip("10.200.2.2"),
            dport: 80,
        })),
        softirq(1000, Body::TcpRetransmit(tcp(SK, 31055, 8080, 2, 2))),
        kubelet(2000, Body::TcpState(tcp(SK, 31055, 8080, 2, 7))),
    ]
}

#[test]
fn observed_diversion_gives_exactly_one_verdict_with_ipvs_fields() {
    let mut c = correlator(ProbeSettings::default(), StaticNode::default());
    let reports = run(&mut c, &hijacked_probe());
    let v = verdicts(&reports);
    assert_eq!(v.len(), 1, "{reports:#?}");
    let d = v[0];
    assert_eq!(d.kind, "synack_diverted");
    assert_eq!(d.comm, "kubelet");
    assert_eq!(d.pid, 4242);
    assert_eq!(d.field_str("saddr"), Some("10.200.0.1"));
    assert_eq!(d.fields["sport"], 31055);
    assert_eq!(d.field_str("daddr"), Some("10.200.1.2"));
    assert_eq!(d.fields["dport"], 8080);
    assert_eq!(d.field_str("ipvs_vip"), Some("10.200.0.1"));
    assert_eq!(d.fields["ipvs_vport"], 31055);
    assert_eq!(d.field_str("ipvs_rip"), Some("10.200.2.2"));
    assert_eq!(d.fields["ipvs_rport"], 80);
    assert_eq!(d.field_str("evidence"), Some("observed"));
    assert_eq!(d.fields["sport_in_nodeport_range"], true);
    assert_eq!(d.fields["sport_reserved"], false);
    assert_eq!(d.field_str("fix"), Some("sysctl -w net.ipv4.ip_local_reserved_ports=30000-32767"));
    assert!(d.message.contains("IPVS virtual service 10.200.0.1:31055"), "{}", d.message);
    // Emitted when IPVS took the SYN-ACK, not when the prober gave up.
    assert_eq!(d.ts_ns, MS);
    let attempt = reports.iter().find(|r| r.kind == "tcp_attempt").unwrap();
    assert_eq!(attempt.field_str("outcome"), Some("diverted"));
    assert_eq!(attempt.fields["syn_retransmits"], 1);
    assert_eq!(c.destinations()[&(ip("10.200.1.2"), 8080)].diverted, 1);
    assert_eq!(c.in_flight(), 0);
}

#[test]
fn healthy_probe_gives_no_verdict() {
    let mut c = correlator(ProbeSettings::default(), StaticNode { services: vec![ipvs_service()], ..Default::default() });
    let reports = run(&mut c, &[
        kubelet(0, Body::TcpConnect(tcp(SK, 45000, 8080, 2, 2))),
        softirq(1, Body::TcpSynSentRcv(tcp(SK, 45000, 8080, 2, 2))),
        softirq(1, Body::TcpState(tcp(SK, 45000, 8080, 2, 1))),
    ]);
    assert!(verdicts(&reports).is_empty(), "{reports:#?}");
    let attempt = &reports[0];
    assert_eq!(attempt.kind, "tcp_attempt");
    assert_eq!(attempt.field_str("state"), Some("ESTABLISHED"));
    assert_eq!(c.destinations()[&(ip("10.200.1.2"), 8080)].established, 1);
}

fn following() -> ProbeSettings {
    ProbeSettings { follows_close: true, ..Default::default() }
}

/// What the kernel sends for a connected probe that answered `head`.
fn closed_probe(head: &[u8]) -> Vec<Event> {
    crate::events::decode(&crate::events::tests::closed_record(SK, 5 * MS, 8 * MS, head)).unwrap()
}

#[test]
fn a_healthy_probe_sent_as_one_record_is_an_established_attempt() {
    // The kernel sends a connected probe's connect, ESTABLISHED and close
    // together.
    let mut c = correlator(following(), StaticNode::default());
    let reports = run(&mut c, &closed_probe(b"HTTP/1.1 200 OK\r\n"));
    assert!(verdicts(&reports).is_empty(), "{reports:#?}");
    assert_eq!(reports.len(), 1, "{reports:#?}");
    let r = &reports[0];
    assert_eq!(r.field_str("outcome"), Some("established"));
    assert_eq!(r.comm, "kubelet");
    assert_eq!(r.fields.get("elapsed_ms"), Some(&serde_json::json!(6)));
    assert_eq!(r.fields["http_status"], 200);
    assert_eq!((&r.fields["request_bytes"], &r.fields["response_bytes"]), (&100.into(), &120.into()));
    assert_eq!((&r.fields["response_ms"], &r.fields["closed_by"]), (&2.into(), &"prober".into()));
    assert_eq!(c.in_flight(), 0);
    assert_eq!(c.destinations()[&(ip("10.200.1.2"), 8080)].established, 1);
}

/// A connected probe's events up to ESTABLISHED, then its close.
fn connected_then(close: TcpClose) -> Vec<Event> {
    vec![
        kubelet(0, Body::TcpConnect(tcp(SK, 45000, 8080, 2, 2))),
        softirq(1, Body::TcpState(tcp(SK, 45000, 8080, 2, 1))),
        softirq(1001, Body::TcpClosed(close)),
    ]
}

fn close(newstate: u8, request: u64, unacked: u64, response: u64, sk_err: i32) -> TcpClose {
    TcpClose {
        info: tcp(SK, 45000, 8080, 1, newstate),
        established_ts_ns: MS,
        first_response_ts_ns: (response > 0).then_some(3 * MS),
        request_bytes: request,
        request_acked: unacked == 0,
        request_unacked: unacked,
        response_bytes: response,
        response_head: None,
        sk_err,
    }
}

#[test]
fn a_probe_the_application_never_answers_is_no_response_on_the_applications_side() {
    let mut c = correlator(following(), StaticNode::default());
    let reports = run(&mut c, &connected_then(close(TCP_FIN_WAIT1, 96, 0, 0, 0)));
    let v = verdicts(&reports);
    assert_eq!(v.len(), 1, "{reports:#?}");
    assert_eq!(v[0].kind, "probe_no_response");
    assert_eq!((&v[0].fields["request_bytes"], &v[0].fields["request_acked"]), (&96.into(), &true.into()));
    assert_eq!((&v[0].fields["connect_ms"], &v[0].fields["elapsed_ms"]), (&1.into(), &1001.into()));
    assert_eq!(v[0].fields["closed_by"], "prober");
    assert!(v[0].message.contains("reached the pod's socket") && v[0].message.contains("not the network"), "{}", v[0].message);
    assert_eq!(reports.iter().find(|r| r.kind == "tcp_attempt").unwrap().fields["outcome"], "no_response");
    assert_eq!(c.destinations()[&(ip("10.200.1.2"), 8080)].no_response, 1);
}

#[test]
fn a_request_the_pod_never_acknowledged_is_blamed_on_the_path() {
    let mut c = correlator(following(), StaticNode::default());
    let v = run(&mut c, &connected_then(close(TCP_FIN_WAIT1, 96, 96, 0, 0)));
    let v = verdicts(&v);
    assert_eq!(v[0].kind, "probe_no_response");
    assert_eq!(v[0].fields["request_acked"], false);
    assert!(v[0].message.contains("never acknowledged") && v[0].message.contains("drops"), "{}", v[0].message);
}

#[test]
fn an_http_error_status_is_a_verdict_with_the_status_and_time() {
    let mut c = correlator(following(), StaticNode::default());
    let mut cl = close(TCP_CLOSE_WAIT, 96, 0, 140, 0);
    cl.response_head = Some(b"HTTP/1.1 503 Ser".to_vec());
    let reports = run(&mut c, &connected_then(cl));
    let v = verdicts(&reports);
    assert_eq!(v.len(), 1, "{reports:#?}");
    assert_eq!(v[0].kind, "probe_http_error");
    assert_eq!((&v[0].fields["http_status"], &v[0].fields["response_ms"]), (&503.into(), &2.into()));
    assert!(v[0].message.contains("answered HTTP 503 after 2 ms"), "{}", v[0].message);
}

#[test]
fn a_pod_that_resets_or_closes_before_answering_gets_its_own_verdict() {
    for (newstate, err, kind) in [(TCP_CLOSE, ECONNRESET, "probe_reset"), (TCP_CLOSE_WAIT, 0, "probe_closed")] {
        let mut c = correlator(following(), StaticNode::default());
        let reports = run(&mut c, &connected_then(close(newstate, 96, 0, 0, err)));
        let v = verdicts(&reports);
        assert_eq!(v.len(), 1, "{reports:#?}");
        assert_eq!(v[0].kind, kind);
        assert_eq!((&v[0].fields["after_ms"], &v[0].fields["closed_by"]), (&1000.into(), &"pod".into()));
    }
}

#[test]
fn a_tcp_probe_and_a_late_answer_are_healthy() {
    let mut c = correlator(following(), StaticNode::default());
    // Nothing sent: a TCP probe, whoever closes.
    let reports = run(&mut c, &connected_then(close(TCP_CLOSE_WAIT, 0, 0, 0, 0)));
    assert!(verdicts(&reports).is_empty(), "{reports:#?}");
    let mut late = close(TCP_CLOSE_WAIT, 96, 0, 140, 0);
    late.first_response_ts_ns = Some(900 * MS);
    late.response_head = Some(b"HTTP/1.1 200 OK\r\n".to_vec());
    let reports = run(&mut c, &connected_then(late));
    assert!(verdicts(&reports).is_empty(), "{reports:#?}");
    assert_eq!(reports[0].fields["response_ms"], 899);
}

#[test]
fn a_connected_probe_waits_for_its_close_and_is_recorded_if_it_never_comes() {
    let mut c = correlator(following(), StaticNode::default());
    let mut events = connected_then(close(TCP_FIN_WAIT1, 0, 0, 0, 0));
    events.pop();
    assert!(run(&mut c, &events).is_empty());
    assert_eq!(c.in_flight(), 1);
    let reports = c.expire(200_000 * MS, 180_000 * MS);
    assert_eq!(reports.len(), 1, "{reports:#?}");
    assert_eq!((reports[0].kind, &reports[0].fields["outcome"]), ("tcp_attempt", &"established".into()));
}

#[test]
fn a_refused_probe_names_what_the_pods_namespace_listens_on() {
    let pod = ip("10.200.1.2");
    let listening = |addr: &str, port| crate::node::Listener { addr: ip(addr), port };
    let node = StaticNode { listeners: vec![(pod, vec![listening("127.0.0.1", 8080)])], ..Default::default() };
    let mut c = correlator(following(), node);
    let reports = run(&mut c, &[
        kubelet(0, Body::TcpConnect(tcp(SK, 45000, 8080, 2, 2))),
        softirq(1, Body::TcpReset(tcp(SK, 45000, 8080, 2, 2))),
        softirq(1, Body::TcpState(tcp(SK, 45000, 8080, 2, 7))),
    ]);
    let v = verdicts(&reports);
    assert_eq!(v[0].kind, "probe_refused");
    assert_eq!(v[0].fields["listeners"], serde_json::json!(["127.0.0.1:8080"]));
    assert!(v[0].message.contains("listens on 127.0.0.1:8080 only") && v[0].message.contains("bind 0.0.0.0"), "{}", v[0].message);
    let node = StaticNode { listeners: vec![(pod, vec![listening("0.0.0.0", 8081)])], ..Default::default() };
    let mut c = correlator(following(), node);
    let reports = run(&mut c, &[
        kubelet(0, Body::TcpConnect(tcp(SK, 45000, 8080, 2, 2))),
        softirq(1, Body::TcpReset(tcp(SK, 45000, 8080, 2, 2))),
        softirq(1, Body::TcpState(tcp(SK, 45000, 8080, 2, 7))),
    ]);
    assert!(verdicts(&reports)[0].message.contains("but 0.0.0.0:8081 does"), "{reports:#?}");
}

#[test]
fn simultaneous_open_closed_before_established_ends_the_attempt() {
    // SYN-SENT -> SYN-RECV -> FIN-WAIT-1: the kernel stops tracking when the
    // socket leaves SYN-RECV, so this is the attempt's last event.
    let mut c = correlator(ProbeSettings::default(), StaticNode::default());
    let reports = run(&mut c, &[
        kubelet(0, Body::TcpConnect(tcp(SK, 45003, 8080, 2, 2))),
        softirq(1, Body::TcpState(tcp(SK, 45003, 8080, 2, 3))),
        kubelet(2, Body::TcpState(tcp(SK, 45003, 8080, 3, 4))),
    ]);
    assert_eq!(c.in_flight(), 0, "{reports:#?}");
    let v = verdicts(&reports);
    assert_eq!(v.len(), 1, "{reports:#?}");
    assert_eq!(v[0].kind, "probe_timeout");
}

#[test]
fn reset_gives_probe_refused() {
    let mut c = correlator(ProbeSettings::default(), StaticNode::default());
    let reports = run(&mut c, &[
        kubelet(0, Body::TcpConnect(tcp(SK, 45001, 8081, 2, 2))),
        softirq(1, Body::TcpReset(tcp(SK, 45001, 8081, 2, 2))),
        softirq(1, Body::TcpState(tcp(SK, 45001, 8081, 2, 7))),
    ]);
    let v = verdicts(&reports);
    assert_eq!(v.len(), 1);
    assert_eq!(v[0].kind, "probe_refused");
    assert_eq!(v[0].fields["dport"], 8081);
}

#[test]
fn no_answer_gives_probe_timeout_with_retransmits() {
    let mut c = correlator(ProbeSettings::default(), StaticNode::default());
    let reports = run(&mut c, &[
        kubelet(0, Body::TcpConnect(tcp(SK, 45002, 8080, 2, 2))),
        softirq(1000, Body::TcpRetransmit(tcp(SK, 45002, 8080, 2, 2))),
        softirq(3000, Body::TcpRetransmit(tcp(SK, 45002, 8080, 2, 2))),
        kubelet(3500, Body::TcpState(tcp(SK, 45002, 8080, 2, 7))),
    ]);
    let v = verdicts(&reports);
    assert_eq!(v.len(), 1);
    assert_eq!(v[0].kind, "probe_timeout");
    assert_eq!(v[0].fields["syn_retransmits"], 2);
    assert_eq!(v[0].fields["elapsed_ms"], 3500);
}

#[test]
fn without_ipvs_hook_a_timeout_on_an_ipvs_port_is_an_inferred_diversion() {
    let settings = ProbeSettings { ipvs_observed: false, ..Default::default() };
    let node = StaticNode { services: vec![ipvs_service()], reserved: PortRanges::default(), ..Default::default() };
    let mut c = correlator(settings, node);
    let mut events = hijacked_probe();
    events.remove(1); // No IPVS event on a tracepoint-only kernel.
    let reports = run(&mut c, &events);
    let v = verdicts(&reports);
    assert_eq!(v.len(), 1, "{reports:#?}");
    assert_eq!(v[0].kind, "synack_diverted");
    assert_eq!(v[0].field_str("evidence"), Some("inferred"));
    assert_eq!(v[0].field_str("ipvs_rip"), Some("10.200.2.2"));
}

#[test]
fn inferred_mode_leaves_timeouts_on_other_ports_alone() {
    let settings = ProbeSettings { ipvs_observed: false, ..Default::default() };
    let mut c = correlator(settings, StaticNode { services: vec![ipvs_service()], ..Default::default() });
    let reports = run(&mut c, &[
        kubelet(0, Body::TcpConnect(tcp(SK, 45003, 8080, 2, 2))),
        kubelet(2000, Body::TcpState(tcp(SK, 45003, 8080, 2, 7))),
    ]);
    assert_eq!(verdicts(&reports)[0].kind, "probe_timeout");
}

#[test]
fn reserved_port_is_reported_and_other_ports_get_a_targeted_fix() {
    let node = StaticNode { reserved: PortRanges::parse("31055").unwrap(), ..Default::default() };
    let mut c = correlator(ProbeSettings::default(), node);
    let v: Vec<Report> = run(&mut c, &hijacked_probe()).into_iter().filter(|r| r.is_verdict()).collect();
    assert_eq!(v[0].fields["sport_reserved"], true);

    let settings = ProbeSettings { nodeport_range: 30000..=30100, ..Default::default() };
    let mut c = correlator(settings, StaticNode::default());
    let v: Vec<Report> = run(&mut c, &hijacked_probe()).into_iter().filter(|r| r.is_verdict()).collect();
    assert_eq!(v[0].fields["sport_in_nodeport_range"], false);
    assert_eq!(v[0].field_str("fix"), Some("sysctl -w net.ipv4.ip_local_reserved_ports=31055"));
}

#[test]
fn tracepoint_connect_without_port_is_completed_by_later_events() {
    let mut c = correlator(ProbeSettings::default(), StaticNode::default());
    let reports = run(&mut c, &[
        // sock:inet_sock_set_state fires before the ephemeral port is bound.
        kubelet(0, Body::TcpConnect(TcpInfo { saddr: ip("0.0.0.0"), ..tcp(SK, 0, 8080, 7, 2) })),
        softirq(1, Body::TcpReset(tcp(SK, 45004, 8080, 2, 2))),
        softirq(1, Body::TcpState(tcp(SK, 45004, 8080, 2, 7))),
    ]);
    let v = verdicts(&reports);
    assert_eq!(v[0].fields["sport"], 45004);
    assert_eq!(v[0].field_str("saddr"), Some("10.200.0.1"));
}

#[test]
fn duplicate_connect_from_two_hooks_is_one_attempt() {
    let mut c = correlator(ProbeSettings::default(), StaticNode::default());
    run(&mut c, &[
        kubelet(0, Body::TcpConnect(tcp(SK, 0, 8080, 7, 2))),
        kubelet(0, Body::TcpConnect(tcp(SK, 45005, 8080, 2, 2))),
    ]);
    assert_eq!(c.in_flight(), 1);
}

#[test]
fn ipvs_conn_for_an_unrelated_tuple_is_ignored() {
    let mut c = correlator(ProbeSettings::default(), StaticNode::default());
    let mut events = hijacked_probe();
    if let Body::IpvsConn(conn) = &mut events[1].body {
        conn.cport = 9999;
    }
    let reports = run(&mut c, &events);
    assert_eq!(verdicts(&reports)[0].kind, "probe_timeout");
}

#[test]
fn finish_reports_attempts_still_waiting_as_timeouts() {
    let mut c = correlator(ProbeSettings::default(), StaticNode::default());
    run(&mut c, &[
        kubelet(0, Body::TcpConnect(tcp(SK, 45006, 8080, 2, 2))),
        kubelet(1500, Body::TcpConnect(tcp(SK + 64, 45007, 8080, 2, 2))),
    ]);
    let reports = c.finish(2000 * MS);
    let v = verdicts(&reports);
    assert_eq!(v.len(), 1, "the young attempt is not judged yet");
    assert_eq!(v[0].fields["still_pending"], true);
    assert_eq!(c.in_flight(), 1);
}

#[test]
fn healthy_probes_counted_in_the_kernel_add_only_what_is_new() {
    let pod = (ip("10.200.1.2"), 8080);
    let other = (ip("10.200.1.3"), 8081);
    // One success came through the ring buffer (the count was full, or the
    // setting was not yet set), then the kernel counted the rest.
    let mut c = correlator(ProbeSettings { attempt_records: false, ..following() }, StaticNode::default());
    run(&mut c, &closed_probe(b"HTTP/1.1 200 OK\r\n"));
    assert_eq!(c.kernel_established(&[(pod, 3)], 0), 3);
    // Counts are cumulative: a second read adds only the difference.
    assert_eq!(c.kernel_established(&[(pod, 5), (other, 2)], 0), 4);
    assert_eq!(c.kernel_established(&[(pod, 5), (other, 2)], 0), 0);
    assert_eq!(c.destinations()[&pod].established, 6);
    assert_eq!(c.destinations()[&other].established, 2);
    assert_eq!(c.in_flight(), 0);
}

/// A pod at a tiny CPU limit: its container's counters, sampled while it
/// is probed, say it was throttled for most of the probe's window.
fn throttled_node(throttled_per_tick_ms: u64) -> StaticNode {
    use crate::cgroup_cpu::{CpuReading, ServingCgroup};
    let path = "/kubepods/burstable/pod0a1b/c1";
    let cgroup = ServingCgroup { pid: 77, path: path.into(), cpu_dir: path.into(), psi_dir: None, v1: true };
    let readings = (0..40)
        .map(|i| CpuReading {
            ts_ns: i * 100 * MS,
            throttled_us: i * throttled_per_tick_ms * 1000,
            nr_throttled: i * u64::from(throttled_per_tick_ms > 0),
            nr_periods: i,
            cpu_limit: Some(0.01),
            ..Default::default()
        })
        .collect();
    StaticNode { serving: vec![((ip("10.200.1.2"), 8080), cgroup)], readings: vec![(path.into(), readings)], ..Default::default() }
}

fn sampled_run(node: StaticNode, events: &[Event]) -> Vec<Report> {
    let mut c = correlator(following(), node);
    // An earlier probe to the pod started its sampling.
    c.kernel_established(&[((ip("10.200.1.2"), 8080), 1)], 0);
    let mut out = Vec::new();
    for e in events {
        while c.cpu.targets_sampled_until() < e.ts_ns {
            let next = c.cpu.targets_sampled_until() + cpu_window::SAMPLE_PERIOD_NS;
            c.sample_cpu(next);
        }
        out.extend(c.handle(e));
    }
    out
}

#[test]
fn a_probe_stalled_by_its_containers_cpu_limit_says_so_first() {
    let mut events = connected_then(close(TCP_FIN_WAIT1, 96, 0, 0, 0));
    for e in &mut events {
        e.ts_ns += 200 * MS;
    }
    let reports = sampled_run(throttled_node(90), &events);
    let v = verdicts(&reports);
    assert_eq!(v.len(), 1, "{reports:#?}");
    let f = &v[0].fields;
    assert_eq!(f["cpu_throttled_ms"], 900, "{f:?}");
    assert_eq!((&f["cpu_throttled_periods"], &f["cpu_limit"], &f["cpu_window_ms"]), (&10.into(), &0.01.into(), &1000.into()));
    assert_eq!((&f["cgroup"], &f["cpu_measured"]), (&"/kubepods/burstable/pod0a1b/c1".into(), &"sampled".into()));
    let m = &v[0].message;
    assert!(m.contains("got no response: its container was CPU-throttled in 10 of 10 periods of the 1000 ms"), "{m}");
    assert!(m.contains("limit of 0.01 CPU: raise resources.limits.cpu"), "{m}");
}

#[test]
fn a_stalled_probe_whose_container_was_not_throttled_is_not_blamed_on_it() {
    let mut events = connected_then(close(TCP_FIN_WAIT1, 96, 0, 0, 0));
    for e in &mut events {
        e.ts_ns += 200 * MS;
    }
    let reports = sampled_run(throttled_node(0), &events);
    let v = verdicts(&reports);
    assert_eq!(v[0].fields["cpu_throttled_ms"], 0);
    let m = &v[0].message;
    assert!(!m.contains("CPU-throttled in") && m.contains("not held back by its limits (0 ms"), "{m}");
    // Without a sample before the probe, the window is not guessed.
    let reports = run(&mut correlator(following(), throttled_node(90)), &connected_then(close(TCP_FIN_WAIT1, 96, 0, 0, 0)));
    let v = verdicts(&reports);
    assert!(v[0].fields["cpu_throttled_ms"].is_null());
    assert_eq!(v[0].fields["cpu_measured"], "no_sample_before_the_probe");
}

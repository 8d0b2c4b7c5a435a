//! Recorded event sequences for each probe outcome, shaped like what the
//! kernel programs emit (see tests/scenarios/nodeport for the live version).

use tracer_common::tcp_state::{TCP_CLOSE, TCP_CLOSE_WAIT, TCP_FIN_WAIT1};

use super::*;
use crate::{
    events::{Mode, IpvsConn, TcpClose},
    network::{IpvsService, ListenQueue, PortRanges, StaticNetwork},
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
    Event { ts_ns: ts_ms * MS, pid: 4242, tid: 4242, comm: comm.into(), cgroup_id: 1, mode: Mode::Kprobe, body }
}

fn kubelet(ts_ms: u64, body: Body) -> Event {
    ev(ts_ms, "kubelet", body)
}

fn softirq(ts_ms: u64, body: Body) -> Event {
    ev(ts_ms, "swapper/0", body)
}

fn correlator(settings: ProbeSettings, node: StaticNetwork) -> ProbeCorrelator<StaticNetwork> {
    ProbeCorrelator::new(settings, node)
}

fn run(c: &mut ProbeCorrelator<StaticNetwork>, events: &[Event]) -> Vec<Report> {
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
    let mut c = correlator(ProbeSettings::default(), StaticNetwork::default());
    let reports = run(&mut c, &hijacked_probe());
    let v = verdicts(&reports);
    assert_eq!(v.len(), 1, "{reports:#?}");
    let d = v[0];
    assert_eq!(d.kind, "synack_diverted");
    assert_eq!(d.comm, "kubelet");
    assert_eq!(d.pid, 4242);
    assert_eq!(d.to_json()["saddr"].as_str(), Some("10.200.0.1"));
    assert_eq!(d.to_json()["sport"], 31055);
    assert_eq!(d.to_json()["daddr"].as_str(), Some("10.200.1.2"));
    assert_eq!(d.to_json()["dport"], 8080);
    assert_eq!(d.to_json()["ipvs_vip"].as_str(), Some("10.200.0.1"));
    assert_eq!(d.to_json()["ipvs_vport"], 31055);
    assert_eq!(d.to_json()["ipvs_rip"].as_str(), Some("10.200.2.2"));
    assert_eq!(d.to_json()["ipvs_rport"], 80);
    assert_eq!(d.field_str("evidence"), Some("observed"));
    assert_eq!(d.to_json()["sport_in_nodeport_range"], true);
    assert_eq!(d.to_json()["sport_reserved"], false);
    assert_eq!(d.field_str("fix"), Some("sysctl -w net.ipv4.ip_local_reserved_ports=30000-32767"));
    assert!(d.message.contains("IPVS virtual service 10.200.0.1:31055"), "{}", d.message);
    // Emitted when IPVS took the SYN-ACK, not when the prober gave up.
    assert_eq!(d.ts_ns, MS);
    let attempt = reports.iter().find(|r| r.kind == "tcp_attempt").unwrap();
    assert_eq!(attempt.field_str("outcome"), Some("diverted"));
    assert_eq!(attempt.to_json()["syn_retransmits"], 1);
    assert_eq!(c.destinations()[&(ip("10.200.1.2"), 8080)].diverted, 1);
    assert_eq!(c.in_flight(), 0);
}

#[test]
fn healthy_probe_gives_no_verdict() {
    let mut c = correlator(ProbeSettings::default(), StaticNetwork { services: vec![ipvs_service()], ..Default::default() });
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
    let mut c = correlator(following(), StaticNetwork::default());
    let reports = run(&mut c, &closed_probe(b"HTTP/1.1 200 OK\r\n"));
    assert!(verdicts(&reports).is_empty(), "{reports:#?}");
    assert_eq!(reports.len(), 1, "{reports:#?}");
    let r = &reports[0];
    assert_eq!(r.field_str("outcome"), Some("established"));
    assert_eq!(r.comm, "kubelet");
    assert_eq!(r.to_json().get("elapsed_ms"), Some(&serde_json::json!(6)));
    assert_eq!(r.to_json()["http_status"], 200);
    assert_eq!((&r.to_json()["request_bytes"], &r.to_json()["response_bytes"]), (&100.into(), &120.into()));
    assert_eq!((&r.to_json()["response_ms"], &r.to_json()["closed_by"]), (&2.into(), &"prober".into()));
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
    let mut c = correlator(following(), StaticNetwork::default());
    let reports = run(&mut c, &connected_then(close(TCP_FIN_WAIT1, 96, 0, 0, 0)));
    let v = verdicts(&reports);
    assert_eq!(v.len(), 1, "{reports:#?}");
    assert_eq!(v[0].kind, "probe_no_response");
    assert_eq!((&v[0].to_json()["request_bytes"], &v[0].to_json()["request_acked"]), (&96.into(), &true.into()));
    assert_eq!((&v[0].to_json()["connect_ms"], &v[0].to_json()["elapsed_ms"]), (&1.into(), &1001.into()));
    assert_eq!(v[0].to_json()["closed_by"], "prober");
    assert!(v[0].message.contains("reached the pod's socket") && v[0].message.contains("not the network"), "{}", v[0].message);
    assert_eq!(reports.iter().find(|r| r.kind == "tcp_attempt").unwrap().to_json()["outcome"], "no_response");
    assert_eq!(c.destinations()[&(ip("10.200.1.2"), 8080)].no_response, 1);
}

#[test]
fn a_request_the_pod_never_acknowledged_is_blamed_on_the_path() {
    let mut c = correlator(following(), StaticNetwork::default());
    let v = run(&mut c, &connected_then(close(TCP_FIN_WAIT1, 96, 96, 0, 0)));
    let v = verdicts(&v);
    assert_eq!(v[0].kind, "probe_no_response");
    assert_eq!(v[0].to_json()["request_acked"], false);
    assert!(v[0].message.contains("never acknowledged") && v[0].message.contains("drops"), "{}", v[0].message);
}

#[test]
fn an_http_error_status_is_a_verdict_with_the_status_and_time() {
    let mut c = correlator(following(), StaticNetwork::default());
    let mut cl = close(TCP_CLOSE_WAIT, 96, 0, 140, 0);
    cl.response_head = Some(b"HTTP/1.1 503 Ser".to_vec());
    let reports = run(&mut c, &connected_then(cl));
    let v = verdicts(&reports);
    assert_eq!(v.len(), 1, "{reports:#?}");
    assert_eq!(v[0].kind, "probe_http_error");
    assert_eq!((&v[0].to_json()["http_status"], &v[0].to_json()["response_ms"]), (&503.into(), &2.into()));
    assert!(v[0].message.contains("answered HTTP 503 after 2 ms"), "{}", v[0].message);
}

#[test]
fn a_pod_that_resets_or_closes_before_answering_gets_its_own_verdict() {
    for (newstate, err, kind) in [(TCP_CLOSE, ECONNRESET, "probe_reset"), (TCP_CLOSE_WAIT, 0, "probe_closed")] {
        let mut c = correlator(following(), StaticNetwork::default());
        let reports = run(&mut c, &connected_then(close(newstate, 96, 0, 0, err)));
        let v = verdicts(&reports);
        assert_eq!(v.len(), 1, "{reports:#?}");
        assert_eq!(v[0].kind, kind);
        assert_eq!((&v[0].to_json()["after_ms"], &v[0].to_json()["closed_by"]), (&1000.into(), &"pod".into()));
    }
}

#[test]
fn a_tcp_probe_and_a_late_answer_are_healthy() {
    let mut c = correlator(following(), StaticNetwork::default());
    // Nothing sent: a TCP probe, whoever closes.
    let reports = run(&mut c, &connected_then(close(TCP_CLOSE_WAIT, 0, 0, 0, 0)));
    assert!(verdicts(&reports).is_empty(), "{reports:#?}");
    let mut late = close(TCP_CLOSE_WAIT, 96, 0, 140, 0);
    late.first_response_ts_ns = Some(900 * MS);
    late.response_head = Some(b"HTTP/1.1 200 OK\r\n".to_vec());
    let reports = run(&mut c, &connected_then(late));
    assert!(verdicts(&reports).is_empty(), "{reports:#?}");
    assert_eq!(reports[0].to_json()["response_ms"], 899);
}

#[test]
fn a_connected_probe_waits_for_its_close_and_is_recorded_if_it_never_comes() {
    let mut c = correlator(following(), StaticNetwork::default());
    let mut events = connected_then(close(TCP_FIN_WAIT1, 0, 0, 0, 0));
    events.pop();
    assert!(run(&mut c, &events).is_empty());
    assert_eq!(c.in_flight(), 1);
    let reports = c.expire(200_000 * MS, 180_000 * MS);
    assert_eq!(reports.len(), 1, "{reports:#?}");
    assert_eq!((reports[0].kind, &reports[0].to_json()["outcome"]), ("tcp_attempt", &"established".into()));
}

#[test]
fn a_connected_probe_whose_request_is_retransmitted_is_no_timeout_when_it_never_closes() {
    // The kernel sends the owed connect before the retransmit and keeps
    // ESTABLISHED for the close record; the tracer stops first.
    let mut c = correlator(following(), StaticNetwork::default());
    let events = [
        kubelet(0, Body::TcpConnect(tcp(SK, 45000, 8080, 2, 2))),
        softirq(300, Body::TcpRetransmit(tcp(SK, 45000, 8080, 1, 1))),
    ];
    assert!(run(&mut c, &events).is_empty());
    let reports = c.finish(20_000 * MS);
    assert!(verdicts(&reports).is_empty(), "{reports:#?}");
    assert_eq!(reports[0].to_json()["outcome"], "established");
}

#[test]
fn a_refused_probe_names_what_the_pods_namespace_listens_on() {
    let pod = ip("10.200.1.2");
    let listening = |addr: &str, port| crate::network::Listener { addr: ip(addr), port };
    let node = StaticNetwork { listeners: vec![(pod, vec![listening("127.0.0.1", 8080)])], ..Default::default() };
    let mut c = correlator(following(), node);
    let reports = run(&mut c, &[
        kubelet(0, Body::TcpConnect(tcp(SK, 45000, 8080, 2, 2))),
        softirq(1, Body::TcpReset(tcp(SK, 45000, 8080, 2, 2))),
        softirq(1, Body::TcpState(tcp(SK, 45000, 8080, 2, 7))),
    ]);
    let v = verdicts(&reports);
    assert_eq!(v[0].kind, "probe_refused");
    assert_eq!(v[0].to_json()["listeners"], serde_json::json!(["127.0.0.1:8080"]));
    assert!(v[0].message.contains("listens on 127.0.0.1:8080 only") && v[0].message.contains("bind 0.0.0.0"), "{}", v[0].message);
    let node = StaticNetwork { listeners: vec![(pod, vec![listening("0.0.0.0", 8081)])], ..Default::default() };
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
    let mut c = correlator(ProbeSettings::default(), StaticNetwork::default());
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
    let mut c = correlator(ProbeSettings::default(), StaticNetwork::default());
    let reports = run(&mut c, &[
        kubelet(0, Body::TcpConnect(tcp(SK, 45001, 8081, 2, 2))),
        softirq(1, Body::TcpReset(tcp(SK, 45001, 8081, 2, 2))),
        softirq(1, Body::TcpState(tcp(SK, 45001, 8081, 2, 7))),
    ]);
    let v = verdicts(&reports);
    assert_eq!(v.len(), 1);
    assert_eq!(v[0].kind, "probe_refused");
    assert_eq!(v[0].to_json()["dport"], 8081);
}

#[test]
fn no_answer_gives_probe_timeout_with_retransmits() {
    let mut c = correlator(ProbeSettings::default(), StaticNetwork::default());
    let reports = run(&mut c, &[
        kubelet(0, Body::TcpConnect(tcp(SK, 45002, 8080, 2, 2))),
        softirq(1000, Body::TcpRetransmit(tcp(SK, 45002, 8080, 2, 2))),
        softirq(3000, Body::TcpRetransmit(tcp(SK, 45002, 8080, 2, 2))),
        kubelet(3500, Body::TcpState(tcp(SK, 45002, 8080, 2, 7))),
    ]);
    let v = verdicts(&reports);
    assert_eq!(v.len(), 1);
    assert_eq!(v[0].kind, "probe_timeout");
    assert_eq!(v[0].to_json()["syn_retransmits"], 2);
    assert_eq!(v[0].to_json()["elapsed_ms"], 3500);
}

#[test]
fn without_ipvs_hook_a_timeout_on_an_ipvs_port_is_an_inferred_diversion() {
    let settings = ProbeSettings { ipvs_observed: false, ..Default::default() };
    let node = StaticNetwork { services: vec![ipvs_service()], reserved: PortRanges::default(), ..Default::default() };
    let mut c = correlator(settings, node);
    let mut events = hijacked_probe();
    events.remove(1); // No IPVS event on a tracepoint-only kernel.
    let reports = run(&mut c, &events);
    let v = verdicts(&reports);
    assert_eq!(v.len(), 1, "{reports:#?}");
    assert_eq!(v[0].kind, "synack_diverted");
    assert_eq!(v[0].field_str("evidence"), Some("inferred"));
    assert_eq!(v[0].to_json()["ipvs_rip"].as_str(), Some("10.200.2.2"));
}

#[test]
fn inferred_mode_leaves_timeouts_on_other_ports_alone() {
    let settings = ProbeSettings { ipvs_observed: false, ..Default::default() };
    let mut c = correlator(settings, StaticNetwork { services: vec![ipvs_service()], ..Default::default() });
    let reports = run(&mut c, &[
        kubelet(0, Body::TcpConnect(tcp(SK, 45003, 8080, 2, 2))),
        kubelet(2000, Body::TcpState(tcp(SK, 45003, 8080, 2, 7))),
    ]);
    assert_eq!(verdicts(&reports)[0].kind, "probe_timeout");
}

#[test]
fn reserved_port_is_reported_and_other_ports_get_a_targeted_fix() {
    let node = StaticNetwork { reserved: PortRanges::parse("31055").unwrap(), ..Default::default() };
    let mut c = correlator(ProbeSettings::default(), node);
    let v: Vec<Report> = run(&mut c, &hijacked_probe()).into_iter().filter(|r| r.is_verdict()).collect();
    assert_eq!(v[0].to_json()["sport_reserved"], true);

    let settings = ProbeSettings { nodeport_range: 30000..=30100, ..Default::default() };
    let mut c = correlator(settings, StaticNetwork::default());
    let v: Vec<Report> = run(&mut c, &hijacked_probe()).into_iter().filter(|r| r.is_verdict()).collect();
    assert_eq!(v[0].to_json()["sport_in_nodeport_range"], false);
    assert_eq!(v[0].field_str("fix"), Some("sysctl -w net.ipv4.ip_local_reserved_ports=31055"));
}

#[test]
fn tracepoint_connect_without_port_is_completed_by_later_events() {
    let mut c = correlator(ProbeSettings::default(), StaticNetwork::default());
    let reports = run(&mut c, &[
        // sock:inet_sock_set_state fires before the ephemeral port is bound.
        kubelet(0, Body::TcpConnect(TcpInfo { saddr: ip("0.0.0.0"), ..tcp(SK, 0, 8080, 7, 2) })),
        softirq(1, Body::TcpReset(tcp(SK, 45004, 8080, 2, 2))),
        softirq(1, Body::TcpState(tcp(SK, 45004, 8080, 2, 7))),
    ]);
    let v = verdicts(&reports);
    assert_eq!(v[0].to_json()["sport"], 45004);
    assert_eq!(v[0].to_json()["saddr"].as_str(), Some("10.200.0.1"));
}

#[test]
fn duplicate_connect_from_two_hooks_is_one_attempt() {
    let mut c = correlator(ProbeSettings::default(), StaticNetwork::default());
    run(&mut c, &[
        kubelet(0, Body::TcpConnect(tcp(SK, 0, 8080, 7, 2))),
        kubelet(0, Body::TcpConnect(tcp(SK, 45005, 8080, 2, 2))),
    ]);
    assert_eq!(c.in_flight(), 1);
}

#[test]
fn ipvs_conn_for_an_unrelated_tuple_is_ignored() {
    let mut c = correlator(ProbeSettings::default(), StaticNetwork::default());
    let mut events = hijacked_probe();
    if let Body::IpvsConn(conn) = &mut events[1].body {
        conn.cport = 9999;
    }
    let reports = run(&mut c, &events);
    assert_eq!(verdicts(&reports)[0].kind, "probe_timeout");
}

#[test]
fn finish_reports_attempts_still_waiting_as_timeouts() {
    let mut c = correlator(ProbeSettings::default(), StaticNetwork::default());
    run(&mut c, &[
        kubelet(0, Body::TcpConnect(tcp(SK, 45006, 8080, 2, 2))),
        kubelet(1500, Body::TcpConnect(tcp(SK + 64, 45007, 8080, 2, 2))),
    ]);
    let reports = c.finish(2000 * MS);
    let v = verdicts(&reports);
    assert_eq!(v.len(), 1, "the young attempt is not judged yet");
    assert_eq!(v[0].to_json()["still_pending"], true);
    assert_eq!(c.in_flight(), 1);
}

#[test]
fn healthy_probes_counted_in_the_kernel_add_only_what_is_new() {
    let pod = (ip("10.200.1.2"), 8080);
    let other = (ip("10.200.1.3"), 8081);
    // One success came through the ring buffer (the count was full, or the
    // setting was not yet set), then the kernel counted the rest.
    let mut c = correlator(ProbeSettings { attempt_records: false, ..following() }, StaticNetwork::default());
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
fn throttled_node(throttled_per_tick_ms: u64) -> StaticNetwork {
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
    StaticNetwork { serving: vec![((ip("10.200.1.2"), 8080), cgroup)], readings: vec![(path.into(), readings)], ..Default::default() }
}

fn sampled_run(node: StaticNetwork, events: &[Event]) -> Vec<Report> {
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
    let f = &v[0].to_json();
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
    assert_eq!(v[0].to_json()["cpu_throttled_ms"], 0);
    let m = &v[0].message;
    assert!(!m.contains("CPU-throttled in") && m.contains("not held back by its limits (0 ms"), "{m}");
    // Without a sample before the probe, the window is not guessed.
    let reports = run(&mut correlator(following(), throttled_node(90)), &connected_then(close(TCP_FIN_WAIT1, 96, 0, 0, 0)));
    let v = verdicts(&reports);
    assert!(v[0].to_json()["cpu_throttled_ms"].is_null());
    assert_eq!(v[0].to_json()["cpu_measured"], "no_sample_before_the_probe");
}

// Dropped packets, as the kfree_skb hook sends them: reason values and
// names as the bare 6.18's BTF has them, namespaces by inode.
const HOST_NS: u32 = 4026531840;
const POD_NS: u32 = 4026532500;
const TCP_V4_RCV: u64 = 0xffff_ffff_8100_1000;
const NFT_DO_CHAIN: u64 = 0xffff_ffff_8100_2000;
const IP_RCV_FINISH_CORE: u64 = 0xffff_ffff_8100_3000;
const TCP_VALIDATE_INCOMING: u64 = 0xffff_ffff_8100_4000;

fn drop_names() -> DropNames {
    let reasons = [(2, "NOT_SPECIFIED"), (12, "NETFILTER_DROP"), (16, "IP_RPFILTER"), (40, "TCP_LISTEN_OVERFLOW"), (46, "TCP_INVALID_SYN")];
    DropNames { reasons: std::sync::Arc::new(reasons.iter().map(|(v, n)| (*v, n.to_string())).collect()), host_netns: HOST_NS }
}

fn dropping_node() -> StaticNetwork {
    StaticNetwork {
        symbols: vec![
            (TCP_V4_RCV, "tcp_v4_rcv".into()),
            (NFT_DO_CHAIN, "nft_do_chain".into()),
            (IP_RCV_FINISH_CORE, "ip_rcv_finish_core".into()),
            (TCP_VALIDATE_INCOMING, "tcp_validate_incoming".into()),
        ],
        netns: vec![(ip("10.200.1.2"), POD_NS)],
        ..Default::default()
    }
}

fn with_drops(s: ProbeSettings) -> ProbeSettings {
    ProbeSettings { drop_names: drop_names(), ..s }
}

/// A packet of the probe from 10.200.0.1:`sport` to 10.200.1.2:8080
/// (`to_pod`) or back, freed as dropped.
fn dropped(ts_ms: u64, to_pod: bool, sport: u16, reason: Option<u32>, location: u64, netns: u32, interface: &str) -> Event {
    let (node, pod) = (ip("10.200.0.1"), ip("10.200.1.2"));
    let (saddr, s, daddr, d) = if to_pod { (node, sport, pod, 8080) } else { (pod, 8080, node, sport) };
    softirq(ts_ms, Body::PacketDrop(crate::events::PacketDrop {
        saddr,
        sport: s,
        daddr,
        dport: d,
        location,
        reason,
        netns,
        sk: 0,
        interface: interface.into(),
    }))
}

/// A probe that never connects: its SYN and two retransmits, `between`
/// after the first, then the prober's close.
fn unanswered(sport: u16, between: Vec<Event>) -> Vec<Event> {
    let mut events = vec![kubelet(0, Body::TcpConnect(tcp(SK, sport, 8080, 2, 2)))];
    events.extend(between);
    events.push(softirq(1000, Body::TcpRetransmit(tcp(SK, sport, 8080, 2, 2))));
    events.push(kubelet(1500, Body::TcpState(tcp(SK, sport, 8080, 2, 7))));
    events
}

fn only_verdict(reports: &[Report]) -> &Report {
    let v = verdicts(reports);
    assert_eq!(v.len(), 1, "{reports:#?}");
    v[0]
}

#[test]
fn a_syn_dropped_by_a_firewall_in_the_pods_namespace_says_where() {
    let mut c = correlator(with_drops(ProbeSettings::default()), dropping_node());
    let reports = run(&mut c, &unanswered(45010, vec![
        dropped(0, true, 45010, Some(12), NFT_DO_CHAIN + 0x40, POD_NS, "eth0"),
        dropped(1000, true, 45010, Some(12), NFT_DO_CHAIN + 0x40, POD_NS, "eth0"),
        // Another probe's drop to the same pod: not this one's.
        dropped(500, true, 45999, Some(16), IP_RCV_FINISH_CORE, POD_NS, "eth0"),
    ]));
    let v = only_verdict(&reports);
    assert_eq!(v.kind, "probe_timeout");
    assert_eq!(
        v.to_json()["drops"],
        serde_json::json!([{"direction": "to_pod", "reason": "NETFILTER_DROP", "location": "nft_do_chain", "count": 2, "netns": "pod", "interface": "eth0"}])
    );
    assert!(v.message.contains("the SYN was dropped (2 times) by netfilter (NETFILTER_DROP in nft_do_chain) on eth0 in the pod's network namespace (10.200.1.2)"), "{}", v.message);
    assert!(v.message.contains("check the iptables/nftables rules in the pod's namespace"), "{}", v.message);
    assert_eq!(v.to_json()["listen_queue"], serde_json::Value::Null);
}

/// Strict rp_filter on the node's interface the pod's reply comes back
/// by: the SYN-ACK dies in the node's namespace, and each retransmitted
/// SYN meets the pod's half-open connection, which frees it (more of
/// those than SYN-ACKs lost, but they are the echo, not the cause).
fn rp_filtered(reason: Option<u32>, echo_reason: Option<u32>) -> Vec<Event> {
    unanswered(45011, vec![
        dropped(1, false, 45011, reason, IP_RCV_FINISH_CORE + 0x90, HOST_NS, "veth-ptrp"),
        dropped(1000, true, 45011, echo_reason, TCP_V4_RCV + 0x200, POD_NS, "eth0"),
        dropped(1001, false, 45011, reason, IP_RCV_FINISH_CORE + 0x90, HOST_NS, "veth-ptrp"),
        dropped(1200, true, 45011, echo_reason, TCP_V4_RCV + 0x200, POD_NS, "eth0"),
        dropped(1400, true, 45011, echo_reason, TCP_V4_RCV + 0x200, POD_NS, "eth0"),
    ])
}

#[test]
fn a_syn_ack_dropped_by_strict_rp_filter_names_the_interface_and_the_sysctl() {
    let node = StaticNetwork { rp_filter: vec![("veth-ptrp".into(), 1)], ..dropping_node() };
    let mut c = correlator(with_drops(ProbeSettings::default()), node);
    let reports = run(&mut c, &rp_filtered(Some(16), Some(2)));
    let v = only_verdict(&reports);
    let json = v.to_json();
    let drops = json["drops"].as_array().unwrap();
    assert_eq!(drops.len(), 2, "{drops:?}");
    assert_eq!(
        drops[0],
        serde_json::json!({"direction": "from_pod", "reason": "IP_RPFILTER", "location": "ip_rcv_finish_core", "count": 2, "netns": "host", "interface": "veth-ptrp"})
    );
    assert_eq!((&drops[1]["reason"], &drops[1]["count"]), (&"NOT_SPECIFIED".into(), &3.into()));
    let m = &v.message;
    assert!(m.contains("the pod's SYN-ACK was dropped (2 times) by reverse-path filtering (IP_RPFILTER in ip_rcv_finish_core) on veth-ptrp in the node's network namespace"), "{m}");
    assert!(m.contains("rp_filter is 1 (strict) on veth-ptrp and the route back to the pod (10.200.1.2) leaves by another interface"), "{m}");
    assert!(m.contains("sysctl -w net.ipv4.conf.veth-ptrp.rp_filter=2 (loose)"), "{m}");
}

#[test]
fn before_5_17_an_rp_filter_drop_is_told_by_its_place_and_the_interfaces_mode() {
    // No reason: the place (where input routing frees packets) and the
    // interface's strict mode tell.
    let node = StaticNetwork { rp_filter: vec![("veth-ptrp".into(), 1)], ..dropping_node() };
    let mut c = correlator(with_drops(ProbeSettings::default()), node);
    let reports = run(&mut c, &rp_filtered(None, None));
    let v = only_verdict(&reports);
    assert_eq!(v.to_json()["drops"][0]["reason"], serde_json::Value::Null);
    assert_eq!(v.to_json()["drops"][0]["location"], "ip_rcv_finish_core");
    let m = &v.message;
    assert!(m.contains("most likely by reverse-path filtering (in ip_rcv_finish_core; this kernel gives no reason) on veth-ptrp"), "{m}");
    assert!(m.contains("net.ipv4.conf.veth-ptrp.rp_filter=2"), "{m}");

    // Or the namespace's counter, where the interface's mode is not known.
    let node = StaticNetwork { tcp_ext: vec![(None, [("IPReversePathFilter".to_string(), 7)].into())], ..dropping_node() };
    let mut c = correlator(with_drops(ProbeSettings::default()), node);
    let m = only_verdict(&run(&mut c, &rp_filtered(None, None))).message.clone();
    assert!(m.contains("(IPReversePathFilter: 7 in that namespace)") && m.contains("rp_filter=2"), "{m}");

    // Neither: the place alone, and no claim about rp_filter.
    let mut c = correlator(with_drops(ProbeSettings::default()), dropping_node());
    let m = only_verdict(&run(&mut c, &rp_filtered(None, None))).message.clone();
    assert!(m.contains("by the kernel (in ip_rcv_finish_core; this kernel gives no reason)") && !m.contains("rp_filter"), "{m}");
}

#[test]
fn retransmitted_syns_the_pod_frees_say_its_syn_ack_is_lost_on_the_way_back() {
    let mut c = correlator(with_drops(ProbeSettings::default()), dropping_node());
    let reports = run(&mut c, &unanswered(45012, vec![dropped(1000, true, 45012, Some(2), TCP_V4_RCV, POD_NS, "eth0")]));
    let m = &only_verdict(&reports).message;
    assert!(m.contains("the SYN was dropped by the kernel (NOT_SPECIFIED in tcp_v4_rcv)"), "{m}");
    assert!(m.contains("so the pod did answer and its SYN-ACK is lost on the way back"), "{m}");
}

fn listen_queue(waiting: u32, probe_waiting: bool, overflows: u64) -> ((IpAddr, u16), ListenQueue) {
    let listener = crate::network::Listener { addr: ip("10.200.1.2"), port: 8080 };
    ((ip("10.200.1.2"), 8080), ListenQueue { listener, waiting, probe_waiting, listen_overflows: Some(overflows) })
}

/// A listener that never accepts, its queue full: the kernel consumes
/// the SYN (no drop reported; observed on 6.18, 6.1 and 5.10), and the
/// pod's counters are what tell.
#[test]
fn a_syn_turned_away_by_a_full_accept_queue_is_told_from_the_pods_counters() {
    let node = StaticNetwork { listen_queues: vec![listen_queue(2, false, 3)], ..dropping_node() };
    let mut c = correlator(with_drops(ProbeSettings::default()), node);
    let v = only_verdict(&run(&mut c, &unanswered(45013, vec![]))).clone();
    assert_eq!(v.kind, "probe_timeout");
    assert_eq!(v.to_json()["drops"], serde_json::json!([]));
    assert_eq!(
        v.to_json()["listen_queue"],
        serde_json::json!({"listener": "10.200.1.2:8080", "waiting": 2, "probe_waiting": false, "listen_overflows": 3})
    );
    let m = &v.message;
    assert!(m.contains("the pod's listener on 10.200.1.2:8080 has a full accept queue: 2 connections the application has not accepted wait in it"), "{m}");
    assert!(m.contains("has counted 3 listen queue overflows (TcpExtListenOverflows)"), "{m}");
    assert!(m.contains("listen backlog") && m.contains("net.core.somaxconn") && m.contains("accept connections faster"), "{m}");

    // Connections waiting but no overflow counted: not the cause.
    let node = StaticNetwork { listen_queues: vec![listen_queue(2, false, 0)], ..dropping_node() };
    let mut c = correlator(with_drops(ProbeSettings::default()), node);
    let m = only_verdict(&run(&mut c, &unanswered(45013, vec![]))).message.clone();
    assert!(m.contains("the pod is not answering") && !m.contains("accept queue"), "{m}");
}

#[test]
fn a_connection_the_application_never_accepts_is_not_blamed_on_a_slow_answer() {
    let node = StaticNetwork { listen_queues: vec![listen_queue(1, true, 0)], ..Default::default() };
    let mut c = correlator(following(), node);
    let reports = run(&mut c, &connected_then(close(TCP_FIN_WAIT1, 96, 0, 0, 0)));
    let v = only_verdict(&reports);
    assert_eq!(v.kind, "probe_no_response");
    assert_eq!(v.to_json()["listen_queue"]["probe_waiting"], true);
    let m = &v.message;
    assert!(m.contains("the application never accepted the connection: it waits in the accept queue of the listener on 10.200.1.2:8080 (1 waiting in all)"), "{m}");
    assert!(m.contains("net.core.somaxconn") && !m.contains("is stalled, not the network"), "{m}");

    // Accepted (a file owns it) and unanswered: the application is slow.
    let node = StaticNetwork { listen_queues: vec![listen_queue(0, false, 0)], ..Default::default() };
    let mut c = correlator(following(), node);
    let m = only_verdict(&run(&mut c, &connected_then(close(TCP_FIN_WAIT1, 96, 0, 0, 0)))).message.clone();
    assert!(m.contains("is stalled, not the network"), "{m}");
}

/// The handshake's last ACK (and the request with it) meets a full
/// accept queue: the prober thinks it is connected; 5.17+ says
/// TCP_LISTEN_OVERFLOW, and the pod's SYN-ACK retransmits reaching the
/// connected prober (TCP_INVALID_SYN) are the echo. 6.1 gives the ACK
/// NOT_SPECIFIED (seen in its VM); 5.10 gives no reason and frees the
/// SYN-ACK retransmits without the tracepoint.
fn overflowed_handshake(reason: Option<u32>) -> Vec<Event> {
    let mut events = vec![
        kubelet(0, Body::TcpConnect(tcp(SK, 45000, 8080, 2, 2))),
        softirq(1, Body::TcpState(tcp(SK, 45000, 8080, 2, 1))),
    ];
    for t in [2, 200, 400] {
        events.push(dropped(t, true, 45000, reason, TCP_V4_RCV + 0x300, POD_NS, "eth0"));
    }
    for t in [300, 500, 700, 900].into_iter().filter(|_| reason.is_some()) {
        events.push(dropped(t, false, 45000, Some(46), TCP_VALIDATE_INCOMING, HOST_NS, "veth-ptph"));
    }
    events.push(softirq(1001, Body::TcpClosed(close(TCP_FIN_WAIT1, 96, 96, 0, 0))));
    events
}

#[test]
fn a_handshake_turned_away_by_a_full_accept_queue_names_the_overflow() {
    let node = StaticNetwork { listen_queues: vec![listen_queue(2, false, 9)], ..dropping_node() };
    let mut c = correlator(with_drops(following()), node.clone());
    let v = only_verdict(&run(&mut c, &overflowed_handshake(Some(40)))).clone();
    assert_eq!(v.kind, "probe_no_response");
    assert_eq!((&v.to_json()["drops"][0]["reason"], &v.to_json()["drops"][0]["count"]), (&"TCP_LISTEN_OVERFLOW".into(), &3.into()));
    assert_eq!(v.to_json()["drops"][1]["reason"], "TCP_INVALID_SYN");
    let m = &v.message;
    assert!(m.contains("the request was dropped (3 times) by the kernel (TCP_LISTEN_OVERFLOW in tcp_v4_rcv) on eth0 in the pod's network namespace"), "{m}");
    assert!(m.contains("the application's listen queue is full") && m.contains("has a full accept queue: 2 connections"), "{m}");

    // 6.1: no such reason yet (NOT_SPECIFIED); the echo of the SYN-ACK
    // retransmits leads, and the pod's counters say why.
    let mut c = correlator(with_drops(following()), node.clone());
    let m = only_verdict(&run(&mut c, &overflowed_handshake(Some(2)))).message.clone();
    assert!(m.contains("so the pod never got the handshake's last ACK"), "{m}");
    assert!(m.contains("has a full accept queue") && m.contains("has counted 9 listen queue overflows"), "{m}");

    // 5.10: the place alone, and the pod's counters.
    let mut c = correlator(with_drops(following()), node);
    let m = only_verdict(&run(&mut c, &overflowed_handshake(None))).message.clone();
    assert!(m.contains("the request was dropped (3 times) by the kernel (in tcp_v4_rcv; this kernel gives no reason)"), "{m}");
    assert!(m.contains("has a full accept queue") && m.contains("has counted 9 listen queue overflows"), "{m}");
}

/// Issue item 5: IPVS took the SYN-ACK; the pod's TCP then frees each
/// retransmitted SYN (it answered already). That is no drop to report:
/// the diversion is the one verdict, and no report carries drops.
#[test]
fn a_diverted_probe_is_never_also_reported_as_dropped() {
    let echoes = [
        dropped(1000, true, 31055, Some(2), TCP_V4_RCV, POD_NS, "eth0"),
        dropped(1001, false, 31055, Some(16), IP_RCV_FINISH_CORE, HOST_NS, "veth-ptph"),
    ];
    let with_echoes = |mut events: Vec<Event>| {
        let close = events.pop().unwrap();
        events.extend(echoes.iter().cloned());
        events.push(close);
        events
    };
    let no_drops = |reports: &[Report]| {
        for r in reports {
            let json = r.to_json();
            let d = json.get("drops");
            assert!(d.is_none() || d == Some(&serde_json::json!([])), "{r:#?}");
            assert!(!r.message.contains("dropped"), "{}", r.message);
        }
    };
    // Observed through the IPVS hook.
    let mut c = correlator(with_drops(ProbeSettings::default()), dropping_node());
    let reports = run(&mut c, &with_echoes(hijacked_probe()));
    assert_eq!(only_verdict(&reports).kind, "synack_diverted");
    no_drops(&reports);

    // Inferred from the IPVS table.
    let settings = with_drops(ProbeSettings { ipvs_observed: false, ..Default::default() });
    let mut c = correlator(settings, StaticNetwork { services: vec![ipvs_service()], ..dropping_node() });
    let mut events = with_echoes(hijacked_probe());
    events.remove(1);
    let reports = run(&mut c, &events);
    assert_eq!(only_verdict(&reports).to_json()["evidence"], "inferred");
    no_drops(&reports);

    // Diverted, and then connected after all (a later SYN-ACK got
    // through) and unanswered: still no drops on its second verdict.
    let mut c = correlator(with_drops(following()), dropping_node());
    let mut events = hijacked_probe();
    events.pop();
    events.extend(echoes.iter().cloned());
    events.push(softirq(1500, Body::TcpState(tcp(SK, 31055, 8080, 2, 1))));
    let mut cl = close(TCP_FIN_WAIT1, 96, 96, 0, 0);
    cl.info = tcp(SK, 31055, 8080, 1, TCP_FIN_WAIT1);
    events.push(softirq(2500, Body::TcpClosed(cl)));
    let reports = run(&mut c, &events);
    assert_eq!(verdicts(&reports)[0].kind, "synack_diverted");
    no_drops(&reports);
}

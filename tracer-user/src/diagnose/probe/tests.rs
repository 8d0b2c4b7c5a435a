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

#[test]
fn a_healthy_probe_sent_as_one_record_is_an_established_attempt() {
    // The kernel sends a healthy probe's connect and ESTABLISHED together.
    let mut c = correlator(ProbeSettings::default(), StaticNode::default());
    let events = crate::events::decode(&crate::events::tests::connected_record(SK, 5 * MS, 8 * MS)).unwrap();
    let reports = run(&mut c, &events);
    assert!(verdicts(&reports).is_empty(), "{reports:#?}");
    assert_eq!(reports.len(), 1, "{reports:#?}");
    assert_eq!(reports[0].field_str("outcome"), Some("established"));
    assert_eq!(reports[0].comm, "kubelet");
    assert_eq!(reports[0].fields.get("elapsed_ms"), Some(&serde_json::json!(3)));
    assert_eq!(c.in_flight(), 0);
    assert_eq!(c.destinations()[&(ip("10.200.1.2"), 8080)].established, 1);
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
    let node = StaticNode { services: vec![ipvs_service()], reserved: PortRanges::default() };
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
    let node = StaticNode { reserved: PortRanges::parse("31055").unwrap(), services: vec![] };
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
    let mut c = correlator(ProbeSettings { attempt_records: false, ..Default::default() }, StaticNode::default());
    let pod = (ip("10.200.1.2"), 8080);
    let other = (ip("10.200.1.3"), 8081);
    // One success came through the ring buffer (the count was full, or the
    // setting was not yet set), then the kernel counted the rest.
    run(&mut c, &crate::events::decode(&crate::events::tests::connected_record(SK, 5 * MS, 8 * MS)).unwrap());
    assert_eq!(c.kernel_established(&[(pod, 3)]), 3);
    // Counts are cumulative: a second read adds only the difference.
    assert_eq!(c.kernel_established(&[(pod, 5), (other, 2)]), 4);
    assert_eq!(c.kernel_established(&[(pod, 5), (other, 2)]), 0);
    assert_eq!(c.destinations()[&pod].established, 6);
    assert_eq!(c.destinations()[&other].established, 2);
    assert_eq!(c.in_flight(), 0);
}

//! The alert rules (deploy/prometheus/) and the Grafana dashboard
//! (deploy/grafana/): promtool accepts and tests the rules, the two rule
//! files agree, the dashboard parses and has the panels people look for,
//! and every name they use is one the daemon's metrics code serves. (The
//! daemon e2e test checks the same names against a running daemon.)

use std::{fs, path::PathBuf, process::Command};

use tests::monitoring::{dashboard_usage, rule_test_series, rules_usage, served, unserved, yaml_documents};
use tracer_user::{
    diagnose::Report,
    events::{Body, Event},
    loader::{Group, HookStatus, KernelCounters, Mode},
    metrics::Metrics,
};

fn path(p: &str) -> PathBuf {
    tests::root().join(p)
}

/// promtool is in Debian's prometheus package, which `cargo xtask setup`
/// installs: a machine without it fails here rather than skip the check.
fn promtool(args: &[&str]) -> String {
    let out = Command::new("promtool")
        .args(args)
        .current_dir(path("deploy/prometheus"))
        .output()
        .expect("promtool (apt-get install prometheus; cargo xtask setup installs it)");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "promtool {args:?} failed:\n{text}");
    text
}

#[test]
fn promtool_accepts_the_rules() {
    let out = promtool(&["check", "rules", "probe-tracer.rules.yaml"]);
    assert!(out.contains("SUCCESS"), "{out}");
}

#[test]
fn promtool_unit_tests_of_the_rules_pass() {
    let out = promtool(&["test", "rules", "probe-tracer.rules.test.yaml"]);
    assert!(out.contains("SUCCESS"), "{out}");
}

#[test]
fn every_alert_has_a_severity_summary_and_description_and_a_test() {
    let rules = &yaml_documents(&path("deploy/prometheus/probe-tracer.rules.yaml"))[0];
    let tests_text = fs::read_to_string(path("deploy/prometheus/probe-tracer.rules.test.yaml")).unwrap();
    let mut names = Vec::new();
    for group in rules["groups"].as_array().unwrap() {
        for rule in group["rules"].as_array().unwrap() {
            let name = rule["alert"].as_str().expect("alerting rules only");
            assert!(["warning", "info", "critical"].contains(&rule["labels"]["severity"].as_str().unwrap_or("")), "{name}: severity");
            assert!(rule["annotations"]["summary"].as_str().is_some_and(|s| s.len() > 20), "{name}: summary");
            let description = rule["annotations"]["description"].as_str().unwrap_or("");
            assert!(description.contains("Check") || description.contains("check"), "{name}: the description says what to check");
            assert!(tests_text.contains(&format!("alertname: {name}\n")), "{name} has no promtool test");
            names.push(name.to_string());
        }
    }
    // What issue 29 asked the rules to cover.
    for want in ["ProbeTracerSynAckDiverted", "ProbeTracerExecProbeFailing", "ProbeTracerRuntimeSlow", "ProbeTracerOOMKill", "ProbeTracerEventsLost", "ProbeTracerTrackingMapFull", "ProbeTracerDown", "ProbeTracerHookNotAttached"] {
        assert!(names.iter().any(|n| n == want), "no {want} in {names:?}");
    }
}

#[test]
fn the_prometheus_rule_has_the_same_groups_as_the_plain_rules_file() {
    let plain = &yaml_documents(&path("deploy/prometheus/probe-tracer.rules.yaml"))[0];
    let operator = &yaml_documents(&path("deploy/prometheus/prometheusrule.yaml"))[0];
    assert_eq!(operator["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(operator["kind"], "PrometheusRule");
    assert_eq!(operator["metadata"]["namespace"], "probe-tracer");
    assert_eq!(operator["spec"]["groups"], plain["groups"], "edit both files alike");
}

fn dashboard() -> serde_json::Value {
    let text = fs::read_to_string(path("deploy/grafana/probe-tracer.json")).unwrap();
    serde_json::from_str(&text).expect("deploy/grafana/probe-tracer.json is not JSON")
}

#[test]
fn the_dashboard_parses_and_has_the_panels_issue_29_lists() {
    let d = dashboard();
    assert_eq!(d["uid"], "probe-tracer");
    assert!(d["schemaVersion"].as_u64().unwrap() >= 36);
    let panels = d["panels"].as_array().unwrap();
    let mut ids = std::collections::BTreeSet::new();
    for p in panels {
        assert!(ids.insert(p["id"].as_u64().unwrap()), "duplicate panel id {}", p["id"]);
        let g = &p["gridPos"];
        assert!(g["w"].as_u64().unwrap() + g["x"].as_u64().unwrap() <= 24, "{}: wider than the grid", p["title"]);
        for t in p["targets"].as_array().into_iter().flatten() {
            assert_eq!(t["datasource"]["uid"], "${datasource}", "{}: uses the datasource variable", p["title"]);
        }
    }
    let with = |kind: &str, metric: &str| {
        panels.iter().any(|p| {
            p["type"] == kind && p["targets"].as_array().into_iter().flatten().any(|t| t["expr"].as_str().unwrap_or("").contains(metric))
        })
    };
    assert!(with("timeseries", "probe_tracer_probe_connections_total"), "probe outcomes over time");
    assert!(with("timeseries", "probe_tracer_verdicts_total"), "verdicts by kind and reason");
    assert!(with("heatmap", "probe_tracer_runtime_call_duration_seconds_bucket"), "runtime latency heatmap");
    assert!(with("timeseries", "probe_tracer_lost_events_total"), "lost events");
    assert!(with("timeseries", "probe_tracer_ringbuf_fill_ratio"), "ring buffer fill");
    assert!(with("table", "probe_tracer_hook_attached"), "hook modes per node");
    let heatmap = panels.iter().find(|p| p["type"] == "heatmap").unwrap();
    assert_eq!(heatmap["repeat"], "subcommand", "one heatmap per subcommand");
    assert_eq!(heatmap["targets"][0]["format"], "heatmap");
}

/// The metrics code, fed one of everything, as the daemon would serve it.
fn metrics_page() -> String {
    let m = Metrics::new();
    let ev = Event { ts_ns: 1, pid: 1, tid: 1, comm: "runc".into(), cgroup_id: 0, mode: Mode::Tracepoint, body: Body::Fork { child_tid: 2 } };
    m.report(&Report::new("fork_failed", &ev).with("errno_name", "EAGAIN"));
    m.report(&Report::new("tcp_attempt", &ev).with("outcome", "refused"));
    m.established(3);
    m.hooks(&[HookStatus { hook: "tcp_state", group: Group::Probe, mode: Some(Mode::RawTracepoint), target: Some("inet_sock_set_state".into()), tried: vec![], limitation: None }]);
    m.kernel(&KernelCounters { ringbuf_full: 1, map_full: 1, ringbuf_high_water: 0, missed_runs: Some(1), map_evictions: Some(1) }, 0.1);
    m.runtime_call("exec", 2_000_000);
    m.kubernetes_event("posted");
    m.events(1);
    m.encode()
}

#[test]
fn the_rules_tests_and_dashboard_use_only_names_the_metrics_code_serves() {
    let page = served(&metrics_page());
    let mut uses = rules_usage(&path("deploy/prometheus/probe-tracer.rules.yaml"));
    uses.extend(rule_test_series(&path("deploy/prometheus/probe-tracer.rules.test.yaml")));
    uses.extend(dashboard_usage(&dashboard()));
    assert!(uses.len() > 30, "{uses:?}");
    let problems = unserved(&uses, &page);
    assert!(problems.is_empty(), "{}\nserved: {page:?}", problems.join("\n"));
}

//! The metric and label names that the alert rules (deploy/prometheus/),
//! their promtool tests and the Grafana dashboard (deploy/grafana/) use,
//! to check against what a daemon's /metrics really serves.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::Path,
    process::Command,
};

use serde_json::Value;

/// Series Prometheus adds itself when it scrapes.
pub const SCRAPE_SERIES: &[&str] = &["up"];
/// Labels Prometheus adds to every scraped series.
pub const SCRAPE_LABELS: &[&str] = &["instance", "job"];

/// The names one expression (or series, or legend) uses.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Used {
    /// Where it comes from, for messages.
    pub source: String,
    pub metrics: BTreeSet<String>,
    pub labels: BTreeSet<String>,
}

/// Every YAML document of a file, parsed by Ruby's YAML library (Psych, in
/// Debian's ruby package), as JSON.
pub fn yaml_documents(path: &Path) -> Vec<Value> {
    let out = Command::new("ruby")
        .args(["-ryaml", "-rjson", "-e", "puts JSON.generate(YAML.load_stream(File.read(ARGV[0])).compact)"])
        .arg(path)
        .output()
        .expect("ruby (cargo xtask setup installs it)");
    assert!(out.status.success(), "{} does not parse: {}", path.display(), String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Ident(String),
    Punct(String),
    Str,
}

fn tokens(expr: &str) -> Vec<Token> {
    let chars: Vec<char> = expr.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '"' || c == '\'' || c == '`' {
            i += 1;
            while i < chars.len() && chars[i] != c {
                i += if chars[i] == '\\' { 2 } else { 1 };
            }
            i += 1;
            out.push(Token::Str);
        } else if c.is_ascii_alphabetic() || c == '_' || c == ':' || c == '$' {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || matches!(chars[i], '_' | ':' | '$')) {
                i += 1;
            }
            out.push(Token::Ident(chars[start..i].iter().collect()));
        } else if c.is_whitespace() {
            i += 1;
        } else {
            let two: String = chars[i..(i + 2).min(chars.len())].iter().collect();
            if ["=~", "!~", "!=", "==", ">=", "<="].contains(&two.as_str()) {
                out.push(Token::Punct(two));
                i += 2;
            } else {
                out.push(Token::Punct(c.to_string()));
                i += 1;
            }
        }
    }
    out
}

/// The metric and label names a PromQL expression (or a Grafana
/// `label_values(metric, label)` query) refers to.
pub fn promql_names(source: &str, expr: &str) -> Used {
    let t = tokens(expr);
    let mut used = Used { source: source.to_string(), ..Default::default() };
    let ident = |i: usize| match t.get(i) {
        Some(Token::Ident(s)) => Some(s.as_str()),
        _ => None,
    };
    let punct = |i: usize, p: &str| matches!(t.get(i), Some(Token::Punct(q)) if q == p);
    let mut in_braces = false;
    let mut i = 0;
    while i < t.len() {
        match &t[i] {
            Token::Punct(p) if p == "{" => in_braces = true,
            Token::Punct(p) if p == "}" => in_braces = false,
            Token::Ident(name) if in_braces && ["=", "=~", "!=", "!~"].iter().any(|op| punct(i + 1, op)) => {
                used.labels.insert(name.clone());
            }
            Token::Ident(_) if in_braces => {}
            Token::Ident(kw) if ["by", "without", "on", "ignoring", "group_left", "group_right"].contains(&kw.as_str()) && punct(i + 1, "(") => {
                i += 2;
                while i < t.len() && !punct(i, ")") {
                    if let Some(l) = ident(i) {
                        used.labels.insert(l.to_string());
                    }
                    i += 1;
                }
            }
            Token::Ident(f) if f == "label_values" && punct(i + 1, "(") => {
                // label_values(metric{...}, label): the label is the last argument.
                let close = (i..t.len()).find(|&j| punct(j, ")")).unwrap_or(t.len());
                if close >= 2
                    && punct(close - 2, ",")
                    && let Some(l) = ident(close - 1)
                {
                    used.labels.insert(l.to_string());
                }
            }
            Token::Ident(name) if !punct(i + 1, "(") && (name.starts_with("probe_tracer_") || SCRAPE_SERIES.contains(&name.as_str())) => {
                used.metrics.insert(name.clone());
            }
            _ => {}
        }
        i += 1;
    }
    used
}

/// What the alert rules use: each rule's expression, and the labels its
/// annotations print.
pub fn rules_usage(rules_file: &Path) -> Vec<Used> {
    let docs = yaml_documents(rules_file);
    let mut out = Vec::new();
    for group in docs[0]["groups"].as_array().expect("groups") {
        for rule in group["rules"].as_array().expect("rules") {
            let name = rule["alert"].as_str().or(rule["record"].as_str()).unwrap_or("?");
            let mut used = promql_names(&format!("rule {name}"), rule["expr"].as_str().expect("expr"));
            for text in rule["annotations"].as_object().into_iter().flat_map(|a| a.values()).filter_map(Value::as_str) {
                let mut rest = text;
                while let Some(at) = rest.find("$labels.") {
                    rest = &rest[at + "$labels.".len()..];
                    let l: String = rest.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
                    used.labels.insert(l);
                }
            }
            out.push(used);
        }
    }
    out
}

/// The input series of a `promtool test rules` file, e.g.
/// `probe_tracer_verdicts_total{instance="node-1",kind="oom_kill"}`.
pub fn rule_test_series(test_file: &Path) -> Vec<Used> {
    let docs = yaml_documents(test_file);
    let mut out = Vec::new();
    for test in docs[0]["tests"].as_array().expect("tests") {
        for s in test["input_series"].as_array().into_iter().flatten() {
            let series = s["series"].as_str().expect("series");
            let (name, labels) = series.split_once('{').unwrap_or((series, "}"));
            let mut used = Used { source: format!("test series {series}"), ..Default::default() };
            used.metrics.insert(name.trim().to_string());
            for pair in labels.trim_end_matches('}').split(',').filter(|p| !p.trim().is_empty()) {
                used.labels.insert(pair.split_once('=').expect("label=value").0.trim().to_string());
            }
            out.push(used);
        }
    }
    out
}

/// Every query of the dashboard: panel targets (with the labels their
/// legends print and their transformations use) and template variables.
pub fn dashboard_usage(dashboard: &Value) -> Vec<Used> {
    let mut out = Vec::new();
    let mut panels: Vec<&Value> = dashboard["panels"].as_array().expect("panels").iter().collect();
    let nested: Vec<&Value> = panels.iter().flat_map(|p| p["panels"].as_array().into_iter().flatten()).collect();
    panels.extend(nested);
    for p in panels {
        let title = p["title"].as_str().unwrap_or("?");
        for t in p["targets"].as_array().into_iter().flatten() {
            let mut used = promql_names(&format!("panel {title:?}"), t["expr"].as_str().expect("a target without expr"));
            if let Some(legend) = t["legendFormat"].as_str() {
                used.labels.extend(legend_labels(legend));
            }
            for tr in p["transformations"].as_array().into_iter().flatten() {
                for key in ["columnField", "rowField", "valueField"] {
                    if let Some(f) = tr["options"][key].as_str() {
                        used.labels.insert(f.to_string());
                    }
                }
            }
            out.push(used);
        }
    }
    for v in dashboard["templating"]["list"].as_array().into_iter().flatten() {
        if v["type"] == "query" {
            let q = v["query"]["query"].as_str().or(v["query"].as_str()).expect("a query variable without query");
            out.push(promql_names(&format!("variable ${}", v["name"].as_str().unwrap_or("?")), q));
        }
    }
    out
}

/// `{{instance}} {{outcome}}` -> instance, outcome.
pub fn legend_labels(legend: &str) -> BTreeSet<String> {
    let mut labels = BTreeSet::new();
    let mut rest = legend;
    while let Some(at) = rest.find("{{") {
        rest = &rest[at + 2..];
        let end = rest.find("}}").unwrap_or(rest.len());
        labels.insert(rest[..end].trim().to_string());
        rest = &rest[end..];
    }
    labels
}

/// Sample names of a /metrics page (Prometheus or OpenMetrics text) and
/// the label names each carries.
pub fn served(metrics_text: &str) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in metrics_text.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()) {
        let name_end = line.find(['{', ' ']).unwrap_or(line.len());
        let labels = out.entry(line[..name_end].to_string()).or_default();
        if line[name_end..].starts_with('{') {
            let body = &line[name_end + 1..line.rfind('}').expect("closing brace")];
            for t in tokens(body).windows(2) {
                if let [Token::Ident(l), Token::Punct(p)] = t
                    && p == "="
                {
                    labels.insert(l.clone());
                }
            }
        }
    }
    out
}

/// What the uses need that the page does not serve, one sentence each.
pub fn unserved(uses: &[Used], served: &BTreeMap<String, BTreeSet<String>>) -> Vec<String> {
    let mut problems = Vec::new();
    for u in uses {
        let mut labels: BTreeSet<String> = SCRAPE_LABELS.iter().map(|l| l.to_string()).collect();
        for m in &u.metrics {
            match served.get(m) {
                Some(l) => labels.extend(l.iter().cloned()),
                None if SCRAPE_SERIES.contains(&m.as_str()) => {}
                None => problems.push(format!("{}: metric {m} is not served", u.source)),
            }
        }
        for l in u.labels.difference(&labels) {
            problems.push(format!("{}: label {l} is on none of {:?}", u.source, u.metrics));
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn promql_names_finds_metrics_matchers_groupings_and_label_values() {
        let u = promql_names(
            "t",
            r#"histogram_quantile(0.99, sum by (instance, subcommand, le) (rate(probe_tracer_runtime_call_duration_seconds_bucket{instance=~"$instance", kind!="x=y"}[$__rate_interval]))) > 1"#,
        );
        assert_eq!(u.metrics, BTreeSet::from(["probe_tracer_runtime_call_duration_seconds_bucket".to_string()]));
        assert_eq!(u.labels, ["instance", "kind", "le", "subcommand"].map(String::from).into());
        let v = promql_names("v", "label_values(probe_tracer_hook_attached, instance)");
        assert_eq!(v.labels, BTreeSet::from(["instance".to_string()]));
        assert_eq!(v.metrics, BTreeSet::from(["probe_tracer_hook_attached".to_string()]));
        let up = promql_names("u", r#"up{job="probe-tracer"} == 0"#);
        assert_eq!(up.metrics, BTreeSet::from(["up".to_string()]));
    }

    #[test]
    fn served_reads_names_and_labels() {
        let text = "# TYPE probe_tracer_verdicts counter\nprobe_tracer_verdicts_total{kind=\"fork_failed\",reason=\"EAGAIN\"} 1\nprobe_tracer_events_total 5\n# EOF\n";
        let s = served(text);
        assert_eq!(s["probe_tracer_verdicts_total"], ["kind", "reason"].map(String::from).into());
        assert!(s["probe_tracer_events_total"].is_empty());
        let bad = promql_names("x", r#"sum by (node) (probe_tracer_verdicts_total{kind="a"}) + probe_tracer_nope"#);
        let problems = unserved(&[bad], &s);
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert_eq!(legend_labels("{{instance}} {{ outcome }}"), ["instance", "outcome"].map(String::from).into());
    }
}

//! Checks of files that cannot run here: the Vagrantfile (Vagrant does not
//! run on CI's machines), the syntax of every scenario script, and the
//! deploy manifests, kustomize components and kubectl plugin.

use std::{fs, path::Path, process::Command};

#[test]
fn vagrantfile_is_valid_ruby() {
    let vagrantfile = tests::root().join("vagrant/Vagrantfile");
    let out = Command::new("ruby").arg("-c").arg(&vagrantfile).output().expect("ruby (cargo xtask setup installs it)");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

fn shell_scripts(dir: &Path, found: &mut Vec<std::path::PathBuf>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            shell_scripts(&path, found);
        } else if path.extension().is_some_and(|e| e == "sh") || path.file_name().is_some_and(|n| n == "probe-tracer-scenario") {
            found.push(path);
        }
    }
}

#[test]
fn scenario_and_vagrant_scripts_parse() {
    let mut scripts = Vec::new();
    shell_scripts(&tests::root().join("tests/scenarios"), &mut scripts);
    shell_scripts(&tests::root().join("vagrant"), &mut scripts);
    assert!(scripts.len() >= 8, "{scripts:?}");
    for s in scripts {
        let out = Command::new("bash").arg("-n").arg(&s).output().unwrap();
        assert!(out.status.success(), "{}: {}", s.display(), String::from_utf8_lossy(&out.stderr));
    }
}

#[test]
fn every_scenario_has_setup_trigger_teardown_and_demo() {
    for entry in fs::read_dir(tests::root().join("tests/scenarios")).unwrap() {
        let dir = entry.unwrap().path();
        if dir.file_name().is_some_and(|n| n == "lib") {
            continue;
        }
        for script in ["setup.sh", "trigger.sh", "teardown.sh", "demo.sh"] {
            assert!(dir.join(script).exists(), "{} lacks {script}", dir.display());
        }
    }
}

/// The deploy manifests as JSON values, parsed by Ruby's YAML library (Psych,
/// in Debian's ruby package) so a syntax or indentation error fails here.
fn manifests() -> Vec<serde_json::Value> {
    yaml_documents("deploy/probe-tracer.yaml")
}

/// Every YAML document of a file, parsed by Ruby's YAML library, as JSON.
fn yaml_documents(path: &str) -> Vec<serde_json::Value> {
    let file = tests::root().join(path);
    let out = Command::new("ruby")
        .args(["-ryaml", "-rjson", "-e", "puts JSON.generate(YAML.load_stream(File.read(ARGV[0])).compact)"])
        .arg(&file)
        .output()
        .expect("ruby");
    assert!(out.status.success(), "{} does not parse: {}", file.display(), String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice::<Vec<serde_json::Value>>(&out.stdout).unwrap()
}

fn find<'a>(docs: &'a [serde_json::Value], kind: &str) -> &'a serde_json::Value {
    docs.iter().find(|d| d["kind"] == kind).unwrap_or_else(|| panic!("no {kind} in deploy/probe-tracer.yaml"))
}

#[test]
fn daemonset_manifest_is_least_privilege_and_probed() {
    let docs = manifests();
    for d in &docs {
        assert!(d["apiVersion"].is_string() && d["kind"].is_string() && d["metadata"]["name"].is_string(), "{d}");
    }
    let ds = find(&docs, "DaemonSet");
    assert_eq!(ds["apiVersion"], "apps/v1");
    let pod = &ds["spec"]["template"]["spec"];
    assert_eq!(ds["spec"]["selector"]["matchLabels"], ds["spec"]["template"]["metadata"]["labels"]);
    assert_eq!(pod["hostPID"], true);
    assert_eq!(pod["hostNetwork"], true);
    let c = &pod["containers"][0];
    assert_eq!(c["args"][0], "daemon");
    let sc = &c["securityContext"];
    assert_eq!(sc["privileged"], false);
    assert_eq!(sc["capabilities"]["drop"][0], "ALL");
    let caps: Vec<&str> = sc["capabilities"]["add"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    assert!(caps.contains(&"BPF") && caps.contains(&"PERFMON"), "{caps:?}");
    assert!(!caps.contains(&"SYS_ADMIN"), "SYS_ADMIN is not needed for tracepoints");
    for probe in ["readinessProbe", "livenessProbe"] {
        assert_eq!(c[probe]["httpGet"]["path"], "/healthz", "{probe}");
        assert_eq!(c[probe]["httpGet"]["port"], "metrics", "{probe}");
    }
    // The port the probes and the ServiceMonitor use is the one the daemon serves.
    assert_eq!(c["ports"][0]["name"], "metrics");
    assert_eq!(c["ports"][0]["containerPort"], 9464);
    for r in ["requests", "limits"] {
        assert!(c["resources"][r]["cpu"].is_string() && c["resources"][r]["memory"].is_string(), "{r}");
    }
    // Every volume mount has a volume.
    let volumes: Vec<&str> = pod["volumes"].as_array().unwrap().iter().map(|v| v["name"].as_str().unwrap()).collect();
    for m in c["volumeMounts"].as_array().unwrap() {
        assert!(volumes.contains(&m["name"].as_str().unwrap()), "{m}");
    }
    // Every host path is mounted read-only, and nothing mounts the whole of
    // /run (the container runtime's socket is there) or the host's root.
    for m in c["volumeMounts"].as_array().unwrap() {
        assert_eq!(m["readOnly"], true, "{m}");
        let path = m["mountPath"].as_str().unwrap();
        assert!(!["/", "/run", "/var/run", "/host"].contains(&path), "{m}");
    }
    for v in pod["volumes"].as_array().unwrap() {
        if let Some(path) = v["hostPath"]["path"].as_str() {
            assert!(!["/", "/run", "/var/run", "/var", "/proc", "/run/containerd", "/var/run/containerd"].contains(&path), "{v}");
            assert!(!path.ends_with(".sock"), "a runtime socket is mounted: {v}");
        }
    }
    // Syscalls filtered by the runtime's default profile; no escalation.
    assert_eq!(sc["seccompProfile"]["type"], "RuntimeDefault", "{sc}");
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    // /metrics binds the node's own address from the downward API, not 0.0.0.0.
    let args: Vec<&str> = c["args"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    assert!(!args.iter().any(|a| a.contains("0.0.0.0") || a.contains("[::]")), "{args:?}");
    let env = c["env"].as_array().unwrap();
    assert!(env.iter().any(|e| e["name"] == "NODE_IP" && e["valueFrom"]["fieldRef"]["fieldPath"] == "status.hostIP"), "{env:?}");
    let sa = find(&docs, "ServiceAccount");
    assert_eq!(pod["serviceAccountName"], sa["metadata"]["name"]);
    // RBAC: read-only on pods and services; core Events may only be
    // created, in a rule of their own; nothing else, no wildcards.
    let rules = find(&docs, "ClusterRole")["rules"].as_array().unwrap();
    let strings = |v: &serde_json::Value| -> Vec<String> { v.as_array().unwrap().iter().map(|s| s.as_str().unwrap().to_string()).collect() };
    let mut event_rules = 0;
    for rule in rules {
        let resources = strings(&rule["resources"]);
        let verbs = strings(&rule["verbs"]);
        assert_eq!(strings(&rule["apiGroups"]), [""], "core API group only: {rule}");
        assert!(!resources.iter().chain(&verbs).any(|s| s.contains('*')), "{rule}");
        assert!(rule.get("nonResourceURLs").is_none(), "{rule}");
        if resources.iter().any(|r| r == "events") {
            event_rules += 1;
            assert_eq!(resources, ["events"], "events in a rule of their own: {rule}");
            assert_eq!(verbs, ["create"], "{rule}");
        } else {
            for r in &resources {
                assert!(["pods", "services"].contains(&r.as_str()), "{rule}");
            }
            for v in &verbs {
                assert!(["get", "list", "watch"].contains(&v.as_str()), "{rule}");
            }
        }
    }
    assert!(event_rules <= 1, "{rules:?}");
    // The pod list is filtered by the node's name, which the downward API gives.
    let env = c["env"].as_array().unwrap();
    assert!(env.iter().any(|e| e["name"] == "NODE_NAME" && e["valueFrom"]["fieldRef"]["fieldPath"] == "spec.nodeName"), "{env:?}");
    // The base needs no CRD: the Prometheus Operator's kinds are components.
    for d in &docs {
        assert!(!d["apiVersion"].as_str().unwrap().starts_with("monitoring.coreos.com/"), "{} belongs in deploy/components/", d["kind"]);
    }
}

/// The optional components: a ServiceMonitor scraping the Service's port
/// with the node's name as `instance` (what the rules and dashboard show),
/// and the PrometheusRule.
#[test]
fn operator_components_add_a_service_monitor_and_the_prometheus_rule() {
    let service = find(&manifests(), "Service").clone();
    let component = &yaml_documents("deploy/components/servicemonitor/kustomization.yaml")[0];
    assert_eq!(component["kind"], "Component");
    assert_eq!(component["apiVersion"], "kustomize.config.k8s.io/v1alpha1");
    assert_eq!(component["resources"], serde_json::json!(["servicemonitor.yaml"]));
    let sm = &yaml_documents("deploy/components/servicemonitor/servicemonitor.yaml")[0];
    assert_eq!(sm["kind"], "ServiceMonitor");
    assert_eq!(sm["metadata"]["namespace"], service["metadata"]["namespace"]);
    let endpoint = &sm["spec"]["endpoints"][0];
    assert_eq!(endpoint["port"], service["spec"]["ports"][0]["name"]);
    assert_eq!(sm["spec"]["selector"]["matchLabels"], service["metadata"]["labels"]);
    let relabel = &endpoint["relabelings"][0];
    assert_eq!((relabel["sourceLabels"][0].as_str(), relabel["targetLabel"].as_str()), (Some("__meta_kubernetes_pod_node_name"), Some("instance")));

    let rules = &yaml_documents("deploy/components/prometheusrule/kustomization.yaml")[0];
    assert_eq!(rules["kind"], "Component");
    assert_eq!(rules["resources"], serde_json::json!(["../../prometheus"]));
    let inner = &yaml_documents("deploy/prometheus/kustomization.yaml")[0];
    assert_eq!(inner["resources"], serde_json::json!(["prometheusrule.yaml"]));
    assert_eq!(yaml_documents("deploy/prometheus/prometheusrule.yaml")[0]["kind"], "PrometheusRule");
}

/// `kubectl probe-tracer NODE ...` runs `kubectl debug node/NODE` with the
/// sysadmin profile and the DaemonSet's image, passes the arguments to
/// `probe-tracer run` (or `check`), and deletes the debug pod afterwards.
/// Run against a stand-in kubectl that records its arguments.
#[test]
fn kubectl_plugin_runs_the_image_on_the_node_and_cleans_up() {
    let plugin = tests::root().join("deploy/kubectl-probe_tracer");
    let out = Command::new("bash").arg("-n").arg(&plugin).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = fs::read_to_string(&plugin).unwrap();
    let image = find(&manifests(), "DaemonSet")["spec"]["template"]["spec"]["containers"][0]["image"].as_str().unwrap().to_string();
    assert!(text.contains(&format!("image=${{PROBE_TRACER_IMAGE:-{image}}}")), "the plugin's default image is the DaemonSet's ({image})");

    let dir = std::env::temp_dir().join(format!("probe-tracer-plugin-{}", std::process::id()));
    fs::create_dir_all(&dir).unwrap();
    let log = dir.join("calls");
    let fake = dir.join("kubectl");
    fs::write(
        &fake,
        format!(
            "#!/bin/sh\nprintf '%s\\n' \"$*\" >> {log}\ncase \"$*\" in *debug*) echo 'Creating debugging pod node-debugger-n1-abcde with container debugger on node n1.' >&2; exit 7;; esac\n",
            log = log.display()
        ),
    )
    .unwrap();
    fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let path = format!("{}:{}", dir.display(), std::env::var("PATH").unwrap());
    let status = Command::new(&plugin).args(["n1", "--duration", "30", "--format", "json"]).env("PATH", &path).status().unwrap();
    assert_eq!(status.code(), Some(7), "the plugin exits with kubectl debug's status");
    let calls = fs::read_to_string(&log).unwrap();
    let lines: Vec<&str> = calls.lines().collect();
    assert_eq!(lines.len(), 2, "{calls}");
    assert!(lines[0].starts_with(&format!("debug node/n1 --profile=sysadmin --image={image} --attach -- sh -c ")), "{calls}");
    assert!(lines[0].contains("mount --rbind /host/run /run") && lines[0].contains("exec probe-tracer \"$@\""), "{calls}");
    assert!(lines[0].ends_with(" probe-tracer run --duration 30 --format json"), "{calls}");
    assert_eq!(lines[1], "delete pod node-debugger-n1-abcde --wait=false");
    // `check` instead of `run`.
    fs::remove_file(&log).unwrap();
    Command::new(&plugin).args(["n1", "check"]).env("PATH", &path).status().unwrap();
    assert!(fs::read_to_string(&log).unwrap().lines().next().unwrap().ends_with(" probe-tracer check"));
    fs::remove_dir_all(&dir).unwrap();
}

/// The kustomize base lists files that exist and retags the image the
/// DaemonSet actually uses.
#[test]
fn kustomize_base_points_at_the_manifests() {
    let k = &yaml_documents("deploy/kustomization.yaml")[0];
    assert_eq!(k["kind"], "Kustomization");
    for r in k["resources"].as_array().unwrap() {
        assert!(tests::root().join("deploy").join(r.as_str().unwrap()).exists(), "{r}");
    }
    let image = find(&manifests(), "DaemonSet")["spec"]["template"]["spec"]["containers"][0]["image"].as_str().unwrap().to_string();
    let name = image.rsplit_once(':').map_or(image.as_str(), |(n, _)| n);
    assert_eq!(k["images"][0]["name"], name);
}

#[test]
fn dockerfile_ships_the_built_binary() {
    let text = fs::read_to_string(tests::root().join("deploy/Dockerfile")).unwrap();
    assert!(text.contains("COPY target/release/probe-tracer /usr/local/bin/probe-tracer"), "{text}");
    assert!(text.lines().any(|l| l.starts_with("ENTRYPOINT")));
}

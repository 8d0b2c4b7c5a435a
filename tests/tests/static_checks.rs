//! Checks of files that cannot run here: the Vagrantfile (Vagrant does not
//! run on CI's machines) and the syntax of every scenario script.

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
    let sa = find(&docs, "ServiceAccount");
    assert_eq!(pod["serviceAccountName"], sa["metadata"]["name"]);
    // RBAC: read-only on pods and services; Events may only be created.
    for rule in find(&docs, "ClusterRole")["rules"].as_array().unwrap() {
        let resources: Vec<&str> = rule["resources"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
        let allowed: &[&str] = if resources == ["events"] { &["create"] } else { &["get", "list", "watch"] };
        for verb in rule["verbs"].as_array().unwrap() {
            assert!(allowed.contains(&verb.as_str().unwrap()), "{rule}");
        }
    }
    // The pod list is filtered by the node's name, which the downward API gives.
    let env = c["env"].as_array().unwrap();
    assert!(env.iter().any(|e| e["name"] == "NODE_NAME" && e["valueFrom"]["fieldRef"]["fieldPath"] == "spec.nodeName"), "{env:?}");
    let sm = find(&docs, "ServiceMonitor");
    assert_eq!(sm["spec"]["endpoints"][0]["port"], "metrics");
    assert_eq!(sm["spec"]["selector"]["matchLabels"], find(&docs, "Service")["metadata"]["labels"]);
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

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

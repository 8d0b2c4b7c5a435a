//! `cargo xtask`: everything beyond `cargo build` — installing the
//! prerequisites, the bare-machine and VM test suites, the demo, benchmarks.

mod cmd;
mod setup;
mod vm;

use std::{
    path::{Path, PathBuf},
    process::{Command, ExitCode},
    sync::{
        Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    thread,
    time::Duration,
};

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};

use crate::cmd::{run, step};

#[derive(Parser)]
#[command(about = "probe-tracer project tasks")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install every prerequisite (apt packages, rust-src, bpf-linker,
    /// virtme-ng, a Debian kernel for the VM).
    Setup {
        /// Kernel package(s) to fetch (default: what linux-image-amd64 depends on).
        #[arg(long = "kernel")]
        kernels: Vec<String>,
    },
    /// Build probe-tracer (the eBPF object is built by its build script).
    Build,
    /// All tests: unit tests, fuzz targets, bare-machine e2e, VM e2e.
    Test {
        #[arg(long)]
        skip_vm: bool,
        #[arg(long)]
        skip_bare: bool,
        /// Skip the fuzz stage (cargo-fuzz targets, a short run each).
        #[arg(long)]
        skip_fuzz: bool,
        /// How long each fuzz target runs in the fuzz stage.
        #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
        fuzz_seconds: u64,
        /// How many kernels' VMs run at once: each guest's emulation keeps
        /// about a core busy, so more than one pays only on a machine with
        /// cores to spare (docs/testing.md).
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=8))]
        vm_jobs: u64,
        #[command(flatten)]
        vm: VmArgs,
    },
    /// The fuzz stage of `test` alone: every cargo-fuzz target (fuzz/)
    /// built and run from its seeds.
    Fuzz {
        /// How long each target runs.
        #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
        seconds: u64,
    },
    /// The e2e tests inside a Debian kernel under QEMU.
    VmTest {
        #[command(flatten)]
        vm: VmArgs,
        /// Extra arguments for the test binaries (e.g. a test name filter).
        #[arg(last = true)]
        filter: Vec<String>,
    },
    /// Reproduce an incident in the VM and show probe-tracer's diagnosis
    /// (nodeport, fork-eagain, setns, stopped-container, oom, slow-runtime,
    /// or runc for 2, 3 and 5 together).
    Demo {
        #[arg(default_value = "nodeport")]
        scenario: String,
        #[command(flatten)]
        vm: VmArgs,
    },
    /// Benchmarks on this machine and in the VM: connect/accept loop (probe
    /// path) and fork/exec storm (exec path), each against a baseline and
    /// bpftrace, and a drop storm (the packet-drop hook) against a baseline.
    Bench {
        #[arg(long)]
        skip_vm: bool,
        /// Only the VM's runs (this machine's take minutes, and a VM run
        /// is what needs re-measuring after a change to the fentry path).
        #[arg(long)]
        skip_bare: bool,
        /// Run only these benchmarks (default: all)
        #[arg(long, value_enum, value_delimiter = ',')]
        only: Vec<BenchName>,
        /// connect-bench rounds (its default: 10)
        #[arg(long)]
        rounds: Option<u32>,
        /// connect-bench window length (its default: 1 s)
        #[arg(long)]
        seconds: Option<f64>,
        /// More connect-bench arguments, e.g. `--connect-arg=--alternations
        /// --connect-arg=100` (repeatable; see connect-bench's header)
        #[arg(long = "connect-arg", value_name = "ARG", allow_hyphen_values = true)]
        connect_args: Vec<String>,
        #[command(flatten)]
        vm: VmArgs,
    },
}

#[derive(clap::ValueEnum, Clone, Copy, PartialEq, Eq)]
enum BenchName {
    Connect,
    Forkstorm,
    DaemonBudget,
    Drops,
}

#[derive(clap::Args, Clone)]
struct VmArgs {
    /// Kernel release to boot (default: the newest unpacked one).
    #[arg(long)]
    kernel: Option<String>,
    /// Try KVM (hangs on nested setups such as these machines; TCG is default).
    #[arg(long)]
    kvm: bool,
    /// Give up on the guest after this many seconds.
    #[arg(long, default_value_t = 1500)]
    vm_timeout: u64,
}

fn main() -> ExitCode {
    match run_task(Cli::parse().task) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn run_task(task: Task) -> Result<()> {
    match task {
        Task::Setup { kernels } => setup::setup(&kernels),
        Task::Build => build(),
        Task::Test { skip_vm, skip_bare, skip_fuzz, fuzz_seconds, vm_jobs, vm } => {
            test(skip_vm, skip_bare, (!skip_fuzz).then_some(fuzz_seconds), vm_jobs as usize, &vm)
        }
        Task::Fuzz { seconds } => {
            let (passed, failed) = fuzz(seconds)?;
            eprintln!("xtask: {passed} fuzz targets without a finding, {failed} with one");
            if failed > 0 {
                bail!("a fuzz target found a crash");
            }
            Ok(())
        }
        Task::VmTest { vm, filter } => {
            let counts = vm_test(&vm, &filter)?;
            eprintln!("xtask: {} passed, {} failed", counts.0, counts.1);
            Ok(())
        }
        Task::Demo { scenario, vm } => demo(&scenario, &vm),
        Task::Bench { skip_vm, skip_bare, only, rounds, seconds, connect_args, vm } => {
            bench(skip_vm, skip_bare, &only, rounds, seconds, &connect_args, &vm)
        }
    }
}

fn build() -> Result<()> {
    // The eBPF object is built by tracer-user's build script, inside cargo's
    // "Building ... tracer-user(build)" step: quiet unless it warns.
    step("building probe-tracer (release; includes the eBPF object, which a first build compiles with core for the BPF target: a few minutes)");
    run(Command::new("cargo").current_dir(root()).args(["build", "--release", "-p", "tracer-user", "-p", "tests", "--bins"]))?;
    build_kube_prober()
}

/// The e2e tests' kubelet-like prober (tests/prober: Go's standard library
/// only, so it builds offline), as `target/kube-prober/kubelet`: its comm
/// is the one probe-tracer matches.
fn build_kube_prober() -> Result<()> {
    step("building the kubelet-like prober (Go)");
    let target = root().join("target");
    run(Command::new("go")
        .current_dir(root().join("tests/prober"))
        .args(["build", "-trimpath", "-o"])
        .arg(target.join("kube-prober/kubelet"))
        .arg(".")
        .env("GOCACHE", target.join("go-cache"))
        .env("GOFLAGS", "-mod=mod")
        .env("GOPROXY", "off")
        .env("CGO_ENABLED", "0"))
}

/// Absolute paths of the `tests` crate's e2e test binaries.
fn e2e_binaries() -> Result<Vec<PathBuf>> {
    step("building the e2e test binaries");
    let out = Command::new("cargo")
        .current_dir(root())
        .args(["test", "--release", "-p", "tests", "--no-run", "--message-format=json"])
        .output()?;
    if !out.status.success() {
        bail!("building the e2e tests failed:\n{}", String::from_utf8_lossy(&out.stderr));
    }
    let mut bins = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Ok(msg) = serde_json::from_str::<serde_json::Value>(line) else { continue };
        if msg["reason"] == "compiler-artifact"
            && msg["profile"]["test"] == true
            && msg["target"]["kind"].as_array().is_some_and(|k| k.iter().any(|k| k == "test"))
            && let Some(exe) = msg["executable"].as_str() {
                bins.push(PathBuf::from(exe));
            }
    }
    if bins.is_empty() {
        bail!("no e2e test binaries were built");
    }
    Ok(bins)
}

/// Sums "test result: ok. N passed; M failed" lines.
fn count_results(text: &str) -> (u64, u64) {
    let mut passed = 0;
    let mut failed = 0;
    for line in text.lines().filter(|l| l.starts_with("test result:")) {
        let num = |word: &str| -> u64 {
            line.split(';')
                .find(|part| part.trim().ends_with(word))
                .and_then(|part| part.split_whitespace().rev().nth(1))
                .and_then(|n| n.parse().ok())
                .unwrap_or(0)
        };
        passed += num("passed");
        failed += num("failed");
    }
    (passed, failed)
}

fn captured(cmd: &mut Command) -> Result<(bool, String)> {
    eprintln!("    $ {}", cmd::describe(cmd));
    let out = cmd.output()?;
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    eprint!("{text}");
    Ok((out.status.success(), text))
}

fn test(skip_vm: bool, skip_bare: bool, fuzz_seconds: Option<u64>, vm_jobs: usize, vm: &VmArgs) -> Result<()> {
    let mut totals = (0u64, 0u64);
    let mut stages: Vec<(String, bool)> = Vec::new();
    let mut add = |t: (u64, u64)| {
        totals.0 += t.0;
        totals.1 += t.1;
    };
    let result = (|| -> Result<()> {
        step("unit tests");
        // The release profile: the e2e stages build it anyway, and a debug
        // build of the workspace (the eBPF object included) took minutes more.
        let (ok, text) = captured(Command::new("cargo").current_dir(root()).args(["test", "--release", "--workspace", "--exclude", "tracer-ebpf"]))?;
        add(count_results(&text));
        stages.push(("unit".into(), ok));
        if !ok {
            bail!("unit tests failed");
        }
        let mut failed = Vec::new();
        if let Some(seconds) = fuzz_seconds {
            let (ok, counts) = match fuzz(seconds) {
                Ok(counts) => (counts.1 == 0, counts),
                Err(e) => {
                    eprintln!("xtask: {e:#}");
                    (false, (0, 1))
                }
            };
            add(counts);
            stages.push(("fuzz".into(), ok));
            if !ok {
                failed.push("fuzz".to_string());
            }
        }
        build()?;
        if !skip_bare {
            step("e2e tests on this machine's kernel (tracepoints only; vm_only_ tests skipped)");
            let (ok, text) = captured(
                Command::new("cargo")
                    .current_dir(root())
                    .args(["test", "--release", "-p", "tests", "--", "--ignored", "--test-threads=1", "--skip", "vm_only_"])
                    .env("PROBE_TRACER_ENV", "bare")
                    .env("PROBE_TRACER_ROOT", root())
                    .env("PROBE_TRACER_BIN", root().join("target/release/probe-tracer")),
            )?;
            add(count_results(&text));
            stages.push(("bare e2e".into(), ok));
            if !ok {
                failed.push("bare-machine e2e".to_string());
            }
            // Debian 12's runc is 1.1; newer ones start exec differently
            // (runc init from a copy of itself, another error text).
            if let Some(dir) = setup::newer_runc_dir() {
                step("the runc exec tests again on this machine with the newer runc `setup` unpacked");
                let (ok, text) = captured(
                    Command::new("cargo")
                        .current_dir(root())
                        .args(["test", "--release", "-p", "tests", "--test", "runc_e2e", "--", "--ignored", "--test-threads=1"])
                        .args(["runc_exec_failures", "successful_runc_execs", "the_same_situations"])
                        .env("PROBE_TRACER_ENV", "bare")
                        .env("PROBE_TRACER_ROOT", root())
                        .env("PROBE_TRACER_BIN", root().join("target/release/probe-tracer"))
                        .env("PROBE_TRACER_RUNC_DIR", &dir),
                )?;
                add(count_results(&text));
                stages.push(("bare e2e, newer runc".into(), ok));
                if !ok {
                    failed.push("bare-machine e2e with the newer runc".to_string());
                }
            }
        }
        if !skip_vm {
            // Every kernel `setup` unpacked (or the one asked for): a
            // failure on one does not hide the others' results.
            let kernels = match &vm.kernel {
                Some(k) => vec![k.clone()],
                None => setup::cached_kernels()?,
            };
            // Built once above, before the bare-machine stage.
            let bins = e2e_binaries()?;
            step(&format!("VM e2e on {} kernels, {} at a time", kernels.len(), vm_jobs.min(kernels.len())));
            // `one_vm_` tests on the first kernel (Debian 12's own) alone.
            let first = kernels.first().cloned();
            let results = on_each(&kernels, vm_jobs, |kernel| {
                let one = VmArgs { kernel: Some(kernel.clone()), ..vm.clone() };
                let filter: Vec<String> =
                    if Some(kernel) == first.as_ref() { Vec::new() } else { vec!["--skip".into(), "one_vm_".into()] };
                run_vm_suite(&one, &bins, &filter)
            });
            for (kernel, result) in kernels.into_iter().zip(results) {
                let ok = match result {
                    Ok(c) => {
                        add(c);
                        true
                    }
                    Err(e) => {
                        eprintln!("xtask: {e:#}");
                        add((0, 1));
                        false
                    }
                };
                stages.push((format!("vm e2e on {kernel}"), ok));
                if !ok {
                    failed.push(format!("VM e2e on {kernel}"));
                }
            }
        }
        if !skip_vm {
            print_hook_table();
        }
        if !failed.is_empty() {
            bail!("failed: {}", failed.join(", "));
        }
        Ok(())
    })();
    for (stage, ok) in &stages {
        eprintln!("xtask: stage {stage}: {}", if *ok { "passed" } else { "FAILED" });
    }
    // The plain closing line CI reads.
    println!("xtask: {} passed, {} failed", totals.0, totals.1);
    result
}

/// The fuzz stage: the cargo-fuzz targets (fuzz/) built once and each run
/// for `seconds` from its seed corpus, two at a time (this machine's
/// cores). Returns (targets without a finding, targets with one).
fn fuzz(seconds: u64) -> Result<(u64, u64)> {
    let dir = root().join("fuzz");
    let target_dir = root().join("target/fuzz");
    // Nightly (coverage instrumentation), no sanitizer (Rust is memory
    // safe: what is looked for is panics, hangs and runaway allocation),
    // unoptimised (half the build's CPU time of an optimised one).
    let cargo_fuzz = |sub: &str| {
        let mut c = Command::new("cargo");
        c.current_dir(&dir).args(["+nightly", "fuzz", sub]);
        c
    };
    step("fuzz targets: building (nightly, unoptimised, no sanitizer)");
    let started = std::time::Instant::now();
    run(cargo_fuzz("build").args(["--dev", "-s", "none", "--target-dir"]).arg(&target_dir))
        .context("building the fuzz targets (they need the nightly toolchain and cargo-fuzz: cargo xtask setup; or --skip-fuzz)")?;
    eprintln!("    built in {:.0} s", started.elapsed().as_secs_f64());
    let list = cmd::output(&mut cargo_fuzz("list"))?;
    let targets: Vec<String> = String::from_utf8_lossy(&list.stdout).split_whitespace().map(str::to_string).collect();
    step(&format!("fuzz targets: {} for {seconds} s each, two at a time", targets.len()));
    let bins = target_dir.join("x86_64-unknown-linux-gnu/debug");
    let results = on_each(&targets, 2, |t| -> Result<(bool, String)> {
        let corpus = target_dir.join("corpus").join(t);
        let artifacts = target_dir.join("artifacts").join(t);
        std::fs::create_dir_all(&corpus)?;
        std::fs::create_dir_all(&artifacts)?;
        // New inputs go to the scratch corpus; the committed seeds are only read.
        let out = Command::new(bins.join(t))
            .arg(format!("-max_total_time={seconds}"))
            // An input that takes seconds is a hang; a gigabyte, a runaway allocation.
            .args(["-timeout=5", "-rss_limit_mb=1024"])
            .arg(format!("-artifact_prefix={}/", artifacts.display()))
            .arg(&corpus)
            .arg(dir.join("corpus").join(t))
            .output()
            .with_context(|| format!("cannot start the fuzz target {t}"))?;
        let log = String::from_utf8_lossy(&out.stderr).into_owned();
        Ok((out.status.success(), log))
    });
    let mut counts = (0, 0);
    for (t, result) in targets.iter().zip(results) {
        let (ok, log) = match result {
            Ok(r) => r,
            Err(e) => {
                counts.1 += 1;
                eprintln!("xtask: fuzz {t}: {e:#}");
                continue;
            }
        };
        if ok {
            counts.0 += 1;
            let done = log.lines().rev().find(|l| l.starts_with("Done ")).unwrap_or("done");
            eprintln!("xtask: fuzz {t}: no finding ({})", done.trim_start_matches("Done ").to_lowercase());
            continue;
        }
        counts.1 += 1;
        // The panic and libFuzzer's verdict, without the stack.
        let lines: Vec<&str> = log.lines().collect();
        for (i, l) in lines.iter().enumerate() {
            if l.contains("panicked at") {
                eprintln!("    {l}");
                if let Some(message) = lines.get(i + 1) {
                    eprintln!("    {message}");
                }
            } else if l.contains("ERROR: libFuzzer") || l.contains("SUMMARY: libFuzzer") {
                eprintln!("    {l}");
            }
        }
        let input = log.lines().find_map(|l| l.split("Test unit written to ").nth(1)).map(str::trim);
        eprintln!("xtask: fuzz {t}: FOUND A CRASH{}", input.map(|i| format!("; input {i}")).unwrap_or_default());
        if let Some(i) = input {
            eprintln!("    reproduce: (cd fuzz && cargo +nightly fuzz run --dev -s none --target-dir ../target/fuzz {t} {i})");
        }
    }
    Ok(counts)
}

/// The hook mode each kernel gave each hook, from the `check` every VM run
/// writes first (a Markdown table, as in the README).
fn print_hook_table() {
    let Ok(kernels) = setup::cached_kernels() else { return };
    let mut columns: Vec<(String, serde_json::Value)> = Vec::new();
    for k in kernels {
        let path = root().join("target/vm-out").join(&k).join("vm-test/check.json");
        if let Ok(v) = std::fs::read_to_string(&path).map_err(anyhow::Error::from).and_then(|t| Ok(serde_json::from_str(&t)?)) {
            columns.push((k, v));
        }
    }
    let Some((_, first)) = columns.first() else { return };
    let hooks: Vec<String> = first["hooks"].as_array().into_iter().flatten().filter_map(|h| h["hook"].as_str().map(String::from)).collect();
    println!("\n| hook | {} |", columns.iter().map(|c| c.0.as_str()).collect::<Vec<_>>().join(" | "));
    println!("|---|{}", "---|".repeat(columns.len()));
    for hook in hooks {
        let modes: Vec<String> = columns
            .iter()
            .map(|(_, v)| {
                v["hooks"].as_array().into_iter().flatten().find(|h| h["hook"] == hook.as_str())
                    .and_then(|h| h["mode"].as_str()).unwrap_or("none").to_string()
            })
            .collect();
        println!("| {hook} | {} |", modes.join(" | "));
    }
}

/// `f` of each item, at most `jobs` at a time, in the items' order.
fn on_each<T: Sync, R: Send>(items: &[T], jobs: usize, f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<R>>> = Mutex::new(items.iter().map(|_| None).collect());
    thread::scope(|s| {
        for _ in 0..jobs.clamp(1, items.len().max(1)) {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(item) = items.get(i) else { break };
                    let r = f(item);
                    results.lock().unwrap()[i] = Some(r);
                }
            });
        }
    });
    results.into_inner().unwrap().into_iter().map(|r| r.expect("every item ran")).collect()
}

fn vm_test(vm: &VmArgs, filter: &[String]) -> Result<(u64, u64)> {
    build()?;
    let bins = e2e_binaries()?;
    run_vm_suite(vm, &bins, filter)
}

/// The e2e binaries `bins` (built) in one guest of `vm.kernel`.
fn run_vm_suite(vm: &VmArgs, bins: &[PathBuf], filter: &[String]) -> Result<(u64, u64)> {
    // One test per process, each timed, so a log says where a slow suite
    // goes; the slowest are listed last.
    let mut body = String::from(
        r#"rc=0
times=$(mktemp)
run_each() {
    bin=$1; shift
    for t in $("$bin" --list --ignored --skip bare_only_ "$@" 2>/dev/null | sed -n 's/: test$//p'); do
        s=$(date +%s)
        "$bin" --ignored --test-threads=1 --exact "$t" "$@" || rc=1
        echo "$(( $(date +%s) - s )) s $t" >>"$times"
    done
}
"#,
    );
    for bin in bins {
        body.push_str(&format!("run_each {} {}\n", bin.display(), filter.join(" ")));
    }
    body.push_str("echo 'xtask: the slowest tests:'; sort -rn \"$times\" | head -15 | sed 's/^/xtask:   /'\n");
    body.push_str("exit $rc");
    let run = vm::run_in_vm(&root(), vm.kernel.as_deref(), "vm-test", &body, Duration::from_secs(vm.vm_timeout), vm.kvm)?;
    eprintln!("{}", run.output);
    let counts = count_results(&run.output);
    if run.status != 0 {
        bail!("e2e tests failed inside the VM (kernel {}, status {}); log: {}", run.kernel, run.status, run.out_dir.join("output.log").display());
    }
    if counts.0 == 0 {
        bail!("the VM ran no test (kernel {})", run.kernel);
    }
    Ok(counts)
}

/// Runs an incident by name through the same entry point the Vagrant VM
/// offers (`vagrant/probe-tracer-scenario`), inside the QEMU VM.
fn demo(scenario: &str, vm: &VmArgs) -> Result<()> {
    let entry = root().join("vagrant/probe-tracer-scenario");
    let known = Command::new("bash").arg(&entry).arg(scenario).env("PROBE_TRACER_SCENARIOS", "/nonexistent").output()?;
    if known.status.code() == Some(2) {
        bail!("no scenario named {scenario}:\n{}", String::from_utf8_lossy(&known.stderr));
    }
    build()?;
    let body = format!(
        "PROBE_TRACER_SCENARIOS={} PROBE_TRACER_BIN={} bash {} {scenario}",
        root().join("tests/scenarios").display(),
        root().join("target/release/probe-tracer").display(),
        entry.display()
    );
    let run = vm::run_in_vm(&root(), vm.kernel.as_deref(), "demo", &body, Duration::from_secs(vm.vm_timeout), vm.kvm)?;
    println!("{}", run.output);
    if run.status != 0 {
        bail!("the demo failed in the VM (status {})", run.status);
    }
    Ok(())
}

fn bench(
    skip_vm: bool,
    skip_bare: bool,
    only: &[BenchName],
    rounds: Option<u32>,
    seconds: Option<f64>,
    connect_args: &[String],
    vm: &VmArgs,
) -> Result<()> {
    build()?;
    let wanted = |b: BenchName| only.is_empty() || only.contains(&b);
    let wanted_bare = |b: BenchName| !skip_bare && wanted(b);
    let bench = root().join("target/release/connect-bench");
    let mut args = String::new();
    if let Some(r) = rounds {
        args.push_str(&format!(" --rounds {r}"));
    }
    if let Some(s) = seconds {
        args.push_str(&format!(" --seconds {s}"));
    }
    // Split on whitespace below, in the VM by its shell.
    if let Some(bad) = connect_args.iter().find(|a| a.is_empty() || a.contains(char::is_whitespace)) {
        bail!("--connect-arg {bad:?}: one word per --connect-arg");
    }
    for a in connect_args {
        args.push(' ');
        args.push_str(a);
    }
    let forkstorm = root().join("target/release/forkstorm-bench");
    if wanted_bare(BenchName::Connect) {
        step("connect/accept benchmark on this machine");
        run(Command::new(&bench).args(args.split_whitespace()).arg("--json").arg(root().join("target/bench-bare.json")))
            .context("benchmark on the bare machine")?;
    }
    if wanted_bare(BenchName::Forkstorm) {
        step("fork/exec storm benchmark on this machine");
        // Its own defaults: many short windows, paired with the baselines around them.
        run(Command::new(&forkstorm).arg("--json").arg(root().join("target/forkstorm-bare.json")))
            .context("fork storm benchmark on the bare machine")?;
    }
    if wanted_bare(BenchName::DaemonBudget) {
        step("daemon resource budget on this machine (1,000 prober connections/s)");
        run(Command::new(root().join("target/release/daemon-budget"))
            .args(["--seconds", "15"])
            .arg("--json")
            .arg(root().join("target/daemon-budget-bare.json")))
        .context("daemon budget on the bare machine")?;
    }
    let drops = root().join("target/release/drop-bench");
    if wanted_bare(BenchName::Drops) {
        step("drop storm benchmark on this machine (unrelated packets dropped on loopback)");
        run(Command::new(&drops).arg("--json").arg(root().join("target/drops-bare.json")))
            .context("drop storm benchmark on the bare machine")?;
    }
    let mut vm_steps = Vec::new();
    if wanted(BenchName::Connect) {
        vm_steps.push(format!("{}{args} --json {}", bench.display(), root().join("target/bench-vm.json").display()));
    }
    if wanted(BenchName::Forkstorm) {
        vm_steps.push(format!("{} --json {}", forkstorm.display(), root().join("target/forkstorm-vm.json").display()));
    }
    if wanted(BenchName::Drops) {
        vm_steps.push(format!("{} --json {}", drops.display(), root().join("target/drops-vm.json").display()));
    }
    if !skip_vm && !vm_steps.is_empty() {
        let body = vm_steps.join(" && ");
        let run = vm::run_in_vm(&root(), vm.kernel.as_deref(), "bench", &body, Duration::from_secs(vm.vm_timeout), vm.kvm)?;
        println!("{}", run.output);
        if run.status != 0 {
            bail!("the benchmark failed in the VM");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn counts_cargo_test_result_lines() {
        let text = "test result: ok. 27 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out\n\
                    test result: FAILED. 3 passed; 2 failed; 1 ignored; 0 measured; 0 filtered out\n";
        assert_eq!(super::count_results(text), (30, 2));
    }
}

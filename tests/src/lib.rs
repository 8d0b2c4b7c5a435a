//! Helpers for the end-to-end tests in `tests/tests/`.
//!
//! The tests run the real `probe-tracer` binary against incidents the
//! scenario scripts in `tests/scenarios/` reproduce. They need root and a
//! kernel that loads eBPF, so they are `#[ignore]`d for plain `cargo test`
//! and run by `cargo xtask test` (bare machine) and `cargo xtask vm-test`
//! (a Debian kernel under QEMU), which set:
//! - `PROBE_TRACER_BIN`: the binary under test;
//! - `PROBE_TRACER_ENV`: `bare` or `vm`, for expectations that differ (which
//!   attach mechanism each hook gets, whether IPVS exists);
//! - `PROBE_TRACER_ROOT`: the workspace root (scenario scripts live there).

use std::{
    env,
    fs,
    io::Read,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::atomic::{AtomicU32, Ordering},
    thread,
    time::{Duration, Instant},
};

use serde_json::Value;

pub mod bench;
pub mod fake_api;
pub mod monitoring;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Machine {
    /// The development machine's own kernel: tracepoints only, no IPVS.
    Bare,
    /// A stock Debian kernel in QEMU: kprobes, fentry, IPVS.
    Vm,
}

pub fn machine() -> Machine {
    match env::var("PROBE_TRACER_ENV").as_deref() {
        Ok("vm") => Machine::Vm,
        Ok("bare") => Machine::Bare,
        other => panic!("PROBE_TRACER_ENV must be bare or vm (got {other:?}); run through cargo xtask test"),
    }
}

pub fn root() -> PathBuf {
    env::var_os("PROBE_TRACER_ROOT")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf())
}

pub fn binary() -> PathBuf {
    env::var_os("PROBE_TRACER_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target/release/probe-tracer"))
}

/// Sets the calling thread's comm, which the kernel filters match
/// (`kubelet` for a prober).
pub fn set_thread_name(name: &str) {
    let c = std::ffi::CString::new(name).unwrap();
    // SAFETY: PR_SET_NAME with a valid NUL-terminated string.
    unsafe { libc::prctl(libc::PR_SET_NAME, c.as_ptr()) };
}

/// Has `cmd`'s process killed when the thread that starts it dies. A test
/// harness or benchmark killed outright (no unwinding, so no `Drop`) would
/// otherwise leave a tracer or bpftrace attached, taxing every later
/// measurement. Start such children from the thread that owns them.
pub fn die_with_parent(cmd: &mut Command) -> &mut Command {
    use std::os::unix::process::CommandExt;
    // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        })
    }
}

pub fn scenario(name: &str) -> PathBuf {
    root().join("tests/scenarios").join(name)
}

/// A scenario script that runs longer than this is hung (a VM under
/// emulation takes seconds for what takes milliseconds on the bare machine).
const SCRIPT_TIMEOUT_SECS: &str = "300";

/// Runs a scenario script and returns its stdout; panics with its output on
/// failure or when it hangs.
pub fn script(scenario_name: &str, script: &str, args: &[&str]) -> String {
    let path = scenario(scenario_name).join(script);
    let out = Command::new("timeout")
        .args(["--kill-after=10", SCRIPT_TIMEOUT_SECS, "bash"])
        .arg(&path)
        .args(args)
        .output()
        .expect("timeout (coreutils) and bash");
    assert!(
        out.status.success(),
        "{} {args:?} failed: {}\n{}",
        path.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A scenario that is torn down when the test ends, pass or fail.
pub struct Scenario {
    name: &'static str,
}

impl Scenario {
    pub fn up(name: &'static str) -> Self {
        script(name, "setup.sh", &[]);
        Self { name }
    }

    pub fn trigger(&self, args: &[&str]) -> String {
        script(self.name, "trigger.sh", args)
    }
}

impl Drop for Scenario {
    fn drop(&mut self) {
        let _ = Command::new("bash").arg(scenario(self.name).join("teardown.sh")).output();
    }
}

/// A running `probe-tracer run --format json`.
pub struct Tracer {
    child: Child,
    ready: PathBuf,
    stdout: PathBuf,
    stderr: PathBuf,
}

static TRACER_SEQ: AtomicU32 = AtomicU32::new(0);

/// A test that fails between start and stop must not leave the tracer
/// attached: it would go on costing every syscall (and skewing every
/// measurement) until someone noticed. Killing it closes its link fds,
/// which detaches its programs.
impl Drop for Tracer {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl Tracer {
    /// Starts `probe-tracer run --format json ARGS` and waits until its
    /// ready file exists (every program attached).
    pub fn start(args: &[&str]) -> Self {
        Self::start_binary(&binary(), args)
    }

    /// [`Tracer::start`] with another build of probe-tracer (a benchmark's
    /// `--peer-tracer`, to compare two builds in one run).
    pub fn start_binary(binary: &Path, args: &[&str]) -> Self {
        let dir = env::temp_dir().join(format!(
            "probe-tracer-e2e-{}-{}",
            std::process::id(),
            TRACER_SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        // PIDs wrap (at 32768 on these machines) and /tmp outlives a run:
        // an older run's ready file here would pass for this tracer's.
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let ready = dir.join("ready");
        let stdout = dir.join("stdout.jsonl");
        let stderr = dir.join("stderr.txt");
        let child = die_with_parent(&mut Command::new(binary))
            .args(["run", "--format", "json", "--ready-file"])
            .arg(&ready)
            .args(args)
            .stdout(Stdio::from(fs::File::create(&stdout).unwrap()))
            .stderr(Stdio::from(fs::File::create(&stderr).unwrap()))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
        let mut tracer = Self { child, ready, stdout, stderr };
        let started = Instant::now();
        // The verifier walks the state program's paths instruction by
        // instruction: a second or two on hardware, minutes under TCG for
        // the helper-read fallbacks on 5.10.
        let limit = if env::var("PROBE_TRACER_ENV").as_deref() == Ok("vm") { 300 } else { 120 };
        tracer.wait_until_attached(true, Duration::from_secs(limit), Duration::from_millis(50));
        // Shown with --nocapture: where a slow suite spends its time.
        eprintln!("probe-tracer {args:?} attached in {:.1} s", started.elapsed().as_secs_f64());
        tracer
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Detaches its programs (it must run with `--pause-signals`) and
    /// returns once they are.
    pub fn pause(&mut self) {
        self.signal(libc::SIGUSR1);
        self.wait_until_attached(false, Duration::from_secs(30), Duration::from_micros(200));
    }

    /// Attaches them again after [`Tracer::pause`].
    pub fn resume(&mut self) {
        self.signal(libc::SIGUSR2);
        self.wait_until_attached(true, Duration::from_secs(30), Duration::from_micros(200));
    }

    fn signal(&self, signal: i32) {
        // SAFETY: plain kill(2) on our own child.
        unsafe { libc::kill(self.child.id() as i32, signal) };
    }

    /// Waits for the ready file, which exists exactly while every program
    /// is attached, to exist (or not), polling every `poll`.
    fn wait_until_attached(&mut self, attached: bool, limit: Duration, poll: Duration) {
        let deadline = Instant::now() + limit;
        while self.ready.exists() != attached {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("probe-tracer exited ({status}): {}", self.stderr_text());
            }
            let what = if attached { "attach" } else { "detach" };
            assert!(Instant::now() < deadline, "probe-tracer did not {what} within {limit:?}");
            thread::sleep(poll);
        }
    }

    /// Stops it as Ctrl-C would and returns every JSON line it printed.
    pub fn stop(mut self) -> Output {
        // SAFETY: plain kill(2) on our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        let deadline = Instant::now() + Duration::from_secs(60);
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!("probe-tracer did not stop within 60 s of SIGINT: {}", self.stderr_text());
            }
            thread::sleep(Duration::from_millis(50));
        };
        let mut text = String::new();
        fs::File::open(&self.stdout).unwrap().read_to_string(&mut text).unwrap();
        assert!(status.success(), "probe-tracer failed ({status}): {}\n{text}", self.stderr_text());
        assert!(!self.ready.exists(), "probe-tracer left its ready file behind");
        let lines = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
            .collect();
        // Kept when anything above failed, for whoever reads the failure.
        if let Some(dir) = self.ready.parent() {
            let _ = fs::remove_dir_all(dir);
        }
        Output { lines }
    }

    fn stderr_text(&self) -> String {
        fs::read_to_string(&self.stderr).unwrap_or_default()
    }
}

/// What a tracer printed.
#[derive(Debug)]
pub struct Output {
    pub lines: Vec<Value>,
}

impl Output {
    pub fn kind(&self, kind: &str) -> Vec<&Value> {
        self.lines.iter().filter(|l| l["kind"] == kind).collect()
    }

    /// The one line of `kind`, failing with the whole output otherwise.
    pub fn only(&self, kind: &str) -> &Value {
        let found = self.kind(kind);
        assert_eq!(found.len(), 1, "expected exactly one {kind}, got {}:\n{}", found.len(), self.dump());
        found[0]
    }

    /// Lines that are verdicts (neither records nor start/summary).
    pub fn verdicts(&self) -> Vec<&Value> {
        const RECORDS: &[&str] = &["tracer_started", "summary", "tcp_attempt", "container_stopped"];
        self.lines.iter().filter(|l| !RECORDS.contains(&l["kind"].as_str().unwrap_or(""))).collect()
    }

    /// The attach mode `tracer_started` reported for `hook`.
    pub fn hook_mode(&self, hook: &str) -> String {
        self.hook_field(hook, "mode")
    }

    /// What `hook` is attached to (a function, tracepoint or procfs file).
    pub fn hook_target(&self, hook: &str) -> String {
        self.hook_field(hook, "target")
    }

    fn hook_field(&self, hook: &str, field: &str) -> String {
        let started = self.only("tracer_started");
        let h = started["hooks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|h| h["hook"] == hook)
            .unwrap_or_else(|| panic!("no hook {hook} in {started}"));
        h[field].as_str().unwrap_or("none").to_string()
    }

    pub fn dump(&self) -> String {
        self.lines.iter().map(Value::to_string).collect::<Vec<_>>().join("\n")
    }
}

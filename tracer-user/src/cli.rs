//! Command-line interface. Flag names are a contract: scripts use them.

use std::{ops::RangeInclusive, path::PathBuf};

use clap::{Args, Parser, Subcommand};

use crate::output::Format;

#[derive(Parser, Debug)]
#[command(name = "probe-tracer", version, about = "Explains Kubernetes health-probe failures from the kernel's point of view.")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Report what this kernel allows: which mechanism each hook gets, BTF,
    /// lockdown, privileges. Exits 0 if all is well, 3 if probe-tracer
    /// cannot trace here, 4 if an audit check failed.
    Check(CheckArgs),
    /// Trace until --duration or Ctrl-C, printing one line per verdict.
    Run(RunArgs),
    /// Run continuously (a DaemonSet): JSON verdicts on stdout, Prometheus
    /// metrics and /healthz over HTTP, until SIGTERM.
    Daemon(DaemonArgs),
    /// Run the diagnosis over a recording made with `run --record`.
    Replay(ReplayArgs),
    /// Print a shell completion script: `source <(probe-tracer completions
    /// bash)`, or save it where the shell loads completions from (docs/cli.md).
    Completions(CompletionsArgs),
}

#[derive(Args, Debug)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[derive(Args, Debug, Clone)]
pub struct DaemonArgs {
    /// Where to serve /metrics and /healthz (default: port 9464 on the
    /// node's own address from $NODE_IP, as the DaemonSet passes the pod's
    /// hostIP, else 127.0.0.1:9464; never every address unless asked).
    #[arg(long, value_name = "ADDR:PORT")]
    pub metrics_addr: Option<std::net::SocketAddr>,
    #[command(flatten)]
    pub run: RunArgs,
}

/// The default port of /metrics and /healthz.
pub const METRICS_PORT: u16 = 9464;

impl DaemonArgs {
    /// `--metrics-addr`, else $NODE_IP:9464, else 127.0.0.1:9464.
    pub fn metrics_addr(&self) -> Result<std::net::SocketAddr, String> {
        resolve_metrics_addr(self.metrics_addr, std::env::var("NODE_IP").ok().as_deref())
    }
}

pub fn resolve_metrics_addr(flag: Option<std::net::SocketAddr>, node_ip: Option<&str>) -> Result<std::net::SocketAddr, String> {
    if let Some(addr) = flag {
        return Ok(addr);
    }
    match node_ip.map(str::trim).filter(|s| !s.is_empty()) {
        Some(ip) => ip
            .parse::<std::net::IpAddr>()
            .map(|ip| (ip, METRICS_PORT).into())
            .map_err(|_| format!("NODE_IP={ip:?} is not an IP address (pass --metrics-addr)")),
        None => Ok((std::net::Ipv4Addr::LOCALHOST, METRICS_PORT).into()),
    }
}

/// Exit status: 0 when probe-tracer can trace here and no audit check
/// failed; 3 when it cannot trace (privileges, BTF, a needed hook); 4 when an
/// audit check failed; 2 for a usage error; 1 for any other error.
#[derive(Args, Debug)]
pub struct CheckArgs {
    /// Output format (default: text on a terminal, json otherwise).
    #[arg(long, value_enum)]
    pub format: Option<Format>,
    /// Also print each hook's raw loader errors (JSON always has them).
    #[arg(short, long, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Kubernetes NodePort range (kube-apiserver --service-node-port-range).
    #[arg(long, value_name = "LOW-HIGH", default_value = "30000-32767", value_parser = parse_port_range)]
    pub nodeport_range: RangeInclusive<u16>,
}

#[derive(Args, Debug, Clone)]
pub struct DiagnoseArgs {
    /// Container runtime binary whose process tree is traced for exec-probe
    /// failures (repeatable; default: runc and crun, CRI-O's default).
    #[arg(long = "runtime-comm", value_name = "NAME", default_values = ["runc", "crun"])]
    pub runtime_comms: Vec<String>,
    /// Runtime state directory holding <container-id>/state.json (repeatable;
    /// default: runc's and containerd's usual roots, plus any --root runc
    /// was started with).
    #[arg(long = "runtime-root", value_name = "DIR")]
    pub runtime_roots: Vec<PathBuf>,
    /// A runc call slower than this (99th percentile of a 10 s interval, or
    /// still running) raises `runtime_slow`.
    #[arg(long = "runtime-slow-ms", value_name = "MS", default_value_t = 1000)]
    pub runtime_slow_ms: u64,
    /// Kubernetes NodePort range (kube-apiserver --service-node-port-range).
    #[arg(long, value_name = "LOW-HIGH", default_value = "30000-32767", value_parser = parse_port_range)]
    pub nodeport_range: RangeInclusive<u16>,
}

/// Where pod names come from. Without any of these, probe-tracer uses the
/// in-cluster service account or ~/.kube/config when present, and cgroup
/// paths (pod UID, container ID) otherwise.
#[derive(Args, Debug, Clone, Default)]
pub struct KubernetesArgs {
    /// Kubernetes API server URL (e.g. http://127.0.0.1:8001 for
    /// `kubectl proxy`).
    #[arg(long, value_name = "URL")]
    pub kube_api: Option<String>,
    /// kubeconfig file to reach the API server with.
    #[arg(long, value_name = "FILE", conflicts_with = "kube_api")]
    pub kubeconfig: Option<PathBuf>,
    /// Never contact the API server.
    #[arg(long, conflicts_with_all = ["kube_api", "kubeconfig", "emit_events"])]
    pub no_kubernetes: bool,
    /// This node's name, to list its pods (default: $NODE_NAME, else the
    /// hostname).
    #[arg(long, value_name = "NAME")]
    pub node_name: Option<String>,
    /// Post a Kubernetes Event on the affected pod for each verdict
    /// (reason ProbeSynAckDiverted, ExecProbeForkFailed, ...).
    #[arg(long)]
    pub emit_events: bool,
}

impl KubernetesArgs {
    pub fn options(&self) -> crate::k8s::client::KubeOptions {
        crate::k8s::client::KubeOptions {
            disabled: self.no_kubernetes,
            api_url: self.kube_api.clone(),
            kubeconfig: self.kubeconfig.clone(),
            node_name: self.node_name.clone(),
            read_timeout: None,
        }
    }
}

#[derive(Args, Debug, Clone)]
pub struct RunArgs {
    /// Process name whose TCP connections are probes (repeatable).
    #[arg(long = "prober-comm", value_name = "NAME", default_value = "kubelet")]
    pub prober_comms: Vec<String>,
    /// Which parts to trace (comma-separated): probe (TCP probes, IPVS),
    /// exec (the runtime's process tree), node (OOM kills).
    #[arg(long, value_name = "GROUPS", value_enum, value_delimiter = ',',
          default_values_t = [crate::loader::Group::Probe, crate::loader::Group::Exec, crate::loader::Group::Node])]
    pub groups: Vec<crate::loader::Group>,
    /// Stop by itself after this many seconds (`inf`: never).
    #[arg(long, value_name = "SECS", value_parser = parse_duration_secs)]
    pub duration: Option<f64>,
    /// Create this file once every program is attached (removed when it stops).
    #[arg(long, value_name = "PATH")]
    pub ready_file: Option<PathBuf>,
    /// Output format (default: text on a terminal, json otherwise).
    #[arg(long, value_enum)]
    pub format: Option<Format>,
    /// Print only verdicts, not a record per prober connection attempt.
    #[arg(long)]
    pub verdicts_only: bool,
    /// Also write every raw event as a JSON line to this file (for replay).
    #[arg(long, value_name = "FILE")]
    pub record: Option<PathBuf>,
    /// Attach mechanisms the loader may use, best first is still preferred
    /// (comma-separated; e.g. `tracepoint,inferred` to exercise fallbacks).
    #[arg(long = "allow-mode", value_name = "MODES", value_enum, value_delimiter = ',',
          default_values_t = crate::loader::Mode::ALL)]
    pub allowed_modes: Vec<crate::loader::Mode>,
    /// Whether clone/setns failures may be traced through syscall
    /// tracepoints where the kernel refuses fexit. Any syscall tracepoint
    /// puts every syscall on the node on the kernel's slow path (about a
    /// quarter slower), so the default is on for `run` (an incident, for
    /// minutes) and off for `daemon` (always on).
    #[arg(long = "syscall-tracepoints", value_name = "on|off", value_enum)]
    pub syscall_tracepoints: Option<Switch>,
    /// Ring buffer size in bytes (rounded up to a power of two; 4096 to
    /// 1 GiB).
    #[arg(long, value_name = "BYTES", default_value_t = 4 << 20, value_parser = parse_ringbuf_size)]
    pub ringbuf_size: u32,
    /// For benchmarks: SIGUSR1 detaches every program and removes the ready
    /// file, SIGUSR2 attaches them again and recreates it. Connections that
    /// change state while detached are not traced (and may be misjudged).
    #[arg(long, hide = true, requires = "ready_file")]
    pub pause_signals: bool,
    #[command(flatten)]
    pub diagnose: DiagnoseArgs,
    #[command(flatten)]
    pub kubernetes: KubernetesArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Switch {
    On,
    Off,
}

#[derive(Args, Debug)]
pub struct ReplayArgs {
    /// A file written by `run --record`.
    pub file: PathBuf,
    #[arg(long, value_enum)]
    pub format: Option<Format>,
    /// Treat the recording as made without the IPVS hook (infer diversions
    /// from the node's current IPVS table).
    #[arg(long)]
    pub ipvs_inferred: bool,
    #[command(flatten)]
    pub diagnose: DiagnoseArgs,
}

impl DiagnoseArgs {
    pub fn exec_settings(&self) -> crate::diagnose::exec::ExecSettings {
        let mut settings = crate::diagnose::exec::ExecSettings {
            runtime_comms: self.runtime_comms.clone(),
            slow_threshold_ns: self.runtime_slow_ms.saturating_mul(1_000_000),
            ..Default::default()
        };
        // Roots given on the command line are searched first.
        let mut roots = self.runtime_roots.clone();
        roots.append(&mut settings.runtime_roots);
        settings.runtime_roots = roots;
        settings
    }
}

/// The largest `--ringbuf-size`: 1 GiB, so rounding up to a power of two
/// can never pass 2^31 (and wrap).
pub const MAX_RINGBUF_BYTES: u64 = 1 << 30;

pub fn parse_ringbuf_size(s: &str) -> Result<u32, String> {
    let n: u64 = s.trim().parse().map_err(|_| format!("'{s}' is not a number of bytes"))?;
    if !(4096..=MAX_RINGBUF_BYTES).contains(&n) {
        return Err(format!("{n} bytes is out of range: the ring buffer takes 4096 to {MAX_RINGBUF_BYTES} (1 GiB)"));
    }
    Ok(n as u32)
}

/// Seconds, non-negative; `inf` (or anything past a century) means no end.
pub fn parse_duration_secs(s: &str) -> Result<f64, String> {
    let secs: f64 = s.trim().parse().map_err(|_| format!("'{s}' is not a number of seconds"))?;
    if secs.is_nan() || secs < 0.0 {
        return Err(format!("'{s}' is not a duration: give a number of seconds >= 0, or inf"));
    }
    Ok(secs)
}

/// When a run of `secs` seconds started at `start` ends; `None` when it
/// does not (inf, 1e20: beyond what an Instant can hold).
pub fn deadline(start: std::time::Instant, secs: f64) -> Option<std::time::Instant> {
    std::time::Duration::try_from_secs_f64(secs).ok().and_then(|d| start.checked_add(d))
}

pub fn parse_port_range(s: &str) -> Result<RangeInclusive<u16>, String> {
    let (lo, hi) = s
        .split_once('-')
        .ok_or_else(|| format!("'{s}' is not a port range like 30000-32767"))?;
    let lo: u16 = lo.trim().parse().map_err(|_| format!("'{lo}' is not a port number"))?;
    let hi: u16 = hi.trim().parse().map_err(|_| format!("'{hi}' is not a port number"))?;
    if lo == 0 || lo > hi {
        return Err(format!("'{s}' is empty or reversed; write LOW-HIGH with 1 <= LOW <= HIGH"));
    }
    Ok(lo..=hi)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_ranges_parse_and_reject_nonsense() {
        assert_eq!(parse_port_range("30000-32767").unwrap(), 30000..=32767);
        assert!(parse_port_range("32767-30000").is_err());
        assert!(parse_port_range("30000").is_err());
        assert!(parse_port_range("0-5").is_err());
    }

    #[test]
    fn ringbuf_sizes_past_a_gibibyte_and_absurd_durations_are_refused_or_unbounded() {
        assert_eq!(parse_ringbuf_size("4194304").unwrap(), 4 << 20);
        assert_eq!(parse_ringbuf_size("1073741824").unwrap(), 1 << 30);
        for bad in ["2147483649", "4294967295", "99999999999", "100", "-1", "x"] {
            assert!(parse_ringbuf_size(bad).is_err(), "{bad}");
        }
        assert!(Cli::try_parse_from(["probe-tracer", "run", "--ringbuf-size", "3000000000"]).is_err());
        assert_eq!(parse_duration_secs("1.5").unwrap(), 1.5);
        for bad in ["-1", "NaN", "soon"] {
            assert!(parse_duration_secs(bad).is_err(), "{bad}");
        }
        let now = std::time::Instant::now();
        for unbounded in ["inf", "1e20", "1e300"] {
            assert_eq!(deadline(now, parse_duration_secs(unbounded).unwrap()), None, "{unbounded}");
        }
        assert!(deadline(now, 2.0).is_some());
    }

    #[test]
    fn metrics_bind_the_node_address_or_loopback_and_the_flag_wins() {
        let flag: std::net::SocketAddr = "0.0.0.0:9000".parse().unwrap();
        assert_eq!(resolve_metrics_addr(Some(flag), Some("10.0.0.5")).unwrap(), flag);
        assert_eq!(resolve_metrics_addr(None, Some("10.0.0.5")).unwrap().to_string(), "10.0.0.5:9464");
        assert_eq!(resolve_metrics_addr(None, Some("fd00::5")).unwrap().to_string(), "[fd00::5]:9464");
        assert_eq!(resolve_metrics_addr(None, None).unwrap().to_string(), "127.0.0.1:9464");
        assert_eq!(resolve_metrics_addr(None, Some("")).unwrap().to_string(), "127.0.0.1:9464");
        assert!(resolve_metrics_addr(None, Some("node-1")).is_err());
        let cli = Cli::try_parse_from(["probe-tracer", "daemon"]).unwrap();
        let Command::Daemon(d) = cli.command else { panic!() };
        assert_eq!(d.metrics_addr, None, "no flag: nothing binds 0.0.0.0 by default");
    }

    #[test]
    fn run_defaults_to_kubelet_and_repeats_prober_comm() {
        let cli = Cli::try_parse_from(["probe-tracer", "run"]).unwrap();
        let Command::Run(args) = cli.command else { panic!() };
        assert_eq!(args.prober_comms, ["kubelet"]);
        let cli = Cli::try_parse_from(["probe-tracer", "run", "--prober-comm", "a", "--prober-comm", "b"]).unwrap();
        let Command::Run(args) = cli.command else { panic!() };
        assert_eq!(args.prober_comms, ["a", "b"]);
    }
}

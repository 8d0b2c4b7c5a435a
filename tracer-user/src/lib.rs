//! probe-tracer userspace: loader, correlators, CLI and outputs.
//!
//! Layout:
//! - `app`: the `probe-tracer` command (the binary is this and nothing else);
//! - `kernel`: what the running kernel offers (BTF offsets, tracepoint
//!   formats, privileges, lockdown) — the inputs to the loader;
//! - `loader`: loads the eBPF object and attaches each hook with the best
//!   mechanism available (fentry, kprobe, tracepoint), reporting what it got;
//! - `events`: ring-buffer records decoded into owned values;
//! - `diagnose`: correlation and verdicts, pure Rust (unit-tested with
//!   recorded event sequences);
//! - `check`: the `check` subcommand (refused mechanisms in words, exit
//!   statuses);
//! - `audit`: `check`'s node audit (port ranges, IPVS NodePorts, pids and
//!   thread limits) as pure functions of what it reads;
//! - `network`: network facts the probe verdicts cite (sysctls, the IPVS
//!   table, listeners and accept queues, rp_filter);
//! - `cgroup_cpu`: a probed container's CPU throttling and pressure;
//! - `processes`: process facts the exec and OOM verdicts cite (pids and
//!   memory cgroups, threads-max, runc and crun state files);
//! - `enrich`: the stage between `diagnose` and `output` that adds pod and
//!   container names and picks a verdict's Kubernetes Event;
//! - `output`: JSON lines and one-sentence text;
//! - `replay`: a recording read back and diagnosed (`replay`);
//! - `k8s`: the Kubernetes adapter (cgroup paths, the API server's pods and
//!   services, posting Events);
//! - `metrics`: Prometheus metrics and /healthz for `daemon`.
//! - `run`: the `run` and `daemon` session: the event loop, and the report
//!   pipeline from a ring-buffer record to a written report.

// Public: what the binary (app), the e2e tests (tests/) and the fuzz
// targets (fuzz/) use. The rest is the crate's own, so the compiler
// reports what nothing uses.
pub mod app;
pub mod cgroup_cpu;
pub mod diagnose;
pub mod events;
pub mod k8s;
pub mod loader;
pub mod metrics;
pub mod network;
pub mod output;
pub mod processes;
pub mod replay;

pub(crate) mod audit;
pub(crate) mod check;
pub(crate) mod cli;
mod enrich;
pub(crate) mod kernel;
pub(crate) mod run;
pub(crate) mod throttle;

/// The build script's filter of the eBPF build's output, tested here
/// (cargo does not run a build script's tests).
#[cfg(test)]
#[path = "../build/ebpf_output.rs"]
mod build_ebpf_output;

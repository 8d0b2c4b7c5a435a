//! `probe-tracer check`: what this kernel lets probe-tracer do, said once
//! per mechanism in words (the loader's raw errors stay in `--format json`
//! and `-v`), the node audit, and an exit status a script can test.

use std::{fs, path::Path, process::ExitCode};

use anyhow::Result;
use serde::Serialize;
use serde_json::json;

use crate::{
    audit,
    cli::CheckArgs,
    processes::LiveProcesses,
    kernel::info::KernelInfo,
    loader::{Cause, Group, HookStatus, LoadOptions, Mode, Tracer},
    network::LiveNetwork,
    output::{Clock, Format, Output},
    output::text::{self, cost_notes},
};

/// `check`'s exit statuses (documented in docs/cli.md). Usage errors exit
/// with clap's 2, and any other error with 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckStatus {
    /// Tracing works and no audit check failed (warnings and unknowns pass).
    Ok = 0,
    /// probe-tracer cannot trace on this node: privileges, no BTF, or a hook
    /// it needs that no mechanism could attach. Wins over `AuditFailed`.
    CannotTrace = 3,
    /// Tracing works, but an audit check failed (status `fail`).
    AuditFailed = 4,
}

impl CheckStatus {
    pub fn exit_code(self) -> ExitCode {
        ExitCode::from(self as u8)
    }
}

/// The kernel facts that explain a refused mechanism.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KernelFacts {
    /// The bracketed lockdown mode (`none`, `integrity`, `confidentiality`, `unknown`).
    pub lockdown: String,
    /// `bpf` is among /sys/kernel/security/lsm's active security modules.
    pub bpf_lsm: bool,
    /// /sys/bus/event_source/devices/kprobe exists.
    pub kprobe_pmu: bool,
}

pub use crate::loader::KPROBE_PMU;

impl KernelFacts {
    pub fn probe(info: &KernelInfo) -> Self {
        let lsm = fs::read_to_string("/sys/kernel/security/lsm").unwrap_or_default();
        Self {
            lockdown: info.lockdown.clone(),
            bpf_lsm: lsm.trim().split(',').any(|m| m == "bpf"),
            kprobe_pmu: Path::new(KPROBE_PMU).exists(),
        }
    }
}

/// Why this kernel refused a mechanism, with the facts that explain it;
/// [`text::unavailable_reason`] says it in words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// fentry/fexit (and tp_btf) programs refused at load, even for root
    /// (EPERM).
    TracingProgramsRefused(KernelFacts),
    /// No kprobe PMU: a kernel built without CONFIG_KPROBES.
    NoKprobePmu,
    /// The ip_vs module is not loaded: IPVS diversions are inferred.
    IpVsNotLoaded,
    /// Anything else the kernel refused, with the loader's error.
    Other { mode: Mode, error: String },
}

impl Refusal {
    /// The JSON `cause`: `tracing_programs_refused`, `no_kprobe_pmu`,
    /// `ip_vs_not_loaded`, `other`.
    pub fn code(&self) -> &'static str {
        match self {
            Refusal::TracingProgramsRefused(_) => "tracing_programs_refused",
            Refusal::NoKprobePmu => "no_kprobe_pmu",
            Refusal::IpVsNotLoaded => "ip_vs_not_loaded",
            Refusal::Other { .. } => "other",
        }
    }

    /// What was refused, as `check` names it: `fentry/fexit`, `kprobe`, `ipvs`, ...
    pub fn mechanism(&self) -> String {
        match self {
            Refusal::TracingProgramsRefused(_) => "fentry/fexit".to_string(),
            Refusal::NoKprobePmu => "kprobe".to_string(),
            Refusal::IpVsNotLoaded => "ipvs".to_string(),
            Refusal::Other { mode, .. } => mode.to_string(),
        }
    }
}

/// One mechanism this kernel refused, with the hooks that wanted it. In
/// JSON: `mechanism`, `cause` (its code), `reason` (in a sentence),
/// `hooks`, `errors`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unavailable {
    pub cause: Refusal,
    pub hooks: Vec<&'static str>,
    /// The loader's distinct raw errors.
    pub errors: Vec<String>,
}

impl Unavailable {
    pub fn mechanism(&self) -> String {
        self.cause.mechanism()
    }

    /// Why, in a sentence.
    pub fn reason(&self) -> String {
        text::unavailable_reason(&self.cause)
    }
}

impl Serialize for Unavailable {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Record<'a> {
            mechanism: String,
            cause: &'static str,
            reason: String,
            hooks: &'a [&'static str],
            errors: &'a [String],
        }
        Record {
            mechanism: self.mechanism(),
            cause: self.cause.code(),
            reason: self.reason(),
            hooks: &self.hooks,
            errors: &self.errors,
        }
        .serialize(serializer)
    }
}

/// Groups every hook's failed attempts by cause: one entry per refused
/// mechanism, however many hooks tried it. Mechanisms the user turned off
/// (`--syscall-tracepoints off`) are not failures and are left to the notes.
pub fn explain(hooks: &[HookStatus], facts: &KernelFacts) -> Vec<Unavailable> {
    let mut found: Vec<Unavailable> = Vec::new();
    for h in hooks {
        for f in h.tried.iter().filter(|f| !f.turned_off()) {
            let tracing = matches!(f.mode, Mode::Fentry | Mode::Fexit | Mode::BtfTracepoint);
            let kprobe = f.mode == Mode::Kprobe;
            let cause = match f.cause {
                Cause::PermissionDenied if tracing => Refusal::TracingProgramsRefused(facts.clone()),
                Cause::IpvsNotLoaded if kprobe => Refusal::IpVsNotLoaded,
                c if kprobe && (!facts.kprobe_pmu || c == Cause::NoKprobePmu) => Refusal::NoKprobePmu,
                _ => Refusal::Other { mode: f.mode, error: f.error.clone() },
            };
            let entry = match found.iter_mut().find(|u| u.cause == cause) {
                Some(u) => u,
                None => {
                    found.push(Unavailable { cause, hooks: Vec::new(), errors: Vec::new() });
                    found.last_mut().expect("just pushed")
                }
            };
            if !entry.hooks.contains(&h.hook) {
                entry.hooks.push(h.hook);
            }
            if !entry.errors.contains(&f.error) {
                entry.errors.push(f.error.clone());
            }
        }
    }
    found
}

/// Runs the check, prints it, and says which exit status it earned. The
/// audit reads procfs only, so it is printed even when tracing is not
/// possible.
pub fn check(args: CheckArgs) -> Result<CheckStatus> {
    let info = KernelInfo::probe();
    let facts = KernelFacts::probe(&info);
    let mut out = Output::stdout(Format::auto(args.format), Clock::now());
    let findings = audit::audit(&audit::gather(&LiveNetwork, &LiveProcesses::default()), &args.nodeport_range);
    let mut cannot_trace = info.blocker();
    let hooks = match &cannot_trace {
        Some(_) => Vec::new(),
        None => match Tracer::load(&LoadOptions {
            groups: vec![Group::Probe, Group::Exec, Group::Node],
            allowed_modes: Mode::ALL.to_vec(),
            // Shows what `run` gets; the cost note says what that costs.
            syscall_tracepoints: true,
            prober_comms: vec!["kubelet".into()],
            runtime_comms: vec!["runc".into()],
            ringbuf_bytes: 4096,
        }) {
            Ok(tracer) => tracer.hooks.clone(),
            Err(e) => {
                cannot_trace = Some(format!("{e:#}"));
                Vec::new()
            }
        },
    };
    let unavailable = explain(&hooks, &facts);
    let notes = cost_notes(&hooks);
    let text = text::check(&info, &hooks, &notes, &unavailable, &findings, args.verbose > 0)?;
    let audit_failed = findings.iter().any(|f| f.status == audit::Status::Fail);
    let status = match (&cannot_trace, audit_failed) {
        (Some(_), _) => CheckStatus::CannotTrace,
        (None, true) => CheckStatus::AuditFailed,
        (None, false) => CheckStatus::Ok,
    };
    out.record(
        "check",
        json!({
            "kernel": info,
            "hooks": hooks,
            "unavailable": unavailable,
            "notes": notes,
            "audit": findings,
            "cannot_trace": cannot_trace,
            "exit_status": status as u8,
        }),
        &text,
    )?;
    if let Some(sentence) = cannot_trace {
        crate::output::warn(&sentence);
    }
    Ok(status)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        loader::Failure,
        output::text::{hooks_section, tracing_refused_reason},
    };

    const EPERM: &str = "the BPF_PROG_LOAD syscall returned Operation not permitted (os error 1). Verifier output: : Operation not permitted (os error 1)";
    const NO_PMU: &str = "`/sys/bus/event_source/devices/kprobe/type`: No such file or directory (os error 2)";

    fn hook(name: &'static str, mode: Option<Mode>, tried: Vec<Failure>) -> HookStatus {
        HookStatus { hook: name, group: Group::Probe, mode, target: mode.map(|_| "t".to_string()), tried, limitation: None }
    }

    /// The 6.18 development machine: locked down, BPF LSM, no kprobes, no ip_vs.
    fn bare_618() -> (Vec<HookStatus>, KernelFacts) {
        let hooks = vec![
            hook("tcp_state", Some(Mode::BtfTracepoint), vec![]),
            hook(
                "tcp_connect",
                Some(Mode::BtfTracepoint),
                vec![Failure::refused(Mode::Fentry, "tcp_connect", EPERM), Failure::refused(Mode::Kprobe, "tcp_connect", NO_PMU)],
            ),
            hook(
                "tcp_rcv_state_process",
                Some(Mode::BtfTracepoint),
                vec![Failure::refused(Mode::Fentry, "tcp_rcv_state_process", EPERM), Failure::refused(Mode::Kprobe, "tcp_rcv_state_process", NO_PMU)],
            ),
            hook(
                "ipvs_conn_new",
                Some(Mode::Inferred),
                vec![Failure::ipvs_not_loaded(Mode::Kprobe, "ip_vs_conn_new")],
            ),
            hook(
                "fork_failed",
                Some(Mode::Tracepoint),
                vec![Failure::refused(Mode::Fexit, "__x64_sys_fork", format!("unknown BTF type `__x64_sys_fork`; __do_sys_fork: {EPERM}"))],
            ),
            hook("setns_failed", None, vec![Failure::refused(Mode::Fexit, "__x64_sys_setns", EPERM), Failure::syscall_tracepoint_off("syscalls:sys_exit_setns")]),
        ];
        (hooks, KernelFacts { lockdown: "integrity".into(), bpf_lsm: true, kprobe_pmu: false })
    }

    #[test]
    fn each_refused_mechanism_is_explained_once_in_words() {
        let (hooks, facts) = bare_618();
        let u = explain(&hooks, &facts);
        let names: Vec<String> = u.iter().map(|u| u.mechanism()).collect();
        assert_eq!(names, ["fentry/fexit", "kprobe", "ipvs"]);
        assert_eq!(u[0].hooks, ["tcp_connect", "tcp_rcv_state_process", "fork_failed", "setns_failed"]);
        assert!(u[0].reason().contains("lockdown is integrity and the BPF LSM is active"), "{}", u[0].reason());
        assert!(u[0].reason().contains("EPERM"), "{}", u[0].reason());
        // The raw errors are kept, each once.
        assert_eq!(u[0].errors.len(), 2, "{:?}", u[0].errors);
        assert_eq!(u[1].cause.code(), "no_kprobe_pmu");
        assert!(u[1].reason().contains("/sys/bus/event_source/devices/kprobe is missing"), "{}", u[1].reason());
        assert_eq!(u[1].hooks, ["tcp_connect", "tcp_rcv_state_process"]);
        assert_eq!(u[2].cause.code(), "ip_vs_not_loaded");
        assert_eq!(u[2].hooks, ["ipvs_conn_new"]);
    }

    #[test]
    fn the_text_has_no_raw_loader_error_unless_verbose() {
        let (hooks, facts) = bare_618();
        let u = explain(&hooks, &facts);
        let text = hooks_section(&hooks, &[], &u, false);
        assert!(!text.contains("BPF_PROG_LOAD"), "{text}");
        assert!(!text.contains("os error"), "{text}");
        assert_eq!(text.matches("EPERM").count(), 1, "{text}");
        assert!(text.contains("tcp_connect            btf_tracepoint (t); fentry, kprobe unavailable"), "{text}");
        assert!(text.contains("setns_failed           NOT ATTACHED: fexit unavailable; syscall tracepoints off"), "{text}");
        assert!(text.contains("check -v"), "{text}");
        assert!(text.contains("  fentry/fexit  refused at load even for root (EPERM): lockdown is integrity and the BPF LSM is active, either of which can forbid them; 3 hooks fall back, 1 hook not attached"), "{text}");
        assert!(text.contains("  kprobe        no kprobe PMU: /sys/bus/event_source/devices/kprobe is missing (a kernel built without CONFIG_KPROBES); 2 hooks fall back"), "{text}");
        let verbose = hooks_section(&hooks, &[], &u, true);
        assert!(verbose.contains("BPF_PROG_LOAD"), "{verbose}");
    }

    #[test]
    fn an_unknown_refusal_keeps_its_error() {
        let hooks = vec![hook("x", Some(Mode::Tracepoint), vec![Failure::refused(Mode::Kprobe, "f", "Invalid argument (os error 22)")])];
        let u = explain(&hooks, &KernelFacts { lockdown: "none".into(), bpf_lsm: false, kprobe_pmu: true });
        assert_eq!(u[0].cause.code(), "other");
        assert!(u[0].reason().contains("Invalid argument"), "{}", u[0].reason());
    }

    #[test]
    fn without_lockdown_or_bpf_lsm_the_reason_names_no_culprit() {
        let reason = tracing_refused_reason(&KernelFacts { lockdown: "none".into(), bpf_lsm: false, kprobe_pmu: true });
        assert!(reason.ends_with("a security policy of this kernel forbids them"), "{reason}");
    }
}

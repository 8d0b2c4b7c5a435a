//! Every sentence a person reads that is not a verdict's (verdicts say
//! theirs in `diagnose`): the start, the hooks and what they cost, lost
//! events, throttling, the summary, a failed command's error.

use std::collections::BTreeSet;

use crate::{
    audit::Finding,
    check::{KPROBE_PMU, KernelFacts, Refusal, Unavailable},
    diagnose::Summary,
    kernel::info::KernelInfo,
    loader::HookStatus,
};

/// The `tracer_started` record's text: the kernel, the probers, one line
/// per hook and per cost note.
pub fn started(release: &str, comms: &[String], hooks: &[HookStatus], notes: &[String]) -> String {
    let mut text = format!(
        "probe-tracer attached on kernel {} (probers: {}):",
        release,
        comms.join(", ")
    );
    text.push_str(&hooks_text(hooks, notes));
    text
}

/// What the attached hooks cost beyond their own programs, for the operator
/// to weigh. Any syscall tracepoint puts every task's syscalls on the
/// kernel's slow path (measured on a 6.18 node: a null syscall 25-33 %
/// slower, a fork+exec storm ~2.5 % slower); fexit has no such cost.
pub fn cost_notes(hooks: &[HookStatus]) -> Vec<String> {
    // A helper half (setns_enter is setns_failed's): naming it adds nothing.
    let named = |h: &&HookStatus| !h.is_helper();
    let using: Vec<&str> = hooks
        .iter()
        .filter(|h| h.on_syscall_tracepoint())
        .filter(named)
        .map(|h| h.hook)
        .collect();
    let turned_off: Vec<&str> = hooks
        .iter()
        .filter(|h| h.mode.is_none() && h.tried.iter().any(|f| f.turned_off()))
        .filter(named)
        .map(|h| h.hook)
        .collect();
    let mut notes = Vec::new();
    if !using.is_empty() {
        notes.push(format!(
            "{} use syscall tracepoints (this kernel refuses fexit): while probe-tracer runs, every syscall \
             on the node takes the kernel's slow path, roughly a quarter slower; --syscall-tracepoints off \
             (the daemon's default) or --groups probe,node leaves them out",
            using.join(", ")
        ));
    }
    if !turned_off.is_empty() {
        notes.push(format!(
            "{} not traced: this kernel refuses fexit and syscall tracepoints are off, so the fork_failed and \
             setns_failed verdicts are not reported (runc_init_died still is); --syscall-tracepoints on adds them, \
             at the cost of every syscall on the node taking the kernel's slow path, roughly a quarter slower",
            turned_off.join(", ")
        ));
    }
    notes
}

/// One line per hook (what it got, and why better mechanisms failed), then
/// one per cost note (from [`cost_notes`]); shared by `run` and `check`.
pub fn hooks_text(hooks: &[HookStatus], notes: &[String]) -> String {
    let mut text = String::new();
    for h in hooks {
        text.push_str(&format!("\n  {:<22} {}", h.hook, hook_text(h)));
    }
    for note in notes {
        text.push_str(&format!("\n  note: {note}"));
    }
    text
}

/// What one hook got, or why nothing attached.
fn hook_text(h: &HookStatus) -> String {
    match (&h.mode, &h.target) {
        (Some(mode), Some(target)) => {
            let mut s = format!("{mode} ({target})");
            if let Some(first) = h.tried.first() {
                s.push_str(&format!("; {} unavailable: {}", first.mode, first.error));
            }
            s
        }
        _ if h.tried.is_empty() => "NOT ATTACHED: no allowed mechanism".to_string(),
        _ => format!(
            "NOT ATTACHED: {}",
            h.tried.iter().map(|f| format!("{} {}: {}", f.mode, f.target, f.error)).collect::<Vec<_>>().join("; ")
        ),
    }
}

/// A hook's line: its mechanism, and the better ones this kernel refused
/// (explained once below the list).
fn hook_line(h: &HookStatus) -> String {
    let refused: BTreeSet<String> = h.tried.iter().filter(|f| !f.turned_off()).map(|f| f.mode.to_string()).collect();
    let refused = refused.into_iter().collect::<Vec<_>>().join(", ");
    let turned_off = h.tried.iter().any(|f| f.turned_off());
    match (&h.mode, &h.target) {
        (Some(mode), Some(target)) if refused.is_empty() => format!("{mode} ({target})"),
        (Some(mode), Some(target)) => format!("{mode} ({target}); {refused} unavailable"),
        _ => {
            let mut why = Vec::new();
            if !refused.is_empty() {
                why.push(format!("{refused} unavailable"));
            }
            if turned_off {
                why.push("syscall tracepoints off".to_string());
            }
            if why.is_empty() {
                why.push("no allowed mechanism".to_string());
            }
            format!("NOT ATTACHED: {}", why.join("; "))
        }
    }
}

/// The `hooks:` and `unavailable on this kernel:` sections.
pub fn hooks_section(hooks: &[HookStatus], notes: &[String], unavailable: &[Unavailable], verbose: bool) -> String {
    if verbose {
        return hooks_text(hooks, notes);
    }
    let mut text = String::new();
    for h in hooks {
        text.push_str(&format!("\n  {:<22} {}", h.hook, hook_line(h)));
    }
    for note in notes {
        text.push_str(&format!("\n  note: {note}"));
    }
    if !unavailable.is_empty() {
        text.push_str("\nunavailable on this kernel (the loader's errors: check -v or --format json):");
        for u in unavailable {
            let attached = |name: &&&str| hooks.iter().any(|h| h.hook == **name && h.mode.is_some());
            let fell_back = u.hooks.iter().filter(attached).count();
            let without = u.hooks.len() - fell_back;
            let mut effect = Vec::new();
            if fell_back > 0 {
                effect.push(format!("{fell_back} hook{} fall{} back", plural(fell_back), if fell_back == 1 { "s" } else { "" }));
            }
            if without > 0 {
                effect.push(format!("{without} hook{} not attached", plural(without)));
            }
            text.push_str(&format!("\n  {:<13} {}; {}", u.mechanism(), unavailable_reason(&u.cause), effect.join(", ")));
        }
    }
    text
}

/// Why `check` finds a mechanism unavailable, in a sentence (its text, and
/// the `reason` of its JSON).
pub fn unavailable_reason(cause: &Refusal) -> String {
    match cause {
        Refusal::TracingProgramsRefused(facts) => tracing_refused_reason(facts),
        Refusal::IpVsNotLoaded => "the ip_vs module is not loaded (no /sys/kernel/btf/ip_vs): IPVS diversions are inferred from \
                                   /proc/net/ip_vs, all a node needs whose kube-proxy does not use IPVS"
            .to_string(),
        Refusal::NoKprobePmu => format!("no kprobe PMU: {KPROBE_PMU} is missing (a kernel built without CONFIG_KPROBES)"),
        Refusal::Other { mode, error } => format!("the kernel refused {mode}: {error}"),
    }
}

/// Why fentry/fexit programs are refused at load: the policies of this
/// kernel that can forbid them.
pub fn tracing_refused_reason(facts: &KernelFacts) -> String {
    let mut why = Vec::new();
    if facts.lockdown != "none" && facts.lockdown != "unknown" {
        why.push(format!("lockdown is {}", facts.lockdown));
    }
    if facts.bpf_lsm {
        why.push("the BPF LSM is active".to_string());
    }
    let policy = if why.is_empty() {
        "a security policy of this kernel forbids them".to_string()
    } else {
        format!("{}, either of which can forbid them", why.join(" and "))
    };
    format!("refused at load even for root (EPERM): {policy}")
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// The `check` record's text: the kernel, the hooks (when any could load)
/// and the node audit's findings.
pub fn check(
    info: &KernelInfo,
    hooks: &[HookStatus],
    notes: &[String],
    unavailable: &[Unavailable],
    findings: &[Finding],
    verbose: bool,
) -> serde_json::Result<String> {
    let mut text = format!(
        "kernel:      {}\nBTF:         {}\nlockdown:    {}\nprivileges:  {}",
        info.release,
        if info.btf { "yes" } else { "no" },
        info.lockdown,
        if info.privileged { "ok".to_string() } else { format!("missing {}", info.missing_capabilities.join(", ")) },
    );
    if !hooks.is_empty() {
        text.push_str("\nhooks:");
        text.push_str(&hooks_section(hooks, notes, unavailable, verbose));
    }
    text.push_str("\nnode audit:");
    for f in findings {
        let status = serde_json::to_value(f.status)?.as_str().unwrap_or("").to_uppercase();
        text.push_str(&format!("\n  {:<16} {:<7} {}", f.check, status, f.message));
        if let Some(fix) = &f.fix {
            text.push_str(&format!("\n  {:<16} {:<7} fix: {fix}", "", ""));
        }
    }
    Ok(text)
}

/// The `events_lost` record's text.
pub fn events_lost(lost: u64, lost_total: u64, incomplete_for_s: u64) -> String {
    format!(
        "events_lost: {} events lost ({} so far: the ring buffer full, program runs skipped, or tracked sockets and processes evicted; the summary counts each): verdicts for the next {} s carry incomplete: true (--ringbuf-size)",
        lost,
        lost_total,
        incomplete_for_s
    )
}

/// Appended to a verdict's message while events were being lost.
pub const INCOMPLETE: &str = " (incomplete: events were lost meanwhile)";

/// The `throttled` record's text: `source` held back from `kind` on.
pub fn throttled(source: &str, kind: &str) -> String {
    format!(
        "{source} is reporting faster than one a second ({}, ...): its further reports are held back and counted (summary: throttled)",
        kind
    )
}

/// The `summary` record's text for `run` and `daemon`.
pub fn summary(s: &Summary) -> String {
    let a = &s.attempts;
    let verdicts: u64 = s.verdicts.values().sum();
    let kernel = s.kernel.as_ref();
    let connected_then_failed = a.no_response + a.http_error + a.dropped_by_pod;
    format!(
        "summary: {} prober connections ({} established, {} refused, {} timed out, {} diverted by IPVS, \
         {} connected and then failed); {verdicts} verdicts; {} events lost{}",
        a.established + a.refused + a.timeout + a.diverted + connected_then_failed,
        a.established, a.refused, a.timeout, a.diverted, connected_then_failed, kernel.map_or(0, |k| k.lost_events),
        match kernel.and_then(|k| k.missed_program_runs) {
            Some(n) if n > 0 => format!(
                "; {n} program runs skipped by the kernel (the program was already running on that CPU): what they saw is lost"
            ),
            _ => String::new(),
        },
    )
}

/// The `summary` record's text for `replay`: the summary itself.
pub fn replay_summary(s: &Summary) -> serde_json::Result<String> {
    Ok(format!("summary: {}", serde_json::to_string(s)?))
}

/// The line a failed command leaves on stderr: the error's cause chain
/// joined into one sentence, no backtrace.
pub fn error(e: &anyhow::Error) -> String {
    format!("{e:#}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loader::{Failure, Group, Mode};

    fn hook(hook: &'static str, mode: Mode, target: &str) -> HookStatus {
        HookStatus { hook, group: Group::Exec, mode: Some(mode), target: Some(target.into()), tried: Vec::new(), limitation: None }
    }

    #[test]
    fn syscall_tracepoints_get_a_cost_note_and_fexit_does_not() {
        let fexit = [hook("clone_failed", Mode::Fexit, "__x64_sys_clone")];
        assert!(cost_notes(&fexit).is_empty());
        let fallback = [
            hook("clone_failed", Mode::Tracepoint, "syscalls:sys_exit_clone"),
            hook("setns_failed", Mode::Tracepoint, "syscalls:sys_exit_setns"),
            hook("oom_kill", Mode::Tracepoint, "oom:mark_victim"),
        ];
        let notes = cost_notes(&fallback);
        assert_eq!(notes.len(), 1);
        assert!(notes[0].starts_with("clone_failed, setns_failed use syscall tracepoints"), "{}", notes[0]);
        assert!(notes[0].contains("--syscall-tracepoints off"), "{}", notes[0]);
    }

    #[test]
    fn syscall_tracepoints_turned_off_get_a_note_on_what_is_missing() {
        let off = |hook: &'static str| HookStatus {
            hook,
            group: Group::Exec,
            mode: None,
            target: None,
            tried: vec![
                Failure::refused(Mode::Fexit, "__x64_sys_clone", "EPERM"),
                Failure::syscall_tracepoint_off("syscalls:sys_exit_clone"),
            ],
            limitation: None,
        };
        let notes = cost_notes(&[off("clone_failed"), off("setns_failed"), off("setns_enter")]);
        assert_eq!(notes.len(), 1, "{notes:?}");
        assert!(notes[0].starts_with("clone_failed, setns_failed not traced"), "{}", notes[0]);
        assert!(notes[0].contains("--syscall-tracepoints on"), "{}", notes[0]);
        // A hook that failed for another reason is not blamed on the switch.
        let failed = HookStatus {
            tried: vec![Failure::refused(Mode::Tracepoint, "syscalls:sys_exit_clone", "ENOENT")],
            ..off("clone_failed")
        };
        assert!(cost_notes(&[failed]).is_empty());
    }
}

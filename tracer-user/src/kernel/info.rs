//! Facts about the running kernel and our privileges, for `check` and for
//! refusing early with one clear sentence.

use std::{fs, path::Path};

use serde::Serialize;

use super::btf::VMLINUX_BTF;

const CAP_NET_ADMIN: u32 = 12;
const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

#[derive(Debug, Clone, Serialize)]
pub struct KernelInfo {
    pub release: String,
    pub btf: bool,
    /// `none`, `integrity`, `confidentiality`, or `unknown` (securityfs not mounted).
    pub lockdown: String,
    pub privileged: bool,
    pub missing_capabilities: Vec<&'static str>,
}

impl KernelInfo {
    pub fn probe() -> Self {
        let caps = effective_capabilities();
        let has = |cap: u32| caps.is_some_and(|c| c & (1u64 << cap) != 0);
        // CAP_SYS_ADMIN covers BPF and perf on every kernel; CAP_BPF and
        // CAP_PERFMON split it out since 5.8.
        let mut missing = Vec::new();
        if !has(CAP_SYS_ADMIN) {
            if !has(CAP_BPF) {
                missing.push("CAP_BPF");
            }
            if !has(CAP_PERFMON) {
                missing.push("CAP_PERFMON");
            }
        }
        if !has(CAP_NET_ADMIN) && !has(CAP_SYS_ADMIN) {
            missing.push("CAP_NET_ADMIN");
        }
        Self {
            release: fs::read_to_string("/proc/sys/kernel/osrelease")
                .map(|s| s.trim().to_string())
                .unwrap_or_else(|_| "unknown".into()),
            btf: Path::new(VMLINUX_BTF).exists(),
            lockdown: lockdown_mode(),
            privileged: missing.is_empty(),
            missing_capabilities: missing,
        }
    }

    /// The one sentence to stop with when we cannot load programs at all.
    pub fn blocker(&self) -> Option<String> {
        if !self.privileged {
            return Some(format!(
                "loading eBPF programs needs root or the capabilities {}; run probe-tracer with sudo (or as a privileged DaemonSet)",
                self.missing_capabilities.join(", ")
            ));
        }
        if !self.btf {
            return Some(format!(
                "this kernel ({}) exposes no BTF ({VMLINUX_BTF} is missing), which probe-tracer needs to read kernel structures; use a kernel built with CONFIG_DEBUG_INFO_BTF=y (every major distribution's 5.4+ kernel is)",
                self.release
            ));
        }
        None
    }
}

/// CapEff from /proc/self/status.
fn effective_capabilities() -> Option<u64> {
    let status = fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("CapEff:"))?;
    u64::from_str_radix(line.split_whitespace().nth(1)?, 16).ok()
}

/// The bracketed mode of /sys/kernel/security/lockdown ("none [integrity] ...").
/// Mounts securityfs first if nobody has (a root-only, harmless mount).
fn lockdown_mode() -> String {
    const LOCKDOWN: &str = "/sys/kernel/security/lockdown";
    if !Path::new(LOCKDOWN).exists() {
        // SAFETY: valid NUL-terminated strings; failure leaves "unknown".
        unsafe {
            libc::mount(c"securityfs".as_ptr(), c"/sys/kernel/security".as_ptr(), c"securityfs".as_ptr(), 0, std::ptr::null())
        };
    }
    fs::read_to_string(LOCKDOWN)
        .ok()
        .and_then(|s| parse_lockdown(&s))
        .unwrap_or_else(|| "unknown".into())
}

pub fn parse_lockdown(text: &str) -> Option<String> {
    let start = text.find('[')?;
    let end = text[start..].find(']')? + start;
    Some(text[start + 1..end].to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lockdown_mode_is_the_bracketed_word() {
        assert_eq!(parse_lockdown("none [integrity] confidentiality\n").as_deref(), Some("integrity"));
        assert_eq!(parse_lockdown("[none] integrity confidentiality").as_deref(), Some("none"));
        assert_eq!(parse_lockdown("garbage"), None);
    }
}

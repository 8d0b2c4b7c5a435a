//! Numbers as messages say them: errno and signal names, namespace types,
//! wait(2) statuses, and "container <id>".

use super::*;

/// `errno` number to its name (EAGAIN...).
pub fn errno_name(errno: i32) -> String {
    format!("{:?}", nix::errno::Errno::from_raw(errno))
}

pub fn signal_name(sig: i32) -> String {
    nix::sys::signal::Signal::try_from(sig).map(|s| s.as_str().to_string()).unwrap_or_else(|_| format!("signal {sig}"))
}

/// Namespace type names for setns's nstype (CLONE_NEW* flags).
pub fn namespace_name(nstype: i32) -> &'static str {
    match nstype {
        0 => "any",
        0x0002_0000 => "mnt",
        0x0200_0000 => "cgroup",
        0x0400_0000 => "uts",
        0x0800_0000 => "ipc",
        0x1000_0000 => "user",
        0x2000_0000 => "pid",
        0x4000_0000 => "net",
        0x0000_0080 => "time",
        _ => "several",
    }
}

/// A wait(2) status as people say it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExitStatus {
    pub code: i32,
    pub signal: i32,
}

impl ExitStatus {
    pub fn from_raw(raw: i32) -> Self {
        Self { code: (raw >> 8) & 0xff, signal: raw & 0x7f }
    }

    pub fn failed(&self) -> bool {
        self.code != 0 || self.signal != 0
    }

    pub fn describe(&self) -> String {
        if self.signal != 0 { format!("was killed by {}", signal_name(self.signal)) } else { format!("exited with code {}", self.code) }
    }

    pub(super) fn fields(&self, r: Report) -> Report {
        let r = r.with("exit_code", self.code);
        if self.signal != 0 { r.with("signal", signal_name(self.signal)) } else { r.with("signal", serde_json::Value::Null) }
    }
}

/// "container <id>", or "a container" where the runtime's argv named none.
pub(super) fn container_phrase(id: Option<&str>) -> String {
    id.map_or_else(|| "a container".to_string(), |c| format!("container {c}"))
}

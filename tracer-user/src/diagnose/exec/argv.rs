//! What a runtime's command line asks for: runc's (and crun's) argv, parsed.

use super::*;

/// What a runc command line asks for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuncCommand {
    pub subcommand: Option<String>,
    pub container: Option<String>,
    /// `--root`: where this runc keeps its state.
    pub root: Option<String>,
    /// `--log`: where this runc writes its errors (containerd's shim:
    /// `<bundle>/log.json`).
    pub log: Option<String>,
    /// The kernel's copy of argv was cut short and the process was gone
    /// before the rest could be read from `/proc/PID/cmdline`: the
    /// container ID may be missing (never a cut-off prefix of one).
    pub args_truncated: bool,
}

/// runc options that take a value (global and per-subcommand), so the
/// container id is not mistaken for one of their values.
const RUNC_VALUE_OPTIONS: &[&str] = &[
    "--root", "--log", "--log-format", "--criu", "--rootless", "--bundle", "-b", "--console-socket",
    "--pidfd-socket", "--pid-file", "--preserve-fds", "--cwd", "--env", "-e", "--user", "-u",
    "--additional-gids", "-g", "--process", "-p", "--apparmor", "--process-label", "--cap", "-c",
    "--cgroup", "--signal", "-s",
];

/// Parses `runc [global options] <subcommand> [options] <container-id> ...`.
/// `comm` is the runtime's name: a wrapper script's argv starts with its
/// interpreter (`/bin/sh /usr/local/bin/runc ...`), so parsing starts after
/// the argument that names the runtime.
pub fn parse_runc_args(args: &[String], comm: &str) -> RuncCommand {
    let mut cmd = RuncCommand::default();
    let named = |a: &String| a.rsplit('/').next() == Some(comm);
    let mut i = args.iter().position(named).unwrap_or(0) + 1;
    while i < args.len() {
        let a = args[i].as_str();
        if let Some(opt) = a.strip_prefix("--").map(|_| a).or_else(|| a.starts_with('-').then_some(a)) {
            let (name, inline_value) = match opt.split_once('=') {
                Some((n, v)) => (n, Some(v)),
                None => (opt, None),
            };
            let takes_value = RUNC_VALUE_OPTIONS.contains(&name);
            let value = match inline_value {
                Some(v) => Some(v.to_string()),
                None if takes_value => {
                    i += 1;
                    args.get(i).cloned()
                }
                None => None,
            };
            if name == "--root" && cmd.subcommand.is_none() {
                cmd.root = value;
            } else if name == "--log" && cmd.subcommand.is_none() {
                cmd.log = value;
            } else if matches!(name, "--pid-file" | "--bundle" | "-b") && cmd.container.is_none() {
                // containerd and Docker keep a container's bundle in a
                // directory named after its ID: a fallback when argv was
                // cut before the ID itself.
                cmd.container = value.as_deref().and_then(bundle_id);
            }
        } else if cmd.subcommand.is_none() {
            cmd.subcommand = Some(a.to_string());
        } else {
            cmd.container = Some(a.to_string());
            break;
        }
        i += 1;
    }
    if cmd.container.is_none() {
        cmd.container = cmd.log.as_deref().and_then(bundle_id);
    }
    cmd
}

/// The container ID a bundle path names: a 64-hex directory
/// (`.../k8s.io/<id>/log.json`, `.../<id>/<exec-id>.pid`, `.../<id>`).
fn bundle_id(path: &str) -> Option<String> {
    let is_id = |s: &str| s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit());
    let mut parts = path.rsplit('/').filter(|p| !p.is_empty());
    let last = parts.next()?;
    if is_id(last) {
        return Some(last.to_string());
    }
    parts.next().filter(|p| is_id(p)).map(str::to_string)
}

/// Parses an exec's argv, completing it from `/proc/PID/cmdline` when the
/// kernel's copy was cut short. A cut argv's last string is incomplete and
/// is dropped rather than taken for (a prefix of) the container ID.
pub fn parse_exec_args<H: ProcessFacts>(info: &ExecInfo, pid: u32, comm: &str, host: &H) -> RuncCommand {
    if !info.args_truncated {
        return parse_runc_args(&info.args, comm);
    }
    let known = info.args.len().saturating_sub(1);
    if let Some(full) = host.cmdline(pid).filter(|full| full.len() > known && full[..known] == info.args[..known]) {
        return parse_runc_args(&full, comm);
    }
    let mut cmd = parse_runc_args(&info.args[..known], comm);
    cmd.args_truncated = true;
    cmd
}

/// The subcommands runc and crun have; anything else is "other".
pub fn known_subcommand(sub: &str) -> &str {
    const KNOWN: &[&str] = &[
        "checkpoint", "create", "delete", "events", "exec", "features", "init", "kill", "list", "pause", "ps", "restore",
        "resume", "run", "spec", "start", "state", "update",
    ];
    if KNOWN.contains(&sub) { sub } else { "other" }
}

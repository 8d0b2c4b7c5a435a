//! The hook table: every hook the tracer can attach, the mechanisms it
//! may use in order of preference, and the group it serves. Adding a hook
//! means adding a row here and its program in `tracer-ebpf`.


use serde::Serialize;

use super::Mode;

/// Which part of the product a hook serves; `run` loads the groups it needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Group {
    /// Prober TCP connections and IPVS (incident 1).
    Probe,
    /// runc process tree: exec, fork, setns, exits, signals (incidents 2, 3).
    Exec,
    /// Node-level: OOM kills (incident 4).
    Node,
}

/// One way to attach a hook.
#[derive(Debug, Clone, Copy)]
pub enum Attach {
    Fentry { program: &'static str, function: &'static str },
    /// fexit on a syscall's entry point, named per architecture
    /// (`__x64_sys_clone` on x86_64).
    FexitSyscall { program: &'static str, syscall: &'static str },
    Kprobe { program: &'static str, function: &'static str },
    /// A classic tracepoint; in the [`SYSCALLS`] category it is a syscall
    /// tracepoint (see [`Attach::is_syscall_tracepoint`]).
    Tracepoint { program: &'static str, category: &'static str, name: &'static str },
    RawTracepoint { program: &'static str, name: &'static str },
    /// A raw tracepoint with BTF-typed arguments (`tp_btf`).
    BtfTracepoint { program: &'static str, name: &'static str },
    /// Covered by another hook's program (a tracepoint that sees the same thing).
    Via { hook: &'static str },
    /// Not needed when `hook` got one of `modes` (its program does this
    /// one's job), so that a fallback pair is attached only when it is the
    /// fallback.
    CoveredBy { hook: &'static str, modes: &'static [Mode] },
    /// No program: userspace infers from procfs.
    Inferred { source: &'static str },
}

impl Attach {
    /// The mechanism this candidate uses; `None` for `Via` (it takes the
    /// other hook's).
    pub fn mode(&self) -> Option<Mode> {
        match self {
            Attach::Fentry { .. } => Some(Mode::Fentry),
            Attach::FexitSyscall { .. } => Some(Mode::Fexit),
            Attach::Kprobe { .. } => Some(Mode::Kprobe),
            Attach::Tracepoint { .. } => Some(Mode::Tracepoint),
            Attach::RawTracepoint { .. } => Some(Mode::RawTracepoint),
            Attach::BtfTracepoint { .. } => Some(Mode::BtfTracepoint),
            Attach::Via { .. } | Attach::CoveredBy { .. } => None,
            Attach::Inferred { .. } => Some(Mode::Inferred),
        }
    }

    /// A `syscalls:` tracepoint: while one is attached, every task's
    /// syscalls take the kernel's slow path (see [`SYSCALL_TRACEPOINTS_OFF`]).
    pub fn is_syscall_tracepoint(&self) -> bool {
        matches!(self, Attach::Tracepoint { category: SYSCALLS, .. })
    }

    /// Whether this candidate attaches a program of the hook's own (not
    /// another hook's, and not userspace inference).
    pub fn has_program(&self) -> bool {
        !matches!(self, Attach::Via { .. } | Attach::CoveredBy { .. } | Attach::Inferred { .. })
    }
}

/// The tracepoint category of syscall entries and exits.
pub const SYSCALLS: &str = "syscalls";

/// What a hook lets the rest of the tracer see, when one of its own
/// programs is attached (not when it goes `Via` another hook's program or
/// is `Inferred`). The loader tells the kernel side, and `run` the
/// diagnosis, from these rather than from hook names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sees {
    /// A connect as `tcp_connect` is called (`setting::CONNECT_HOOKED`).
    Connects,
    /// A followed probe's response bytes (`setting::RESPONSE_HOOKED`,
    /// `ProbeSettings::responses_observed`); the page-fragment limitation
    /// is reported on this hook.
    Responses,
    /// IPVS connections as they are made, as opposed to inferred from the
    /// IPVS table afterwards (`setting::IPVS_HOOKED`, `ipvs_observed`).
    /// Its kprobe reads the ip_vs module's structs: without the module's
    /// BTF it is not tried.
    IpvsConnections,
}

pub struct HookSpec {
    pub name: &'static str,
    /// The parts of the product that need it (the first is reported).
    pub groups: &'static [Group],
    /// Best first.
    pub candidates: &'static [Attach],
    /// Without it the group cannot work: loading fails.
    pub required: bool,
    /// What it lets the tracer see beyond the states its group needs.
    pub sees: Option<Sees>,
    /// The hook this one is the helper half of: reports name that one only.
    pub half_of: Option<&'static str>,
}

impl HookSpec {
    /// Fields most rows leave alone.
    const PLAIN: HookSpec =
        HookSpec { name: "", groups: &[], candidates: &[], required: false, sees: None, half_of: None };

    /// The row of the hook named `name`.
    pub fn named(name: &str) -> Option<&'static HookSpec> {
        HOOKS.iter().find(|h| h.name == name)
    }

    /// The candidate that attaches with `mode` (a row has at most one per
    /// mechanism); `None` when `mode` came from another hook (`Via`,
    /// `CoveredBy`).
    pub fn candidate(&self, mode: Mode) -> Option<&'static Attach> {
        self.candidates.iter().find(|c| c.mode() == Some(mode))
    }

    /// Whether a hook of this row that got `mode` runs a program of its own.
    pub fn own_program(&self, mode: Option<Mode>) -> bool {
        mode.and_then(|m| self.candidate(m)).is_some_and(Attach::has_program)
    }
}

pub const HOOKS: &[HookSpec] = &[
    HookSpec {
        name: "tcp_state",
        groups: &[Group::Probe],
        candidates: &[
            Attach::BtfTracepoint { program: "btf_tp_inet_sock_set_state", name: "inet_sock_set_state" },
            Attach::RawTracepoint { program: "raw_tp_inet_sock_set_state", name: "inet_sock_set_state" },
            Attach::Tracepoint { program: "tp_inet_sock_set_state", category: "sock", name: "inet_sock_set_state" },
        ],
        required: true,
        ..HookSpec::PLAIN
    },
    HookSpec {
        name: "tcp_connect",
        groups: &[Group::Probe],
        candidates: &[
            Attach::Fentry { program: "fentry_tcp_connect", function: "tcp_connect" },
            Attach::Kprobe { program: "kprobe_tcp_connect", function: "tcp_connect" },
            Attach::Via { hook: "tcp_state" },
        ],
        required: true,
        sees: Some(Sees::Connects),
        ..HookSpec::PLAIN
    },
    HookSpec {
        name: "tcp_rcv_state_process",
        groups: &[Group::Probe],
        candidates: &[
            Attach::Fentry { program: "fentry_tcp_rcv_state_process", function: "tcp_rcv_state_process" },
            Attach::Kprobe { program: "kprobe_tcp_rcv_state_process", function: "tcp_rcv_state_process" },
            Attach::Via { hook: "tcp_state" },
        ],
        required: false,
        ..HookSpec::PLAIN
    },
    HookSpec {
        // Every read from a TCP socket (tcp_recvmsg, after each segment it
        // copies): a followed probe's first response bytes, their time and
        // status line. Without it a probe's close still says who closed
        // and what was acknowledged.
        name: "tcp_recvmsg",
        groups: &[Group::Probe],
        candidates: &[
            Attach::BtfTracepoint { program: "btf_tp_tcp_rcv_space_adjust", name: "tcp_rcv_space_adjust" },
            Attach::RawTracepoint { program: "raw_tp_tcp_rcv_space_adjust", name: "tcp_rcv_space_adjust" },
        ],
        required: false,
        sees: Some(Sees::Responses),
        ..HookSpec::PLAIN
    },
    HookSpec {
        // Every packet the kernel frees as dropped: a tracked probe's
        // (either direction) is reported with where and why.
        name: "packet_drop",
        groups: &[Group::Probe],
        candidates: &[
            Attach::BtfTracepoint { program: "btf_tp_kfree_skb", name: "kfree_skb" },
            Attach::RawTracepoint { program: "raw_tp_kfree_skb", name: "kfree_skb" },
            Attach::Tracepoint { program: "tp_kfree_skb", category: "skb", name: "kfree_skb" },
        ],
        required: false,
        ..HookSpec::PLAIN
    },
    HookSpec {
        name: "tcp_retransmit",
        groups: &[Group::Probe],
        candidates: &[
            Attach::RawTracepoint { program: "raw_tp_tcp_retransmit_skb", name: "tcp_retransmit_skb" },
            Attach::Tracepoint { program: "tp_tcp_retransmit_skb", category: "tcp", name: "tcp_retransmit_skb" },
        ],
        required: false,
        ..HookSpec::PLAIN
    },
    HookSpec {
        name: "tcp_receive_reset",
        groups: &[Group::Probe],
        candidates: &[
            // The raw state programs tell a refusal by the socket's error
            // at its close, so this tracepoint (once per reset on the
            // node) is needed only with the classic state tracepoint.
            Attach::CoveredBy { hook: "tcp_state", modes: &[Mode::BtfTracepoint, Mode::RawTracepoint] },
            Attach::RawTracepoint { program: "raw_tp_tcp_receive_reset", name: "tcp_receive_reset" },
            Attach::Tracepoint { program: "tp_tcp_receive_reset", category: "tcp", name: "tcp_receive_reset" },
        ],
        required: false,
        ..HookSpec::PLAIN
    },
    HookSpec {
        name: "ipvs_conn_new",
        groups: &[Group::Probe],
        candidates: &[
            Attach::Kprobe { program: "kprobe_ip_vs_conn_new", function: "ip_vs_conn_new" },
            Attach::Inferred { source: "/proc/net/ip_vs" },
        ],
        required: false,
        sees: Some(Sees::IpvsConnections),
        ..HookSpec::PLAIN
    },
    HookSpec {
        name: "runtime_exec",
        groups: &[Group::Exec],
        candidates: &[
            Attach::RawTracepoint { program: "raw_tp_sched_process_exec", name: "sched_process_exec" },
            Attach::Tracepoint { program: "tp_sched_process_exec", category: "sched", name: "sched_process_exec" },
        ],
        required: true,
        ..HookSpec::PLAIN
    },
    HookSpec {
        name: "runtime_fork",
        groups: &[Group::Exec],
        candidates: &[
            Attach::RawTracepoint { program: "raw_tp_sched_process_fork", name: "sched_process_fork" },
            Attach::Tracepoint { program: "tp_sched_process_fork", category: "sched", name: "sched_process_fork" },
        ],
        required: true,
        ..HookSpec::PLAIN
    },
    HookSpec {
        name: "clone_failed",
        groups: &[Group::Exec],
        candidates: &[
            Attach::FexitSyscall { program: "fexit_sys_clone", syscall: "clone" },
            Attach::Tracepoint { program: "tp_sys_exit_clone", category: SYSCALLS, name: "sys_exit_clone" },
        ],
        required: false,
        ..HookSpec::PLAIN
    },
    HookSpec {
        name: "clone3_failed",
        groups: &[Group::Exec],
        candidates: &[
            Attach::FexitSyscall { program: "fexit_sys_clone3", syscall: "clone3" },
            Attach::Tracepoint { program: "tp_sys_exit_clone3", category: SYSCALLS, name: "sys_exit_clone3" },
        ],
        required: false,
        ..HookSpec::PLAIN
    },
    HookSpec {
        name: "fork_failed",
        groups: &[Group::Exec],
        candidates: &[
            Attach::FexitSyscall { program: "fexit_sys_fork", syscall: "fork" },
            Attach::Tracepoint { program: "tp_sys_exit_fork", category: SYSCALLS, name: "sys_exit_fork" },
        ],
        required: false,
        ..HookSpec::PLAIN
    },
    HookSpec {
        name: "vfork_failed",
        groups: &[Group::Exec],
        candidates: &[
            Attach::FexitSyscall { program: "fexit_sys_vfork", syscall: "vfork" },
            Attach::Tracepoint { program: "tp_sys_exit_vfork", category: SYSCALLS, name: "sys_exit_vfork" },
        ],
        required: false,
        ..HookSpec::PLAIN
    },
    HookSpec {
        name: "setns_failed",
        groups: &[Group::Exec],
        candidates: &[
            Attach::FexitSyscall { program: "fexit_sys_setns", syscall: "setns" },
            Attach::Tracepoint { program: "tp_sys_exit_setns", category: SYSCALLS, name: "sys_exit_setns" },
        ],
        required: false,
        ..HookSpec::PLAIN
    },
    HookSpec {
        // The tracepoint fallback's half that remembers the namespace type;
        // the fexit program reads it from the syscall's registers instead.
        name: "setns_enter",
        groups: &[Group::Exec],
        candidates: &[
            Attach::CoveredBy { hook: "setns_failed", modes: &[Mode::Fexit] },
            Attach::Tracepoint { program: "tp_sys_enter_setns", category: SYSCALLS, name: "sys_enter_setns" },
        ],
        required: false,
        half_of: Some("setns_failed"),
        ..HookSpec::PLAIN
    },
    HookSpec {
        name: "process_exit",
        // Also reports OOM victims' exits.
        groups: &[Group::Exec, Group::Node],
        candidates: &[
            Attach::RawTracepoint { program: "raw_tp_sched_process_exit", name: "sched_process_exit" },
            Attach::Tracepoint { program: "tp_sched_process_exit", category: "sched", name: "sched_process_exit" },
        ],
        required: true,
        ..HookSpec::PLAIN
    },
    HookSpec {
        name: "fatal_signal",
        groups: &[Group::Exec],
        candidates: &[
            Attach::RawTracepoint { program: "raw_tp_signal_generate", name: "signal_generate" },
            Attach::Tracepoint { program: "tp_signal_generate", category: "signal", name: "signal_generate" },
        ],
        required: false,
        ..HookSpec::PLAIN
    },
    HookSpec {
        name: "oom_kill",
        groups: &[Group::Node],
        candidates: &[Attach::Tracepoint { program: "tp_mark_victim", category: "oom", name: "mark_victim" }],
        required: true,
        ..HookSpec::PLAIN
    },
];

/// Why a hook has no syscall tracepoint when they are turned off.
pub const SYSCALL_TRACEPOINTS_OFF: &str =
    "syscall tracepoints are off (--syscall-tracepoints off, the daemon's default): they would slow every syscall on the node";

//! Loads the eBPF object and attaches each hook with the best mechanism the
//! running kernel accepts, in order fentry, kprobe, tracepoint, and reports
//! what every hook got and why better ones failed.
//!
//! The hook table ([`HOOKS`]) is data: adding a hook means adding a row and
//! its program in `tracer-ebpf`.

use std::fmt;

use anyhow::{Context, Result, anyhow, bail};
use aya::{
    Btf, Ebpf, EbpfLoader,
    maps::{Array, HashMap, MapData, PerCpuArray, PerCpuHashMap, RingBuf},
    programs::{BtfTracePoint, FEntry, FExit, KProbe, RawTracePoint, TracePoint},
};
use serde::Serialize;
use tracer_common::{
    CommKey, Config, DestKey, HostNamespaces, NO_FIELD, PROBER_COMMS_MAX, ProbeSlot, ProbeSock, ProberComms, ProcessOffsets, TASK_COMM_LEN, counter,
    probe_sock, setting,
};

use crate::kernel::{
    btf::{KernelBtf, ipvs_param_offsets},
    memory::DirectMap,
    tracefs::{self, Format},
};

/// The eBPF object, built from `tracer-ebpf` by this crate's build script.
static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/tracer-ebpf"));

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
}

pub struct HookSpec {
    pub name: &'static str,
    /// The parts of the product that need it (the first is reported).
    pub groups: &'static [Group],
    /// Best first.
    pub candidates: &'static [Attach],
    /// Without it the group cannot work: loading fails.
    pub required: bool,
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
    },
    HookSpec {
        name: "tcp_retransmit",
        groups: &[Group::Probe],
        candidates: &[
            Attach::RawTracepoint { program: "raw_tp_tcp_retransmit_skb", name: "tcp_retransmit_skb" },
            Attach::Tracepoint { program: "tp_tcp_retransmit_skb", category: "tcp", name: "tcp_retransmit_skb" },
        ],
        required: false,
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
    },
    HookSpec {
        name: "ipvs_conn_new",
        groups: &[Group::Probe],
        candidates: &[
            Attach::Kprobe { program: "kprobe_ip_vs_conn_new", function: "ip_vs_conn_new" },
            Attach::Inferred { source: "/proc/net/ip_vs" },
        ],
        required: false,
    },
    HookSpec {
        name: "runtime_exec",
        groups: &[Group::Exec],
        candidates: &[
            Attach::RawTracepoint { program: "raw_tp_sched_process_exec", name: "sched_process_exec" },
            Attach::Tracepoint { program: "tp_sched_process_exec", category: "sched", name: "sched_process_exec" },
        ],
        required: true,
    },
    HookSpec {
        name: "runtime_fork",
        groups: &[Group::Exec],
        candidates: &[
            Attach::RawTracepoint { program: "raw_tp_sched_process_fork", name: "sched_process_fork" },
            Attach::Tracepoint { program: "tp_sched_process_fork", category: "sched", name: "sched_process_fork" },
        ],
        required: true,
    },
    HookSpec {
        name: "clone_failed",
        groups: &[Group::Exec],
        candidates: &[
            Attach::FexitSyscall { program: "fexit_sys_clone", syscall: "clone" },
            Attach::Tracepoint { program: "tp_sys_exit_clone", category: "syscalls", name: "sys_exit_clone" },
        ],
        required: false,
    },
    HookSpec {
        name: "clone3_failed",
        groups: &[Group::Exec],
        candidates: &[
            Attach::FexitSyscall { program: "fexit_sys_clone3", syscall: "clone3" },
            Attach::Tracepoint { program: "tp_sys_exit_clone3", category: "syscalls", name: "sys_exit_clone3" },
        ],
        required: false,
    },
    HookSpec {
        name: "fork_failed",
        groups: &[Group::Exec],
        candidates: &[
            Attach::FexitSyscall { program: "fexit_sys_fork", syscall: "fork" },
            Attach::Tracepoint { program: "tp_sys_exit_fork", category: "syscalls", name: "sys_exit_fork" },
        ],
        required: false,
    },
    HookSpec {
        name: "vfork_failed",
        groups: &[Group::Exec],
        candidates: &[
            Attach::FexitSyscall { program: "fexit_sys_vfork", syscall: "vfork" },
            Attach::Tracepoint { program: "tp_sys_exit_vfork", category: "syscalls", name: "sys_exit_vfork" },
        ],
        required: false,
    },
    HookSpec {
        name: "setns_failed",
        groups: &[Group::Exec],
        candidates: &[
            Attach::FexitSyscall { program: "fexit_sys_setns", syscall: "setns" },
            Attach::Tracepoint { program: "tp_sys_exit_setns", category: "syscalls", name: "sys_exit_setns" },
        ],
        required: false,
    },
    HookSpec {
        // The tracepoint fallback's half that remembers the namespace type;
        // the fexit program reads it from the syscall's registers instead.
        name: "setns_enter",
        groups: &[Group::Exec],
        candidates: &[
            Attach::CoveredBy { hook: "setns_failed", modes: &[Mode::Fexit] },
            Attach::Tracepoint { program: "tp_sys_enter_setns", category: "syscalls", name: "sys_enter_setns" },
        ],
        required: false,
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
    },
    HookSpec {
        name: "fatal_signal",
        groups: &[Group::Exec],
        candidates: &[
            Attach::RawTracepoint { program: "raw_tp_signal_generate", name: "signal_generate" },
            Attach::Tracepoint { program: "tp_signal_generate", category: "signal", name: "signal_generate" },
        ],
        required: false,
    },
    HookSpec {
        name: "oom_kill",
        groups: &[Group::Node],
        candidates: &[Attach::Tracepoint { program: "tp_mark_victim", category: "oom", name: "mark_victim" }],
        required: true,
    },
];

/// Why a hook has no syscall tracepoint when they are turned off.
pub const SYSCALL_TRACEPOINTS_OFF: &str =
    "syscall tracepoints are off (--syscall-tracepoints off, the daemon's default): they would slow every syscall on the node";

/// How a hook ended up attached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    Fentry,
    Fexit,
    Kprobe,
    // The JSON spelling is accepted too, as users copy it from `check`.
    #[value(alias = "raw_tracepoint")]
    RawTracepoint,
    #[value(alias = "btf_tracepoint", alias = "tp_btf")]
    BtfTracepoint,
    Tracepoint,
    Inferred,
}

impl Mode {
    pub const ALL: [Mode; 7] =
        [Mode::Fentry, Mode::Fexit, Mode::Kprobe, Mode::BtfTracepoint, Mode::RawTracepoint, Mode::Tracepoint, Mode::Inferred];
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::Fentry => "fentry",
            Mode::Fexit => "fexit",
            Mode::Kprobe => "kprobe",
            Mode::RawTracepoint => "raw_tracepoint",
            Mode::BtfTracepoint => "btf_tracepoint",
            Mode::Tracepoint => "tracepoint",
            Mode::Inferred => "inferred",
        })
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Failure {
    pub mode: Mode,
    pub target: String,
    pub error: String,
    /// Not tried because the user turned the mechanism off
    /// (`--syscall-tracepoints off`), as opposed to refused by the kernel.
    #[serde(skip)]
    pub turned_off: bool,
}

impl Failure {
    pub fn refused(mode: Mode, target: impl Into<String>, error: impl Into<String>) -> Self {
        Self { mode, target: target.into(), error: error.into(), turned_off: false }
    }

    pub fn syscall_tracepoint_off(target: impl Into<String>) -> Self {
        Self { mode: Mode::Tracepoint, target: target.into(), error: SYSCALL_TRACEPOINTS_OFF.into(), turned_off: true }
    }
}

/// What one hook got: the report `check` prints and `run` logs.
#[derive(Debug, Clone, Serialize)]
pub struct HookStatus {
    pub hook: &'static str,
    pub group: Group,
    /// `None`: nothing could attach.
    pub mode: Option<Mode>,
    pub target: Option<String>,
    /// Better mechanisms that were tried first, and why they failed.
    pub tried: Vec<Failure>,
    /// What the attached hook cannot do on this kernel, and why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limitation: Option<String>,
}

pub struct LoadOptions {
    pub groups: Vec<Group>,
    /// Mechanisms the loader may use (all by default); narrowing it lets a
    /// capable kernel exercise the fallbacks, as tests do.
    pub allowed_modes: Vec<Mode>,
    /// Whether a hook may fall back to a `syscalls:` tracepoint (see
    /// [`SYSCALL_TRACEPOINTS_OFF`]).
    pub syscall_tracepoints: bool,
    pub prober_comms: Vec<String>,
    /// Container runtime binaries whose process trees are traced.
    pub runtime_comms: Vec<String>,
    pub ringbuf_bytes: u32,
}

/// A program's attachment, held by the tracer: dropping it detaches the
/// program (aya's owned link types differ per program type).
type HeldLink = Box<dyn Send + Sync>;

/// A loaded, attached tracer. Dropping it detaches everything.
pub struct Tracer {
    /// Empty while paused. Before `ebpf`, so links go before their programs.
    links: Vec<HeldLink>,
    /// How each program was attached and to what, to attach it again on
    /// resume.
    attached: Vec<(Attach, String)>,
    ebpf: Ebpf,
    pub hooks: Vec<HookStatus>,
    ringbuf_bytes: u32,
    /// The running kernel's drop reason names (BTF), for the drop hook's
    /// records.
    pub drop_reasons: std::collections::BTreeMap<u32, String>,
}

impl Tracer {
    pub fn load(opts: &LoadOptions) -> Result<Self> {
        raise_memlock_limit();
        tracefs::ensure_mounted()?;
        // Parsed BTF takes tens of MiB: our parse lives only as long as the
        // offsets need it, and aya's one parse serves relocation and attach.
        let kernel_btf = KernelBtf::load()?;
        let (mut config, ipvs_problem, fragments_problem) = build_config(&kernel_btf, &opts.groups)?;
        let drop_reasons = kernel_btf.drop_reasons();
        drop(kernel_btf);
        config.prober_comms = ProberComms { task_comm: config.prober_comms.task_comm, ..prober_comms(&opts.prober_comms)? };
        let aya_btf = Btf::from_sys_fs().ok();
        let ringbuf_bytes = opts.ringbuf_bytes.next_power_of_two().max(4096);
        let mut ebpf = EbpfLoader::new()
            .btf(aya_btf.as_ref())
            .override_global("CONFIG", &config, true)
            .map_max_entries("EVENTS", ringbuf_bytes)
            .load(EBPF_OBJECT)
            .context("the kernel refused to create probe-tracer's eBPF maps")?;

        fill_comms(&mut ebpf, "RUNTIME_COMMS", "RUNTIME_COMM_FIRST_BYTES", &opts.runtime_comms)?;

        let mut hooks: Vec<HookStatus> = Vec::new();
        let (mut links, mut attached) = (Vec::new(), Vec::new());
        for spec in HOOKS.iter().filter(|h| h.groups.iter().any(|g| opts.groups.contains(g))) {
            let (mut status, link) = attach_hook(&mut ebpf, spec, aya_btf.as_ref(), &hooks, ipvs_problem.as_deref(), opts);
            if let (Some((how, link)), Some(target)) = (link, &status.target) {
                attached.push((how, target.clone()));
                links.push(link);
            }
            if spec.name == RESPONSE_HOOK && status.mode.is_some() {
                status.limitation = fragments_problem.as_ref().map(|why| format!("http_status is not read: {why}"));
            }
            if spec.required && status.mode.is_none() {
                let why = status.tried.iter().map(|f| format!("{} {}: {}", f.mode, f.target, f.error)).collect::<Vec<_>>().join("; ");
                return Err(anyhow!("hook {} could not be attached by any mechanism ({why})", spec.name));
            }
            hooks.push(status);
        }

        let connect_hooked = matches!(mode_of(&hooks, "tcp_connect"), Some(Mode::Fentry | Mode::Kprobe));
        let mut settings: Array<_, u32> =
            Array::try_from(ebpf.map_mut("SETTINGS").context("map SETTINGS missing")?)?;
        settings.set(setting::CONNECT_HOOKED, connect_hooked as u32, 0)?;
        settings.set(setting::IPVS_HOOKED, ipvs_observed(&hooks) as u32, 0)?;
        settings.set(setting::RESPONSE_HOOKED, mode_of(&hooks, RESPONSE_HOOK).is_some() as u32, 0)?;

        if std::env::var_os("PROBE_TRACER_VERIFIER_STATS").is_some() {
            // For whoever changes a program: how much the verifier walked
            // (5.16+), the budget that older kernels and emulation feel.
            for (name, program) in ebpf.programs() {
                if let Some(n) = program.info().ok().and_then(|i| i.verified_instruction_count()) {
                    eprintln!("verifier: {name} {n} instructions");
                }
            }
        }
        Ok(Self { links, attached, ebpf, hooks, ringbuf_bytes, drop_reasons })
    }

    /// Detaches every program, keeping them loaded and the maps as they
    /// are, so that [`Tracer::resume`] takes milliseconds, not a reload.
    /// What happens while paused is not seen: connections that change state
    /// meanwhile are lost to the tracer. For benchmarks (`run
    /// --pause-signals`), which compare attached and detached windows many
    /// times a minute without restarting.
    pub fn pause(&mut self) {
        self.links.clear();
    }

    /// Attaches again what [`Tracer::pause`] detached, each program with
    /// the mechanism it got at load.
    pub fn resume(&mut self) -> Result<()> {
        if self.links.is_empty() {
            for (how, target) in &self.attached {
                self.links.push(relink(&mut self.ebpf, how, target)?);
            }
        }
        Ok(())
    }

    pub fn hook_mode(&self, hook: &str) -> Option<Mode> {
        mode_of(&self.hooks, hook)
    }

    /// Whether IPVS connections are seen as they are made (the kprobe), as
    /// opposed to inferred from the IPVS table afterwards.
    pub fn ipvs_observed(&self) -> bool {
        ipvs_observed(&self.hooks)
    }

    /// The event ring buffer; call once.
    pub fn take_ring_buffer(&mut self) -> Result<RingBuf<MapData>> {
        let map = self.ebpf.take_map("EVENTS").context("ring buffer already taken")?;
        Ok(RingBuf::try_from(map)?)
    }

    /// Kernel-side drop counters, summed over CPUs.
    pub fn counters(&self) -> Result<KernelCounters> {
        let map: PerCpuArray<_, u64> =
            PerCpuArray::try_from(self.ebpf.map("COUNTERS").context("map COUNTERS missing")?)?;
        let sum = |i: u32| -> Result<u64> { Ok(map.get(&i, 0)?.iter().sum()) };
        let high_water = map.get(&counter::RINGBUF_HIGH_WATER, 0)?.iter().copied().max().unwrap_or(0);
        Ok(KernelCounters {
            ringbuf_full: sum(counter::RINGBUF_FULL)?,
            map_full: sum(counter::MAP_FULL)?,
            ringbuf_high_water: high_water,
            missed_runs: self.missed_runs(),
        })
    }

    /// Summed over every loaded program, from its fd's fdinfo: the kernel
    /// keeps the count whether or not BPF statistics are on, and aya's
    /// program info does not carry it.
    fn missed_runs(&self) -> Option<u64> {
        use std::os::fd::{AsFd, AsRawFd};
        let mut total = None;
        for (_, program) in self.ebpf.programs() {
            let Ok(fd) = program.fd() else { continue };
            let path = format!("/proc/self/fdinfo/{}", fd.as_fd().as_raw_fd());
            if let Some(n) = std::fs::read_to_string(path).ok().and_then(|t| fdinfo_field(&t, "recursion_misses")) {
                *total.get_or_insert(0) += n;
            }
        }
        total
    }

    /// Has the kernel count healthy probes per destination instead of
    /// sending a record for each (see `setting::ESTABLISHED_COUNTED`); read
    /// the counts with [`Tracer::established_counts`].
    pub fn count_established_in_kernel(&mut self) -> Result<()> {
        let mut settings: Array<_, u32> =
            Array::try_from(self.ebpf.map_mut("SETTINGS").context("map SETTINGS missing")?)?;
        settings.set(setting::ESTABLISHED_COUNTED, 1, 0)?;
        settings.set(setting::SLOW_ANSWER_MS, crate::diagnose::probe::SLOW_ANSWER_MS as u32, 0)?;
        Ok(())
    }

    /// Healthy probes the kernel has counted so far (cumulative), by
    /// destination, summed over CPUs.
    pub fn established_counts(&self) -> Result<Vec<((std::net::IpAddr, u16), u64)>> {
        let map: PerCpuHashMap<_, DestKey, u64> = PerCpuHashMap::try_from(
            self.ebpf.map("PROBE_ESTABLISHED").context("map PROBE_ESTABLISHED missing")?,
        )?;
        let mut counts = Vec::new();
        for entry in map.iter() {
            let (key, per_cpu) = entry?;
            let dest = (crate::events::ip(key.family, &key.daddr), key.dport);
            counts.push((dest, per_cpu.iter().sum()));
        }
        Ok(counts)
    }

    /// Prober connections the kernel tracks but has not reported yet (a
    /// connect is reported lazily: at ESTABLISHED, or with the first other
    /// record, such as the SYN retransmit after 1 s), connected within the
    /// last `max_age_ns`; older ones are leftovers of a missed close.
    pub fn unreported_probes(&self, now_ns: u64, max_age_ns: u64) -> Result<usize> {
        let unreported = |s: &ProbeSock| {
            s.flags & probe_sock::CONNECT_REPORTED == 0 && now_ns.saturating_sub(s.connect.ts_ns) < max_age_ns
        };
        let slots: Array<_, ProbeSlot> =
            Array::try_from(self.ebpf.map("PROBE_SLOTS").context("map PROBE_SLOTS missing")?)?;
        let mut n = 0;
        for slot in slots.iter() {
            let slot = slot?;
            n += usize::from(slot.skaddr != 0 && unreported(&slot.sock));
        }
        let socks: HashMap<_, u64, ProbeSock> =
            HashMap::try_from(self.ebpf.map("PROBE_SOCKS").context("map PROBE_SOCKS missing")?)?;
        for entry in socks.iter() {
            let (_, sock) = entry?;
            n += usize::from(unreported(&sock));
        }
        Ok(n)
    }

    /// Starts a new ring-buffer high-water period.
    pub fn reset_high_water(&mut self) -> Result<()> {
        let mut map: PerCpuArray<_, u64> =
            PerCpuArray::try_from(self.ebpf.map_mut("COUNTERS").context("map COUNTERS missing")?)?;
        let cpus = aya::util::nr_cpus().map_err(|(_, e)| e)?;
        map.set(counter::RINGBUF_HIGH_WATER, aya::maps::PerCpuValues::try_from(vec![0u64; cpus])?, 0)?;
        Ok(())
    }

    pub fn ringbuf_bytes(&self) -> u32 {
        self.ringbuf_bytes
    }
}

#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct KernelCounters {
    /// Events the ring buffer had no room for.
    pub ringbuf_full: u64,
    /// Sockets or pids the tracking maps could not take.
    pub map_full: u64,
    /// Most unread bytes seen in the ring buffer since the last reset.
    pub ringbuf_high_water: u64,
    /// Runs of our programs the kernel skipped because the same program was
    /// already running on that CPU (a softirq interrupting it, for one):
    /// events lost before any map or ring buffer saw them. None where the
    /// kernel does not count them (before 5.12).
    pub missed_runs: Option<u64>,
}

/// A `name:\tvalue` line of an fdinfo file.
fn fdinfo_field(text: &str, name: &str) -> Option<u64> {
    text.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(':')?.trim().parse().ok())
}

/// The hook that sees a followed probe's response.
const RESPONSE_HOOK: &str = "tcp_recvmsg";

/// Fills the offsets the programs need. Returns why the IPVS hook cannot
/// work, if it cannot (module not loaded, or its BTF lacks the struct), and
/// why a response's first bytes cannot be read from page fragments.
fn build_config(btf: &KernelBtf, groups: &[Group]) -> Result<(Config, Option<String>, Option<String>)> {
    let mut config = Config::MISSING;
    let (mut ipvs_problem, mut fragments_problem) = (None, None);
    if groups.contains(&Group::Probe) {
        // A tracepoint whose format cannot be read keeps MISSING offsets; its
        // attach then fails and is reported like any other failure.
        if let Ok(f) = Format::load("sock", "inet_sock_set_state") {
            config.set_state = f.sock_offsets().context("sock:inet_sock_set_state has an unexpected format")?;
        }
        if let Ok(f) = Format::load("tcp", "tcp_retransmit_skb") {
            config.retransmit = f.sock_offsets().context("tcp:tcp_retransmit_skb has an unexpected format")?;
        }
        if let Ok(f) = Format::load("tcp", "tcp_receive_reset") {
            config.reset = f.sock_offsets().context("tcp:tcp_receive_reset has an unexpected format")?;
        }
        config.sock = btf.sock_offsets()?;
        config.prober_comms.task_comm = btf.current_task_comm();
        config.tcp_sock = btf.tcp_sock_offsets()?;
        if let Ok(f) = Format::load("skb", "kfree_skb") {
            config.drop.tp_skbaddr = f.offset_or_missing("skbaddr");
            config.drop.tp_location = f.offset_or_missing("location");
            config.drop.tp_reason = f.offset_or_missing("reason");
            config.drop.has_reason = u32::from(config.drop.tp_reason != NO_FIELD);
        }
        btf.drop_offsets(&mut config.drop)?;
        config.host_namespaces = host_namespaces(btf);
        config.skb = btf.skb_offsets()?;
        config.skb.page_shift = page_shift();
        match crate::kernel::memory::direct_map() {
            Ok(DirectMap::Variables { page_offset_base_at, vmemmap_base_at }) => {
                config.skb.page_offset_base_at = page_offset_base_at;
                config.skb.vmemmap_base_at = vmemmap_base_at;
            }
            Ok(DirectMap::Fixed { page_offset_base, vmemmap_base }) => {
                config.skb.page_offset_base = page_offset_base;
                config.skb.vmemmap_base = vmemmap_base;
            }
            Err(why) => {
                config.skb.page_struct_shift = NO_FIELD;
                fragments_problem = Some(why);
            }
        }
        match btf.module("ip_vs") {
            None => ipvs_problem = Some("the ip_vs module is not loaded (no /sys/kernel/btf/ip_vs)".to_string()),
            Some(ipvs) => match ipvs_param_offsets(&ipvs) {
                Ok(off) => config.ipvs = off,
                Err(e) => ipvs_problem = Some(format!("{e:#}")),
            },
        }
    }
    if groups.contains(&Group::Exec) || groups.contains(&Group::Node) {
        process_tracepoint_offsets(&mut config.process);
        btf.process_offsets(&mut config.process)?;
    }
    Ok((config, ipvs_problem, fragments_problem))
}

/// The namespaces a prober must be in: this process's, which are the
/// host's (the DaemonSet runs with hostPID and hostNetwork).
fn host_namespaces(btf: &KernelBtf) -> HostNamespaces {
    use std::os::unix::fs::MetadataExt;
    let (Ok(pid), Ok(net)) = (std::fs::metadata("/proc/self/ns/pid"), std::fs::metadata("/proc/self/ns/net")) else {
        return HostNamespaces::UNCHECKED;
    };
    let (skc_net, net_inum) = btf.netns_offsets();
    HostNamespaces { pidns_dev: pid.dev(), pidns_ino: pid.ino(), netns_ino: net.ino() as u32, skc_net, net_inum, _pad: 0 }
}

/// log2 of the page size.
fn page_shift() -> u32 {
    // SAFETY: sysconf has no preconditions.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if size > 0 && (size as u64).is_power_of_two() { (size as u64).trailing_zeros() } else { NO_FIELD }
}

/// The `--prober-comm` names as the kernel side checks them.
fn prober_comms(names: &[String]) -> Result<ProberComms> {
    if names.len() > PROBER_COMMS_MAX {
        bail!("at most {PROBER_COMMS_MAX} --prober-comm names are supported ({} given)", names.len());
    }
    let mut comms = ProberComms::NONE;
    for (slot, name) in comms.names.iter_mut().zip(names) {
        slot.words = ProberComms::words(&comm_key(name));
        slot.mask = ProberComms::mask(&comm_key(name));
    }
    comms.count = names.len() as u32;
    Ok(comms)
}

/// Fills a comm map and the array of its names' first bytes, which the
/// kernel checks before the hash lookup.
fn fill_comms(ebpf: &mut Ebpf, map: &str, first_bytes_map: &str, names: &[String]) -> Result<()> {
    let keys: Vec<CommKey> = names.iter().map(|n| comm_key(n)).collect();
    let mut comms: HashMap<_, CommKey, u8> =
        HashMap::try_from(ebpf.map_mut(map).with_context(|| format!("map {map} missing"))?)?;
    for (name, key) in names.iter().zip(&keys) {
        comms.insert(key, 1, 0).with_context(|| format!("cannot add {name} to {map}"))?;
    }
    let mut first: Array<_, u8> =
        Array::try_from(ebpf.map_mut(first_bytes_map).with_context(|| format!("map {first_bytes_map} missing"))?)?;
    for key in &keys {
        first.set(u32::from(key[0]), 1, 0).with_context(|| format!("cannot fill {first_bytes_map}"))?;
    }
    Ok(())
}

/// Tracepoint fields the process hooks read; a tracepoint whose format is
/// unreadable keeps MISSING offsets (its attach then fails and is reported).
fn process_tracepoint_offsets(off: &mut ProcessOffsets) {
    if let Ok(f) = Format::load("sched", "sched_process_exec") {
        off.exec_filename = f.offset_or_missing("filename");
    }
    if let Ok(f) = Format::load("sched", "sched_process_fork") {
        off.fork_child_pid = f.offset_or_missing("child_pid");
    }
    // Every syscalls:sys_exit_* record is (common fields, __syscall_nr, ret).
    if let Ok(f) = Format::load("syscalls", "sys_exit_clone") {
        off.sys_exit_ret = f.offset_or_missing("ret");
    }
    if let Ok(f) = Format::load("syscalls", "sys_enter_setns") {
        // Renamed from nstype to flags in 5.8.
        off.setns_nstype = f.field("flags").or_else(|| f.field("nstype")).map_or(NO_FIELD, |x| x.offset);
    }
    if let Ok(f) = Format::load("signal", "signal_generate") {
        off.sig_sig = f.offset_or_missing("sig");
        off.sig_errno = f.offset_or_missing("errno");
        off.sig_code = f.offset_or_missing("code");
        off.sig_comm = f.offset_or_missing("comm");
        off.sig_pid = f.offset_or_missing("pid");
        off.sig_result = f.offset_or_missing("result");
    }
    if let Ok(f) = Format::load("oom", "mark_victim") {
        off.oom_pid = f.offset_or_missing("pid");
        off.oom_total_vm = f.offset_or_missing("total_vm");
        off.oom_anon_rss = f.offset_or_missing("anon_rss");
        off.oom_file_rss = f.offset_or_missing("file_rss");
        off.oom_shmem_rss = f.offset_or_missing("shmem_rss");
        off.oom_comm = f.offset_or_missing("comm");
    }
}

fn attach_hook(
    ebpf: &mut Ebpf,
    spec: &HookSpec,
    btf: Option<&Btf>,
    earlier: &[HookStatus],
    ipvs_problem: Option<&str>,
    opts: &LoadOptions,
) -> (HookStatus, Option<(Attach, HeldLink)>) {
    let mut status =
        HookStatus { hook: spec.name, group: spec.groups[0], mode: None, target: None, tried: Vec::new(), limitation: None };
    for candidate in spec.candidates {
        // A disallowed mechanism is not tried at all (and not listed).
        if candidate.mode().is_some_and(|m| !opts.allowed_modes.contains(&m)) {
            continue;
        }
        // Listed, so that the hook report says why it is not attached.
        if let Attach::Tracepoint { category: "syscalls", name, .. } = *candidate
            && !opts.syscall_tracepoints
        {
            status.tried.push(Failure::syscall_tracepoint_off(format!("syscalls:{name}")));
            continue;
        }
        let (mode, target, result) = match *candidate {
            Attach::Fentry { program, function } => {
                (Mode::Fentry, function.to_string(), attach_fentry(ebpf, program, function, btf).map(Some))
            }
            Attach::FexitSyscall { program, syscall } => {
                let (function, result) = attach_fexit_syscall(ebpf, program, syscall, btf);
                (Mode::Fexit, function, result.map(Some))
            }
            Attach::Kprobe { program, function } => {
                let result = match (function, ipvs_problem) {
                    ("ip_vs_conn_new", Some(problem)) => Err(anyhow!("{problem}")),
                    _ => attach_kprobe(ebpf, program, function).map(Some),
                };
                (Mode::Kprobe, function.to_string(), result)
            }
            Attach::Tracepoint { program, category, name } => {
                (Mode::Tracepoint, format!("{category}:{name}"), attach_tracepoint(ebpf, program, category, name).map(Some))
            }
            Attach::RawTracepoint { program, name } => {
                (Mode::RawTracepoint, name.to_string(), attach_raw_tracepoint(ebpf, program, name).map(Some))
            }
            Attach::BtfTracepoint { program, name } => {
                (Mode::BtfTracepoint, name.to_string(), attach_btf_tracepoint(ebpf, program, name, btf).map(Some))
            }
            Attach::Via { hook } => {
                let other = earlier.iter().find(|h| h.hook == hook);
                match other.and_then(|h| h.mode.zip(h.target.clone())) {
                    Some((mode, target)) => (mode, target, Ok(None)),
                    None => (Mode::Tracepoint, hook.to_string(), Err(anyhow!("hook {hook} is not attached"))),
                }
            }
            Attach::CoveredBy { hook, modes } => {
                let other = earlier.iter().find(|h| h.hook == hook);
                match other.and_then(|h| h.mode.filter(|m| modes.contains(m)).zip(h.target.clone())) {
                    Some((mode, target)) => (mode, target, Ok(None)),
                    // Not an attach failure: the next candidate is the one needed.
                    None => continue,
                }
            }
            Attach::Inferred { source } => (Mode::Inferred, source.to_string(), Ok(None)),
        };

        match result {
            Ok(link) => {
                status.mode = Some(mode);
                status.target = Some(target);
                return (status, link.map(|l| (*candidate, l)));
            }
            Err(e) => status.tried.push(Failure::refused(mode, target, format!("{e:#}"))),
        }
    }
    (status, None)
}

/// Loads and attaches, unloading again if either step fails, so that the
/// hook's next candidate (or a retry under another name) starts clean.
/// aya's program types share no trait for these, hence the closures.
fn load_and_attach<P>(
    prog: &mut P,
    load: impl FnOnce(&mut P) -> Result<()>,
    attach: impl FnOnce(&mut P) -> Result<HeldLink>,
    unload: impl FnOnce(&mut P),
) -> Result<HeldLink> {
    let result = load(prog).and_then(|()| attach(prog));
    if result.is_err() {
        unload(prog);
    }
    result
}

fn attach_fentry(ebpf: &mut Ebpf, program: &str, function: &str, btf: Option<&Btf>) -> Result<HeldLink> {
    let btf = btf.ok_or_else(|| anyhow!("no kernel BTF"))?;
    let prog: &mut FEntry = program_mut(ebpf, program)?.try_into()?;
    load_and_attach(prog, |p| Ok(p.load(function, btf)?), link_fentry, |p| drop(p.unload()))
}

fn attach_fexit(ebpf: &mut Ebpf, program: &str, function: &str, btf: Option<&Btf>) -> Result<HeldLink> {
    let btf = btf.ok_or_else(|| anyhow!("no kernel BTF"))?;
    let prog: &mut FExit = program_mut(ebpf, program)?.try_into()?;
    load_and_attach(prog, |p| Ok(p.load(function, btf)?), link_fexit, |p| drop(p.unload()))
}

/// Attaches `program` to the function `syscall` enters the kernel through
/// (64-bit ABI only: 32-bit compat callers are not traced by fexit). Both
/// names take `const struct pt_regs *` and return long, so one program
/// fits either: x86's argument-less syscalls (fork, vfork) are aliases of
/// `__do_sys_NAME`, and only that name is in BTF.
fn attach_fexit_syscall(ebpf: &mut Ebpf, program: &str, syscall: &str, btf: Option<&Btf>) -> (String, Result<HeldLink>) {
    let prefix = match std::env::consts::ARCH {
        "x86_64" => "__x64_sys_",
        "aarch64" => "__arm64_sys_",
        arch => return (syscall.to_string(), Err(anyhow!("no syscall entry point naming known for {arch}"))),
    };
    let wrapper = format!("{prefix}{syscall}");
    let first = match attach_fexit(ebpf, program, &wrapper, btf) {
        Ok(link) => return (wrapper, Ok(link)),
        Err(e) => e,
    };
    let stub = format!("__do_sys_{syscall}");
    match attach_fexit(ebpf, program, &stub, btf) {
        Ok(link) => (stub, Ok(link)),
        Err(e) => (wrapper, Err(anyhow!("{first:#}; {stub}: {e:#}"))),
    }
}

fn attach_kprobe(ebpf: &mut Ebpf, program: &str, function: &str) -> Result<HeldLink> {
    let prog: &mut KProbe = program_mut(ebpf, program)?.try_into()?;
    load_and_attach(prog, |p| Ok(p.load()?), |p| link_kprobe(p, function), |p| drop(p.unload()))
}

fn attach_tracepoint(ebpf: &mut Ebpf, program: &str, category: &str, name: &str) -> Result<HeldLink> {
    if !tracefs::tracepoint_exists(category, name) {
        return Err(anyhow!("tracepoint {category}:{name} does not exist on this kernel"));
    }
    let prog: &mut TracePoint = program_mut(ebpf, program)?.try_into()?;
    load_and_attach(prog, |p| Ok(p.load()?), |p| link_tracepoint(p, category, name), |p| drop(p.unload()))
}

fn attach_raw_tracepoint(ebpf: &mut Ebpf, program: &str, name: &str) -> Result<HeldLink> {
    let prog: &mut RawTracePoint = program_mut(ebpf, program)?.try_into()?;
    load_and_attach(prog, |p| Ok(p.load()?), |p| link_raw_tracepoint(p, name), |p| drop(p.unload()))
}

fn attach_btf_tracepoint(ebpf: &mut Ebpf, program: &str, name: &str, btf: Option<&Btf>) -> Result<HeldLink> {
    let btf = btf.ok_or_else(|| anyhow!("no kernel BTF"))?;
    let prog: &mut BtfTracePoint = program_mut(ebpf, program)?.try_into()?;
    load_and_attach(prog, |p| Ok(p.load(name, btf)?), link_btf_tracepoint, |p| drop(p.unload()))
}

/// Attaches a program that is loaded already (see [`Tracer::resume`]); an
/// fentry or fexit program keeps the function it was loaded for (`target`).
fn relink(ebpf: &mut Ebpf, how: &Attach, target: &str) -> Result<HeldLink> {
    match *how {
        Attach::Fentry { program, .. } => relink_tracing(
            program_mut(ebpf, program)?.try_into()?,
            link_fentry,
            |p: &mut FEntry, btf| Ok(p.unload().and_then(|()| p.load(target, btf))?),
        ),
        Attach::FexitSyscall { program, .. } => relink_tracing(
            program_mut(ebpf, program)?.try_into()?,
            link_fexit,
            |p: &mut FExit, btf| Ok(p.unload().and_then(|()| p.load(target, btf))?),
        ),
        Attach::Kprobe { program, function } => link_kprobe(program_mut(ebpf, program)?.try_into()?, function),
        Attach::Tracepoint { program, category, name } => {
            link_tracepoint(program_mut(ebpf, program)?.try_into()?, category, name)
        }
        Attach::RawTracepoint { program, name } => link_raw_tracepoint(program_mut(ebpf, program)?.try_into()?, name),
        Attach::BtfTracepoint { program, name } => relink_tracing(
            program_mut(ebpf, program)?.try_into()?,
            link_btf_tracepoint,
            |p: &mut BtfTracePoint, btf| Ok(p.unload().and_then(|()| p.load(name, btf))?),
        ),
        Attach::Via { .. } | Attach::CoveredBy { .. } | Attach::Inferred { .. } => {
            Err(anyhow!("{how:?} has no program of its own to attach"))
        }
    }
}

/// Before 5.13 the kernel drops a tracing program's target at its first
/// attach, so a second attach fails (ENOENT): the program is then loaded
/// again (verified again, seconds under emulation) and attached.
fn relink_tracing<P>(
    prog: &mut P,
    link: fn(&mut P) -> Result<HeldLink>,
    reload: impl FnOnce(&mut P, &Btf) -> Result<()>,
) -> Result<HeldLink> {
    let first = match link(prog) {
        Ok(l) => return Ok(l),
        Err(e) => e,
    };
    let btf = Btf::from_sys_fs().context("reading the kernel's BTF to load a program again")?;
    reload(prog, &btf)
        .and_then(|()| link(prog))
        .map_err(|e| anyhow!("{first:#}; loading it again: {e:#}"))
}

// The link, taken from aya's per-program list so that the tracer decides
// when it is dropped (detached).
fn link_fentry(p: &mut FEntry) -> Result<HeldLink> {
    let id = p.attach()?;
    Ok(Box::new(p.take_link(id)?))
}

fn link_fexit(p: &mut FExit) -> Result<HeldLink> {
    let id = p.attach()?;
    Ok(Box::new(p.take_link(id)?))
}

fn link_btf_tracepoint(p: &mut BtfTracePoint) -> Result<HeldLink> {
    let id = p.attach()?;
    Ok(Box::new(p.take_link(id)?))
}

fn link_kprobe(p: &mut KProbe, function: &str) -> Result<HeldLink> {
    let id = p.attach(function, 0)?;
    Ok(Box::new(p.take_link(id)?))
}

fn link_tracepoint(p: &mut TracePoint, category: &str, name: &str) -> Result<HeldLink> {
    let id = p.attach(category, name)?;
    Ok(Box::new(p.take_link(id)?))
}

fn link_raw_tracepoint(p: &mut RawTracePoint, name: &str) -> Result<HeldLink> {
    let id = p.attach(name)?;
    Ok(Box::new(p.take_link(id)?))
}

fn mode_of(hooks: &[HookStatus], hook: &str) -> Option<Mode> {
    hooks.iter().find(|h| h.hook == hook).and_then(|h| h.mode)
}

/// One definition for the kernel side (whether to keep the reply-tuple map)
/// and the correlator (observed or inferred diversions).
fn ipvs_observed(hooks: &[HookStatus]) -> bool {
    mode_of(hooks, "ipvs_conn_new") == Some(Mode::Kprobe)
}

fn program_mut<'a>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut aya::programs::Program> {
    ebpf.program_mut(name).ok_or_else(|| anyhow!("program {name} missing from the eBPF object"))
}

/// A `comm` as the kernel stores it: at most 15 bytes and NUL-padded.
pub fn comm_key(name: &str) -> CommKey {
    let mut key = [0u8; TASK_COMM_LEN];
    let bytes = name.as_bytes();
    let n = bytes.len().min(TASK_COMM_LEN - 1);
    key[..n].copy_from_slice(&bytes[..n]);
    key
}

/// Kernels before 5.11 charge BPF maps to RLIMIT_MEMLOCK.
fn raise_memlock_limit() {
    let rlim = libc::rlimit { rlim_cur: libc::RLIM_INFINITY, rlim_max: libc::RLIM_INFINITY };
    // SAFETY: setrlimit with a valid pointer; failure only matters on old kernels.
    unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &rlim) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prober_comms_are_nul_padded_words_and_at_most_sixteen() {
        let comms = prober_comms(&["kubelet".into(), "a".into()]).unwrap();
        assert_eq!(comms.count, 2);
        assert_eq!(comms.names[0].words, [u64::from_ne_bytes(*b"kubelet\0"), 0]);
        assert_eq!(comms.names[1].words, [u64::from_ne_bytes(*b"a\0\0\0\0\0\0\0"), 0]);
        assert_eq!(comms.names[2].words, [0, 0]);
        // The name and its NUL must match; what a comm loaded in place
        // holds after them must not matter.
        assert_eq!(comms.names[0].mask, [u64::MAX, 0]);
        assert_eq!(comms.names[1].mask, [0xffff, 0]);
        let stale = [u64::from_ne_bytes(*b"a\0stale!"), u64::from_ne_bytes(*b"garbage\0")];
        let mask = comms.names[1].mask;
        assert_eq!([stale[0] & mask[0], stale[1] & mask[1]], comms.names[1].words);
        let long = prober_comms(&["fifteen-chars-x".into()]).unwrap();
        assert_eq!(long.names[0].mask, [u64::MAX, u64::MAX]);
        let many: Vec<String> = (0..17).map(|i| format!("p{i}")).collect();
        let e = prober_comms(&many).unwrap_err().to_string();
        assert!(e.contains("at most 16 --prober-comm"), "{e}");
    }

    #[test]
    fn the_drop_filter_slot_of_header_bytes_is_the_tracked_tuples() {
        use tracer_common::{drop_filter_slot, drop_filter_slot_v4};
        // What the state program counts in (a socket's destination) and
        // what the drop hook looks up (a header's four address bytes).
        let mut v4 = [0u8; 16];
        v4[..4].copy_from_slice(&[10, 200, 1, 2]);
        assert_eq!(drop_filter_slot(2, &v4, 8080), drop_filter_slot_v4([10, 200, 1, 2], 8080));
        let mut mapped = [0u8; 16];
        mapped[10..].copy_from_slice(&[0xff, 0xff, 10, 200, 1, 2]);
        assert_eq!(drop_filter_slot(10, &mapped, 8080), drop_filter_slot_v4([10, 200, 1, 2], 8080));
        assert_ne!(drop_filter_slot_v4([10, 200, 1, 2], 8080), drop_filter_slot_v4([10, 200, 1, 2], 8081));
    }

    #[test]
    fn missed_runs_are_read_from_fdinfo_by_exact_name() {
        let fdinfo = "pos:\t0\nprog_type:\t17\nprog_id:\t840\nrun_cnt:\t0\nrecursion_misses:\t3\n";
        assert_eq!(fdinfo_field(fdinfo, "recursion_misses"), Some(3));
        assert_eq!(fdinfo_field("prog_type:\t17\n", "recursion_misses"), None);
        assert_eq!(fdinfo_field(fdinfo, "recursion"), None);
    }

    #[test]
    fn comm_key_truncates_like_the_kernel() {
        assert_eq!(&comm_key("kubelet")[..8], b"kubelet\0");
        let long = comm_key("a-very-long-process-name");
        assert_eq!(&long[..15], b"a-very-long-pro");
        assert_eq!(long[15], 0);
    }

    #[test]
    fn every_hook_has_a_candidate_and_via_points_backwards() {
        for (i, spec) in HOOKS.iter().enumerate() {
            assert!(!spec.candidates.is_empty(), "{}", spec.name);
            for c in spec.candidates {
                if let Attach::Via { hook } | Attach::CoveredBy { hook, .. } = c {
                    assert!(HOOKS[..i].iter().any(|h| h.name == *hook), "{} via {hook}", spec.name);
                }
            }
        }
    }
}

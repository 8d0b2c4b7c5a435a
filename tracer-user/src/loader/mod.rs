//! Loads the eBPF object and attaches each hook with the best mechanism the
//! running kernel accepts, in order fentry, kprobe, tracepoint, and reports
//! what every hook got and why better ones failed.
//!
//! The hook table is in [`hooks`]: adding a hook means adding a row there
//! and its program in `tracer-ebpf`.

use std::fmt;

use anyhow::{Context, Result, anyhow};
use aya::{
    Btf, Ebpf, EbpfLoader,
    maps::{Array, HashMap, MapData, PerCpuArray, PerCpuHashMap, RingBuf},
};
use serde::{Deserialize, Serialize};
use tracer_common::{
    COUNTED_LRU_MAPS, DestKey, ProbeSlot, ProbeSock, ProberComms, ReplyKey, counter,
    probe_sock, setting, tracked_map,
};

use crate::kernel::{
    btf::KernelBtf,
    tracefs::{self},
};

mod attach;
mod config;
mod hooks;

use attach::{attach_hook, relink};
use config::{build_config, fill_comms, prober_comms};
// Only the tests below name it.
#[cfg(test)]
use config::comm_key;
pub use config::IpvsProblem;
pub use hooks::{Attach, Group, HOOKS, HookSpec, SYSCALL_TRACEPOINTS_OFF, SYSCALLS, Sees};


/// The eBPF object, built from `tracer-ebpf` by this crate's build script.
static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/tracer-ebpf"));

/// How a hook ended up attached (the attach mechanism): in `check`, in
/// `--force-mode`, and on every event its program sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
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
    /// Why, as far as the loader can tell (`check` explains it in words).
    #[serde(skip)]
    pub cause: Cause,
}

/// Why a mechanism did not give a hook its attachment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// Not tried because the user turned the mechanism off
    /// (`--syscall-tracepoints off`), as opposed to refused by the kernel.
    TurnedOff,
    /// The kernel refused the program with EPERM (even for root: a
    /// security policy such as lockdown or the BPF LSM).
    PermissionDenied,
    /// The kernel has no kprobe PMU ([`KPROBE_PMU`] is missing).
    NoKprobePmu,
    /// The program reads the ip_vs module's structs and the module is not
    /// loaded: not tried.
    IpvsNotLoaded,
    /// Anything else: the error says what.
    Other,
}

/// Where the kernel's kprobe PMU lives; aya reads its `type` to attach a kprobe.
pub const KPROBE_PMU: &str = "/sys/bus/event_source/devices/kprobe";

/// How an errno of EPERM reads in the loader's errors (aya keeps the
/// `io::Error`'s text; an fexit error joins two attempts' texts).
const EPERM_TEXT: &str = "Operation not permitted";

impl Cause {
    /// The cause of `mode`'s refusal whose error is `error`, one of the
    /// loader's own texts (a kprobe's names the PMU it could not read).
    fn of_error(mode: Mode, error: &str) -> Self {
        if mode == Mode::Kprobe && error.contains(KPROBE_PMU) {
            Cause::NoKprobePmu
        } else if error.contains(EPERM_TEXT) {
            Cause::PermissionDenied
        } else {
            Cause::Other
        }
    }
}

impl Failure {
    pub fn refused(mode: Mode, target: impl Into<String>, error: impl Into<String>) -> Self {
        let error = error.into();
        Self { mode, target: target.into(), cause: Cause::of_error(mode, &error), error }
    }

    /// What the kernel said when `mode` was tried; the ip_vs problem
    /// (an [`IpvsProblem`] in the chain) is told from its type.
    fn from_error(mode: Mode, target: String, e: &anyhow::Error) -> Self {
        match e.downcast_ref::<IpvsProblem>() {
            Some(IpvsProblem::NotLoaded) => Self::ipvs_not_loaded(mode, target),
            _ => Self::refused(mode, target, format!("{e:#}")),
        }
    }

    /// Not tried: the ip_vs module is not loaded.
    pub fn ipvs_not_loaded(mode: Mode, target: impl Into<String>) -> Self {
        Self { mode, target: target.into(), error: IpvsProblem::NotLoaded.to_string(), cause: Cause::IpvsNotLoaded }
    }

    pub fn syscall_tracepoint_off(target: impl Into<String>) -> Self {
        Self { mode: Mode::Tracepoint, target: target.into(), error: SYSCALL_TRACEPOINTS_OFF.into(), cause: Cause::TurnedOff }
    }

    /// Not tried because the user turned the mechanism off, as opposed to
    /// refused by the kernel.
    pub fn turned_off(&self) -> bool {
        self.cause == Cause::TurnedOff
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

impl HookStatus {
    /// Its row in the hook table ([`HOOKS`]).
    pub fn spec(&self) -> Option<&'static HookSpec> {
        HookSpec::named(self.hook)
    }

    /// Whether it lets the tracer see `what` on this kernel: its row says
    /// it does, and one of its own programs is attached.
    pub fn sees(&self, what: Sees) -> bool {
        self.spec().is_some_and(|s| s.sees == Some(what) && s.own_program(self.mode))
    }

    /// Attached to a `syscalls:` tracepoint of its own.
    pub fn on_syscall_tracepoint(&self) -> bool {
        self.mode.and_then(|m| self.spec()?.candidate(m)).is_some_and(Attach::is_syscall_tracepoint)
    }

    /// The helper half of another hook (`half_of`): reports that list
    /// hooks by what they cost or miss name the other one only.
    pub fn is_helper(&self) -> bool {
        self.spec().is_some_and(|s| s.half_of.is_some())
    }
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
    /// What the LRU tracking maps evicted, as confirmed so far.
    evictions: std::cell::Cell<Evictions>,
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
            let (mut status, link) = attach_hook(&mut ebpf, spec, aya_btf.as_ref(), &hooks, ipvs_problem.as_ref(), opts);
            if let (Some((how, link)), Some(target)) = (link, &status.target) {
                attached.push((how, target.clone()));
                links.push(link);
            }
            if status.sees(Sees::Responses) {
                status.limitation = fragments_problem.as_ref().map(|why| format!("http_status is not read: {why}"));
            }
            if spec.required && status.mode.is_none() {
                let why = status.tried.iter().map(|f| format!("{} {}: {}", f.mode, f.target, f.error)).collect::<Vec<_>>().join("; ");
                return Err(anyhow!("hook {} could not be attached by any mechanism ({why})", spec.name));
            }
            hooks.push(status);
        }

        let mut settings: Array<_, u32> =
            Array::try_from(ebpf.map_mut("SETTINGS").context("map SETTINGS missing")?)?;
        settings.set(setting::CONNECT_HOOKED, sees(&hooks, Sees::Connects) as u32, 0)?;
        settings.set(setting::IPVS_HOOKED, sees(&hooks, Sees::IpvsConnections) as u32, 0)?;
        settings.set(setting::RESPONSE_HOOKED, sees(&hooks, Sees::Responses) as u32, 0)?;

        if std::env::var_os("PROBE_TRACER_VERIFIER_STATS").is_some() {
            // For whoever changes a program: how much the verifier walked
            // (5.16+), the budget that older kernels and emulation feel.
            for (name, program) in ebpf.programs() {
                if let Some(n) = program.info().ok().and_then(|i| i.verified_instruction_count()) {
                    eprintln!("verifier: {name} {n} instructions");
                }
            }
        }
        Ok(Self { links, attached, ebpf, hooks, ringbuf_bytes, drop_reasons, evictions: Default::default() })
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

    /// Whether an attached hook lets the tracer see `what` (see [`Sees`]).
    pub fn sees(&self, what: Sees) -> bool {
        sees(&self.hooks, what)
    }

    /// Whether IPVS connections are seen as they are made (the kprobe), as
    /// opposed to inferred from the IPVS table afterwards.
    pub fn ipvs_observed(&self) -> bool {
        self.sees(Sees::IpvsConnections)
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
            map_evictions: self.map_evictions(),
        })
    }

    /// Entries the LRU tracking maps evicted so far, looked at every
    /// [`EVICTIONS_EVERY`] (a look walks the maps' keys); `None` where the
    /// counts cannot be read.
    fn map_evictions(&self) -> Option<u64> {
        let mut e = self.evictions.get();
        let now = std::time::Instant::now();
        if e.looked_at.is_none_or(|t| now.duration_since(t) >= EVICTIONS_EVERY) {
            e.looked_at = Some(now);
            match self.lru_shortfall() {
                Ok(shortfall) => {
                    e.unknown = false;
                    e.observe(shortfall);
                }
                Err(err) => {
                    tracing::debug!("tracking map evictions unknown: {err:#}");
                    e.unknown = true;
                }
            }
            self.evictions.set(e);
        }
        (!e.unknown).then_some(e.confirmed)
    }

    /// The counted LRU maps' shortfall: each map's count (inserts less
    /// removes, kept by the programs) less the entries it holds. An entry
    /// the map evicted is never removed, so its count is never taken back:
    /// the shortfall is what the maps evicted so far. The counts are read
    /// before and after the entries and the smaller kept, so a remove
    /// meanwhile is not taken for an eviction.
    pub fn lru_shortfall(&self) -> Result<u64> {
        let before = self.tracked_counts()?;
        let mut entries = Vec::with_capacity(COUNTED_LRU_MAPS.len());
        for (_, name) in COUNTED_LRU_MAPS {
            entries.push(self.lru_entries(name)?);
        }
        let after = self.tracked_counts()?;
        Ok(COUNTED_LRU_MAPS
            .iter()
            .zip(entries)
            .map(|(&(i, _), held)| {
                let count = before[i as usize].min(after[i as usize]);
                u64::try_from(count).unwrap_or(0).saturating_sub(held as u64)
            })
            .sum())
    }

    /// The programs' `TRACKED_COUNTS`, the whole of their `.bss`.
    fn tracked_counts(&self) -> Result<[i64; tracked_map::COUNT as usize]> {
        let bss: Array<_, [i64; tracked_map::COUNT as usize]> =
            Array::try_from(self.ebpf.map(".bss").context("map .bss missing")?).context("the .bss map is not TRACKED_COUNTS alone")?;
        Ok(bss.get(&0, 0)?)
    }

    /// How many entries an LRU tracking map holds (bounded by its size).
    fn lru_entries(&self, name: &str) -> Result<usize> {
        let map = self.ebpf.map(name).with_context(|| format!("map {name} missing"))?;
        Ok(match name {
            "PROBE_SOCKS" => HashMap::<_, u64, ProbeSock>::try_from(map)?.keys().count(),
            "PROBE_REPLIES" => HashMap::<_, ReplyKey, u64>::try_from(map)?.keys().count(),
            "RUNTIME_TASKS" => HashMap::<_, u32, u32>::try_from(map)?.keys().count(),
            "OOM_VICTIMS" => HashMap::<_, u32, u8>::try_from(map)?.keys().count(),
            other => return Err(anyhow!("no key type known for map {other}")),
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
    /// Entries the LRU tracking maps evicted (a probe or runtime process no
    /// longer followed): lost as surely as an event. None where the counts
    /// cannot be read.
    pub map_evictions: Option<u64>,
}

impl KernelCounters {
    /// Everything lost on the kernel side: events the ring buffer had no
    /// room for, program runs skipped, entries evicted.
    pub fn events_lost(&self) -> u64 {
        self.ringbuf_full.saturating_add(self.missed_runs.unwrap_or(0)).saturating_add(self.map_evictions.unwrap_or(0))
    }
}

/// How often the LRU tracking maps are looked at for evictions.
const EVICTIONS_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

/// Evictions confirmed from successive looks at the maps' shortfall (count
/// less entries). An eviction's shortfall stays; one look's can also hold
/// a remove that raced the look, which the next look no longer shows. So a
/// shortfall counts once two looks in a row show it, and the count only
/// grows.
#[derive(Debug, Clone, Copy, Default)]
struct Evictions {
    looked_at: Option<std::time::Instant>,
    last_shortfall: Option<u64>,
    confirmed: u64,
    unknown: bool,
}

impl Evictions {
    fn observe(&mut self, shortfall: u64) {
        if let Some(last) = self.last_shortfall {
            self.confirmed = self.confirmed.max(last.min(shortfall));
        }
        self.last_shortfall = Some(shortfall);
    }
}

/// A `name:\tvalue` line of an fdinfo file.
fn fdinfo_field(text: &str, name: &str) -> Option<u64> {
    text.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(':')?.trim().parse().ok())
}

/// One definition for the kernel side (the settings) and the correlator
/// (`run`'s probe settings): whether an attached hook sees `what`.
fn sees(hooks: &[HookStatus], what: Sees) -> bool {
    hooks.iter().any(|h| h.sees(what))
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
    fn an_eviction_counts_once_two_looks_show_it_and_never_goes_back() {
        let mut e = Evictions::default();
        e.observe(0);
        assert_eq!(e.confirmed, 0);
        // A remove raced the look: gone at the next one.
        e.observe(1);
        e.observe(0);
        assert_eq!(e.confirmed, 0);
        // Three evicted entries stay short.
        e.observe(3);
        assert_eq!(e.confirmed, 0, "one look is not enough");
        e.observe(3);
        assert_eq!(e.confirmed, 3);
        // A racing remove on top, then the maps drain: still 3.
        e.observe(4);
        e.observe(3);
        assert_eq!(e.confirmed, 3);
        e.observe(5);
        e.observe(5);
        assert_eq!(e.confirmed, 5);
    }

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
    fn a_hooks_mode_names_its_candidate_and_half_of_names_a_hook() {
        // HookStatus::sees and on_syscall_tracepoint find the candidate a
        // hook got by its mode: one candidate per mode, and, where the
        // answer matters (a row that sees something, or has a syscall
        // tracepoint), no mode it could also get through another hook.
        for spec in HOOKS {
            let own: Vec<Mode> = spec.candidates.iter().filter_map(Attach::mode).collect();
            for m in &own {
                assert_eq!(own.iter().filter(|o| *o == m).count(), 1, "{}: several candidates give {m}", spec.name);
            }
            let matters = spec.sees.is_some() || spec.candidates.iter().any(Attach::is_syscall_tracepoint);
            for c in spec.candidates.iter().filter(|_| matters) {
                let borrowed: Vec<Mode> = match c {
                    Attach::Via { hook } => HookSpec::named(hook).unwrap().candidates.iter().filter_map(Attach::mode).collect(),
                    Attach::CoveredBy { modes, .. } => modes.to_vec(),
                    _ => Vec::new(),
                };
                assert!(borrowed.iter().all(|m| !own.contains(m)), "{}: {c:?} gives one of its own modes", spec.name);
            }
            if let Some(other) = spec.half_of {
                assert!(HookSpec::named(other).is_some(), "{} is half of {other}", spec.name);
            }
        }
    }

    #[test]
    fn what_a_hook_sees_needs_its_own_program() {
        let status = |hook: &'static str, mode: Mode| HookStatus {
            hook,
            group: Group::Probe,
            mode: Some(mode),
            target: Some("t".into()),
            tried: Vec::new(),
            limitation: None,
        };
        assert!(status("tcp_connect", Mode::Kprobe).sees(Sees::Connects));
        assert!(!status("tcp_connect", Mode::BtfTracepoint).sees(Sees::Connects), "via tcp_state");
        assert!(status("ipvs_conn_new", Mode::Kprobe).sees(Sees::IpvsConnections));
        assert!(!status("ipvs_conn_new", Mode::Inferred).sees(Sees::IpvsConnections));
        assert!(status("tcp_recvmsg", Mode::RawTracepoint).sees(Sees::Responses));
        assert!(!status("tcp_state", Mode::RawTracepoint).sees(Sees::Responses));
        assert!(status("setns_enter", Mode::Tracepoint).on_syscall_tracepoint());
        assert!(!status("oom_kill", Mode::Tracepoint).on_syscall_tracepoint());
        assert!(status("setns_enter", Mode::Tracepoint).is_helper());
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

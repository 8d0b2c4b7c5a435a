//! What the programs are told before they load: the offsets and settings
//! read from the running kernel's BTF and tracefs, and the prober names.


use anyhow::{Context, Result, bail};
use aya::{
    Ebpf,
    maps::{Array, HashMap},
};
use tracer_common::{
    CommKey, Config, HostNamespaces, NO_FIELD, PROBER_COMMS_MAX, ProberComms, ProcessOffsets, TASK_COMM_LEN,
};

use super::Group;
use crate::kernel::{
    btf::{KernelBtf, ipvs_param_offsets},
    memory::DirectMap,
    tracefs::Format,
};

/// Why the programs that read the ip_vs module's structs cannot work.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IpvsProblem {
    /// The module is not loaded: no IPVS on this node (yet).
    NotLoaded,
    /// Its BTF lacks what the programs read.
    Unreadable(String),
}

impl std::fmt::Display for IpvsProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            IpvsProblem::NotLoaded => f.write_str("the ip_vs module is not loaded (no /sys/kernel/btf/ip_vs)"),
            IpvsProblem::Unreadable(why) => f.write_str(why),
        }
    }
}

impl std::error::Error for IpvsProblem {}

/// Fills the offsets the programs need. Returns why the IPVS hook cannot
/// work, if it cannot (module not loaded, or its BTF lacks the struct), and
/// why a response's first bytes cannot be read from page fragments.
pub(super) fn build_config(btf: &KernelBtf, groups: &[Group]) -> Result<(Config, Option<IpvsProblem>, Option<String>)> {
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
            None => ipvs_problem = Some(IpvsProblem::NotLoaded),
            Some(ipvs) => match ipvs_param_offsets(&ipvs) {
                Ok(off) => config.ipvs = off,
                Err(e) => ipvs_problem = Some(IpvsProblem::Unreadable(format!("{e:#}"))),
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
pub(super) fn host_namespaces(btf: &KernelBtf) -> HostNamespaces {
    use std::os::unix::fs::MetadataExt;
    let (Ok(pid), Ok(net)) = (std::fs::metadata("/proc/self/ns/pid"), std::fs::metadata("/proc/self/ns/net")) else {
        return HostNamespaces::UNCHECKED;
    };
    let (skc_net, net_inum) = btf.netns_offsets();
    HostNamespaces { pidns_dev: pid.dev(), pidns_ino: pid.ino(), netns_ino: net.ino() as u32, skc_net, net_inum, _pad: 0 }
}

/// log2 of the page size.
pub(super) fn page_shift() -> u32 {
    // SAFETY: sysconf has no preconditions.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if size > 0 && (size as u64).is_power_of_two() { (size as u64).trailing_zeros() } else { NO_FIELD }
}

/// The `--prober-comm` names as the kernel side checks them.
pub(super) fn prober_comms(names: &[String]) -> Result<ProberComms> {
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
pub(super) fn fill_comms(ebpf: &mut Ebpf, map: &str, first_bytes_map: &str, names: &[String]) -> Result<()> {
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
pub(super) fn process_tracepoint_offsets(off: &mut ProcessOffsets) {
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

/// A `comm` as the kernel stores it: at most 15 bytes and NUL-padded.
pub fn comm_key(name: &str) -> CommKey {
    let mut key = [0u8; TASK_COMM_LEN];
    let bytes = name.as_bytes();
    let n = bytes.len().min(TASK_COMM_LEN - 1);
    key[..n].copy_from_slice(&bytes[..n]);
    key
}

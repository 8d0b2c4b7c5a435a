//! `probe-tracer check`'s node audit: the standing conditions behind the
//! incidents, found before they bite. Each check gives a status, a sentence
//! and, when something is wrong, the fix. The checks are pure functions of
//! [`AuditInputs`], which [`gather`] reads from the live node.

use std::{fs, ops::RangeInclusive};

use serde::Serialize;

use crate::{
    processes::{ProcessFacts, PidsLimit, ThreadCount},
    network::{IpvsService, NetworkFacts, PortRanges, ephemeral_port_range},
};

/// Processes of the container runtime whose pids limit matters: when they
/// cannot fork, every exec probe on the node fails.
pub const RUNTIME_PROCESSES: &[&str] = &["containerd", "containerd-shim", "dockerd", "crio", "conmon", "kubelet"];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Warn,
    Fail,
    Unknown,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// `ephemeral_ports`, `ipvs_nodeports`, `runtime_pids`, `threads`,
    /// `conntrack`, `rp_filter`.
    pub check: &'static str,
    pub status: Status,
    pub message: String,
    pub fix: Option<String>,
}

/// A runtime process and the pids limit that applies to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeProcess {
    pub comm: String,
    pub pid: u32,
    pub limit: Option<PidsLimit>,
}

/// The connection tracking table of this network namespace.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Conntrack {
    /// No `nf_conntrack_count`: the module is not loaded.
    NotLoaded,
    /// Entries in use (this namespace's) against the node's limit.
    Table { count: u64, max: u64 },
    #[default]
    Unreadable,
}

/// Reverse-path filtering modes: `net.ipv4.conf.all.rp_filter` and each
/// interface's own, for the interfaces that are up (not loopback).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RpFilter {
    pub all: u8,
    pub interfaces: Vec<(String, u8)>,
}

#[derive(Debug, Clone, Default)]
pub struct AuditInputs {
    pub ephemeral: Option<RangeInclusive<u16>>,
    pub reserved: PortRanges,
    pub ipvs: Vec<IpvsService>,
    pub runtime: Vec<RuntimeProcess>,
    pub threads: Option<ThreadCount>,
    pub pid_max: Option<u64>,
    pub conntrack: Conntrack,
    pub rp_filter: Option<RpFilter>,
}

/// Reads the inputs from the node this runs on (its network namespace's
/// sysctls and IPVS table).
pub fn gather(node: &impl NetworkFacts, host: &impl ProcessFacts) -> AuditInputs {
    let mut runtime = Vec::new();
    for entry in fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
        let Ok(comm) = fs::read_to_string(entry.path().join("comm")) else { continue };
        let comm = comm.trim();
        if RUNTIME_PROCESSES.contains(&comm) {
            runtime.push(RuntimeProcess { comm: comm.to_string(), pid, limit: host.pids_limit(pid, 0, None) });
        }
    }
    AuditInputs {
        ephemeral: ephemeral_port_range(),
        reserved: node.reserved_ports(),
        ipvs: node.ipvs_services(),
        runtime,
        threads: host.thread_count(),
        pid_max: read_number("/proc/sys/kernel/pid_max"),
        conntrack: gather_conntrack(),
        rp_filter: gather_rp_filter(),
    }
}

fn read_number(path: impl AsRef<std::path::Path>) -> Option<u64> {
    fs::read_to_string(path).ok()?.trim().parse().ok()
}

const CONNTRACK_COUNT: &str = "/proc/sys/net/netfilter/nf_conntrack_count";
const CONNTRACK_MAX: &str = "/proc/sys/net/netfilter/nf_conntrack_max";

fn gather_conntrack() -> Conntrack {
    if !std::path::Path::new(CONNTRACK_COUNT).exists() {
        return Conntrack::NotLoaded;
    }
    match (read_number(CONNTRACK_COUNT), read_number(CONNTRACK_MAX)) {
        (Some(count), Some(max)) => Conntrack::Table { count, max },
        _ => Conntrack::Unreadable,
    }
}

const IFF_UP: u64 = 0x1;
const IFF_LOOPBACK: u64 = 0x8;

/// The interfaces of this network namespace that are up, but loopback
/// (`/proc/net/dev`; flags from sysfs), with their rp_filter modes.
fn gather_rp_filter() -> Option<RpFilter> {
    let conf = |name: &str| -> Option<u8> {
        fs::read_to_string(format!("/proc/sys/net/ipv4/conf/{name}/rp_filter")).ok()?.trim().parse().ok()
    };
    let all = conf("all")?;
    let dev = fs::read_to_string("/proc/net/dev").ok()?;
    let mut interfaces = Vec::new();
    for name in dev.lines().skip(2).filter_map(|l| l.split_once(':')).map(|(n, _)| n.trim()) {
        // A name with a path separator cannot be a sysctl directory.
        if name.is_empty() || name.contains('/') || name.starts_with('.') {
            continue;
        }
        let flags = fs::read_to_string(format!("/sys/class/net/{name}/flags"))
            .ok()
            .and_then(|f| u64::from_str_radix(f.trim().trim_start_matches("0x"), 16).ok());
        if flags.is_some_and(|f| f & IFF_LOOPBACK != 0 || f & IFF_UP == 0) {
            continue;
        }
        // No IPv4 configuration: no reverse-path check.
        if let Some(mode) = conf(name) {
            interfaces.push((name.to_string(), mode));
        }
    }
    Some(RpFilter { all, interfaces })
}

pub fn audit(inputs: &AuditInputs, nodeports: &RangeInclusive<u16>) -> Vec<Finding> {
    vec![
        ephemeral_ports(inputs, nodeports),
        ipvs_nodeports(inputs, nodeports),
        runtime_pids(inputs),
        threads(inputs),
        conntrack(inputs),
        rp_filter(inputs),
    ]
}

/// NodePorts an outgoing connection may take as its source port.
fn exposed_nodeports(inputs: &AuditInputs, nodeports: &RangeInclusive<u16>) -> Option<Vec<u16>> {
    let eph = inputs.ephemeral.as_ref()?;
    let lo = *eph.start().max(nodeports.start());
    let hi = *eph.end().min(nodeports.end());
    Some(if lo > hi { Vec::new() } else { (lo..=hi).filter(|p| !inputs.reserved.contains(*p)).collect() })
}

fn reserve_fix(inputs: &AuditInputs, nodeports: &RangeInclusive<u16>) -> String {
    let mut ranges: Vec<String> = inputs.reserved.0.iter().map(|r| if r.start() == r.end() { r.start().to_string() } else { format!("{}-{}", r.start(), r.end()) }).collect();
    ranges.push(format!("{}-{}", nodeports.start(), nodeports.end()));
    format!("sysctl -w net.ipv4.ip_local_reserved_ports={} (and persist it in /etc/sysctl.d)", ranges.join(","))
}

fn ephemeral_ports(inputs: &AuditInputs, nodeports: &RangeInclusive<u16>) -> Finding {
    let check = "ephemeral_ports";
    let (Some(eph), Some(exposed)) = (inputs.ephemeral.as_ref(), exposed_nodeports(inputs, nodeports)) else {
        return Finding { check, status: Status::Unknown, message: "net.ipv4.ip_local_port_range is not readable".into(), fix: None };
    };
    let range = |r: &RangeInclusive<u16>| format!("{}-{}", r.start(), r.end());
    if exposed.is_empty() {
        let why = if eph.end() < nodeports.start() || eph.start() > nodeports.end() { "does not overlap" } else { "overlaps, but every shared port is reserved, in" };
        return Finding {
            check,
            status: Status::Ok,
            message: format!("the ephemeral port range {} {why} the NodePort range {}", range(eph), range(nodeports)),
            fix: None,
        };
    }
    Finding {
        check,
        status: Status::Fail,
        message: format!(
            "the ephemeral port range {} includes {} NodePorts ({}..{}) missing from net.ipv4.ip_local_reserved_ports: outgoing connections, kubelet probes included, can take a NodePort as their source port",
            range(eph),
            exposed.len(),
            exposed[0],
            exposed[exposed.len() - 1]
        ),
        fix: Some(reserve_fix(inputs, nodeports)),
    }
}

fn ipvs_nodeports(inputs: &AuditInputs, nodeports: &RangeInclusive<u16>) -> Finding {
    let check = "ipvs_nodeports";
    let on_nodeports: Vec<&IpvsService> = inputs.ipvs.iter().filter(|s| nodeports.contains(&s.vport)).collect();
    if on_nodeports.is_empty() {
        return Finding { check, status: Status::Ok, message: "no IPVS virtual service listens on a NodePort".into(), fix: None };
    }
    let exposed = exposed_nodeports(inputs, nodeports).unwrap_or_default();
    let at_risk: Vec<String> = on_nodeports.iter().filter(|s| exposed.contains(&s.vport)).map(|s| format!("{}:{}", s.vip, s.vport)).collect();
    if at_risk.is_empty() {
        return Finding {
            check,
            status: Status::Ok,
            message: format!("{} IPVS virtual services listen on NodePorts, none of them a possible source port", on_nodeports.len()),
            fix: None,
        };
    }
    let shown = at_risk.iter().take(5).cloned().collect::<Vec<_>>().join(", ");
    let more = if at_risk.len() > 5 { format!(" and {} more", at_risk.len() - 5) } else { String::new() };
    Finding {
        check,
        status: Status::Fail,
        message: format!(
            "IPVS virtual services {shown}{more} listen on NodePorts that are also possible source ports: a probe that picks one gets its SYN-ACK taken by IPVS and times out"
        ),
        fix: Some(reserve_fix(inputs, nodeports)),
    }
}

fn runtime_pids(inputs: &AuditInputs) -> Finding {
    let check = "runtime_pids";
    if inputs.runtime.is_empty() {
        return Finding { check, status: Status::Unknown, message: "no container runtime process (containerd, dockerd, crio, conmon, kubelet) is running".into(), fix: None };
    }
    // The most used limit among the runtime's cgroups.
    let worst = inputs
        .runtime
        .iter()
        .filter_map(|p| Some((p, p.limit.as_ref()?, p.limit.as_ref()?.max?)))
        .max_by(|a, b| (a.1.current * b.2).cmp(&(b.1.current * a.2)));
    let Some((p, limit, max)) = worst else {
        return Finding { check, status: Status::Ok, message: format!("no pids limit applies to {}", names(&inputs.runtime)), fix: None };
    };
    let status = if limit.current >= max {
        Status::Fail
    } else if limit.current * 100 >= max * 80 {
        Status::Warn
    } else {
        Status::Ok
    };
    let message = format!("{} (pid {}) is in {} with pids.current {} of pids.max {}", p.comm, p.pid, limit.cgroup, limit.current, max);
    let fix = (status != Status::Ok).then(|| {
        format!("raise {}/pids.max (systemd: TasksMax= for the runtime's unit; for pods: the kubelet's podPidsLimit) or find what leaks processes", limit.cgroup)
    });
    Finding { check, status, message, fix }
}

fn names(procs: &[RuntimeProcess]) -> String {
    let mut n: Vec<&str> = procs.iter().map(|p| p.comm.as_str()).collect();
    n.sort();
    n.dedup();
    n.join(", ")
}

fn threads(inputs: &AuditInputs) -> Finding {
    let check = "threads";
    let Some(t) = inputs.threads else {
        return Finding { check, status: Status::Unknown, message: "kernel.threads-max is not readable".into(), fix: None };
    };
    // Tasks are bounded by threads-max and by the pid space.
    let (limit, name, fix) = match inputs.pid_max {
        Some(pm) if pm < t.threads_max => (pm, "kernel.pid_max", format!("sysctl -w kernel.pid_max={}", (pm * 4).min(4_194_304))),
        _ => (t.threads_max, "kernel.threads-max", format!("sysctl -w kernel.threads-max={}", t.threads_max * 2)),
    };
    let status = if t.threads * 100 >= limit * 95 {
        Status::Fail
    } else if t.threads * 100 >= limit * 80 {
        Status::Warn
    } else {
        Status::Ok
    };
    Finding {
        check,
        status,
        message: format!("{} tasks in use; the limit is {name} {limit}", t.threads),
        fix: (status != Status::Ok).then_some(fix),
    }
}

fn conntrack(inputs: &AuditInputs) -> Finding {
    let check = "conntrack";
    let (count, max) = match inputs.conntrack {
        Conntrack::NotLoaded => {
            return Finding {
                check,
                status: Status::Ok,
                message: "nf_conntrack is not loaded: there is no connection tracking table to fill".into(),
                fix: None,
            };
        }
        Conntrack::Unreadable => {
            return Finding { check, status: Status::Unknown, message: format!("{CONNTRACK_MAX} is not readable"), fix: None };
        }
        Conntrack::Table { count, max } => (count, max),
    };
    // A full table drops the first packet of every new connection (the
    // kernel logs "nf_conntrack: table full, dropping packet").
    let status = if max == 0 || count * 100 >= max * 95 {
        Status::Fail
    } else if count * 100 >= max * 80 {
        Status::Warn
    } else {
        Status::Ok
    };
    let percent = if max == 0 { 100 } else { count * 100 / max };
    let message = format!(
        "{count} connection tracking entries in use of net.netfilter.nf_conntrack_max {max} ({percent}%){}",
        if status == Status::Ok { "" } else { ": when it is full, new connections (probes included) lose their SYN" }
    );
    let fix = (status != Status::Ok).then(|| {
        format!(
            "sysctl -w net.netfilter.nf_conntrack_max={} (kube-proxy sets it at start from conntrack.maxPerCore: raise that where it runs), or find what opens so many connections (conntrack -S)",
            (max * 2).max(65536)
        )
    });
    Finding { check, status, message, fix }
}

/// How many names a finding lists before "and N more".
const NAMES_SHOWN: usize = 5;

fn rp_filter(inputs: &AuditInputs) -> Finding {
    let check = "rp_filter";
    let Some(rp) = &inputs.rp_filter else {
        return Finding { check, status: Status::Unknown, message: "net.ipv4.conf.all.rp_filter is not readable".into(), fix: None };
    };
    // The kernel checks with the larger of `all` and the interface's own.
    let strict: Vec<&str> = rp.interfaces.iter().filter(|(_, m)| rp.all.max(*m) == 1).map(|(n, _)| n.as_str()).collect();
    if strict.is_empty() {
        return Finding {
            check,
            status: Status::Ok,
            message: match rp.interfaces.len() {
                1 => "reverse-path filtering is loose or off on the one interface that is up".to_string(),
                n => format!("reverse-path filtering is loose or off on the {n} interfaces that are up"),
            },
            fix: None,
        };
    }
    let mut shown = strict.iter().take(NAMES_SHOWN).copied().collect::<Vec<_>>().join(", ");
    if strict.len() > NAMES_SHOWN {
        shown.push_str(&format!(" and {} more", strict.len() - NAMES_SHOWN));
    }
    let message = format!(
        "reverse-path filtering is strict (rp_filter 1, the larger of net.ipv4.conf.all and the interface's own) on {shown}: a reply that comes back by another interface than the route to its sender is dropped (IP_RPFILTER), as on multi-homed nodes and with policy routing; harmless while routes are symmetric"
    );
    // Loose mode (2) still drops what no route reaches; `all` at 2 makes
    // every interface at least loose.
    let fix = if rp.all != 1 && strict.len() <= 3 {
        strict.iter().map(|i| format!("sysctl -w net.ipv4.conf.{}.rp_filter=2", i.replace('.', "/"))).collect::<Vec<_>>().join("; ")
    } else {
        "sysctl -w net.ipv4.conf.all.rp_filter=2".to_string()
    };
    Finding { check, status: Status::Warn, message, fix: Some(format!("{fix} (loose; persist it in /etc/sysctl.d)")) }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NODEPORTS: RangeInclusive<u16> = 30000..=32767;

    fn svc(vport: u16) -> IpvsService {
        IpvsService { protocol: "TCP".into(), vip: "10.200.0.1".parse().unwrap(), vport, reals: vec![] }
    }

    fn inputs() -> AuditInputs {
        AuditInputs {
            ephemeral: Some(32768..=60999),
            threads: Some(ThreadCount { threads: 300, threads_max: 190_000 }),
            pid_max: Some(4_194_304),
            ..Default::default()
        }
    }

    fn find<'a>(f: &'a [Finding], check: &str) -> &'a Finding {
        f.iter().find(|x| x.check == check).unwrap()
    }

    #[test]
    fn default_port_ranges_are_safe() {
        let f = audit(&inputs(), &NODEPORTS);
        assert_eq!(find(&f, "ephemeral_ports").status, Status::Ok);
        assert_eq!(find(&f, "ipvs_nodeports").status, Status::Ok);
        assert_eq!(find(&f, "threads").status, Status::Ok);
        assert_eq!(find(&f, "runtime_pids").status, Status::Unknown);
    }

    #[test]
    fn a_widened_ephemeral_range_with_ipvs_nodeports_is_incident_1() {
        let mut i = inputs();
        i.ephemeral = Some(10000..=65000);
        i.ipvs = vec![svc(31055), svc(80)];
        i.reserved = PortRanges::parse("40000").unwrap();
        let f = audit(&i, &NODEPORTS);
        let e = find(&f, "ephemeral_ports");
        assert_eq!(e.status, Status::Fail);
        assert!(e.message.contains("2768 NodePorts"), "{}", e.message);
        assert_eq!(e.fix.as_deref(), Some("sysctl -w net.ipv4.ip_local_reserved_ports=40000,30000-32767 (and persist it in /etc/sysctl.d)"));
        let v = find(&f, "ipvs_nodeports");
        assert_eq!(v.status, Status::Fail);
        assert!(v.message.contains("10.200.0.1:31055") && !v.message.contains(":80 "), "{}", v.message);

        // The fix applied: both pass.
        i.reserved = PortRanges::parse("30000-32767").unwrap();
        let f = audit(&i, &NODEPORTS);
        assert_eq!(find(&f, "ephemeral_ports").status, Status::Ok);
        assert_eq!(find(&f, "ipvs_nodeports").status, Status::Ok);
    }

    #[test]
    fn runtime_pids_limit_near_or_at_its_max() {
        let mut i = inputs();
        let proc_with = |current, max| RuntimeProcess {
            comm: "containerd".into(),
            pid: 42,
            limit: Some(PidsLimit { cgroup: "/sys/fs/cgroup/system.slice/containerd.service".into(), current, max }),
        };
        i.runtime = vec![proc_with(100, Some(4915))];
        assert_eq!(find(&audit(&i, &NODEPORTS), "runtime_pids").status, Status::Ok);
        i.runtime.push(proc_with(4000, Some(4915)));
        let f = audit(&i, &NODEPORTS);
        assert_eq!(find(&f, "runtime_pids").status, Status::Warn);
        assert!(find(&f, "runtime_pids").fix.as_deref().unwrap().contains("containerd.service/pids.max"));
        i.runtime = vec![proc_with(4915, Some(4915))];
        assert_eq!(find(&audit(&i, &NODEPORTS), "runtime_pids").status, Status::Fail);
        i.runtime = vec![proc_with(4915, None)];
        assert_eq!(find(&audit(&i, &NODEPORTS), "runtime_pids").status, Status::Ok);
    }

    #[test]
    fn tasks_near_threads_max_or_pid_max() {
        let mut i = inputs();
        i.threads = Some(ThreadCount { threads: 31_500, threads_max: 190_000 });
        i.pid_max = Some(32_768);
        let t = find(&audit(&i, &NODEPORTS), "threads").clone();
        assert_eq!(t.status, Status::Fail);
        assert!(t.message.contains("kernel.pid_max 32768"), "{}", t.message);
        assert_eq!(t.fix.as_deref(), Some("sysctl -w kernel.pid_max=131072"));
        i.threads = Some(ThreadCount { threads: 160_000, threads_max: 190_000 });
        i.pid_max = Some(4_194_304);
        assert_eq!(find(&audit(&i, &NODEPORTS), "threads").status, Status::Warn);
    }

    #[test]
    fn conntrack_near_or_at_its_max_and_not_loaded() {
        let mut i = inputs();
        let at = |i: &AuditInputs| find(&audit(i, &NODEPORTS), "conntrack").clone();
        i.conntrack = Conntrack::NotLoaded;
        let f = at(&i);
        assert_eq!(f.status, Status::Ok);
        assert!(f.message.contains("not loaded"), "{}", f.message);
        i.conntrack = Conntrack::Table { count: 1200, max: 262_144 };
        let f = at(&i);
        assert_eq!((f.status, f.fix), (Status::Ok, None));
        assert!(f.message.contains("1200 connection tracking entries in use of net.netfilter.nf_conntrack_max 262144 (0%)"), "{}", f.message);
        i.conntrack = Conntrack::Table { count: 220_000, max: 262_144 };
        let f = at(&i);
        assert_eq!(f.status, Status::Warn, "{}", f.message);
        assert!(f.fix.as_deref().unwrap().starts_with("sysctl -w net.netfilter.nf_conntrack_max=524288"), "{:?}", f.fix);
        i.conntrack = Conntrack::Table { count: 262_144, max: 262_144 };
        let f = at(&i);
        assert_eq!(f.status, Status::Fail);
        assert!(f.message.contains("lose their SYN"), "{}", f.message);
        i.conntrack = Conntrack::Unreadable;
        assert_eq!(at(&i).status, Status::Unknown);
    }

    #[test]
    fn strict_rp_filter_is_the_larger_of_all_and_the_interfaces_own() {
        let mut i = inputs();
        let at = |i: &AuditInputs| find(&audit(i, &NODEPORTS), "rp_filter").clone();
        let ifs = |v: &[(&str, u8)]| v.iter().map(|(n, m)| (n.to_string(), *m)).collect::<Vec<_>>();
        // Debian's default (systemd sets loose): fine.
        i.rp_filter = Some(RpFilter { all: 2, interfaces: ifs(&[("eth0", 1), ("cni0", 0)]) });
        let f = at(&i);
        assert_eq!(f.status, Status::Ok, "{}", f.message);
        assert!(f.message.contains("2 interfaces"), "{}", f.message);
        // One interface strict on its own: its own fix, with a VLAN's dot
        // spelled as sysctl wants it.
        i.rp_filter = Some(RpFilter { all: 0, interfaces: ifs(&[("eth0", 0), ("eth0.100", 1)]) });
        let f = at(&i);
        assert_eq!(f.status, Status::Warn);
        assert!(f.message.contains("strict (rp_filter 1") && f.message.contains("on eth0.100:"), "{}", f.message);
        assert_eq!(f.fix.as_deref(), Some("sysctl -w net.ipv4.conf.eth0/100.rp_filter=2 (loose; persist it in /etc/sysctl.d)"));
        // `all` strict makes every interface strict, whatever its own.
        let many: Vec<(String, u8)> = (0..8).map(|n| (format!("veth{n}"), 0)).collect();
        i.rp_filter = Some(RpFilter { all: 1, interfaces: many });
        let f = at(&i);
        assert_eq!(f.status, Status::Warn);
        assert!(f.message.contains("veth0, veth1, veth2, veth3, veth4 and 3 more"), "{}", f.message);
        assert_eq!(f.fix.as_deref(), Some("sysctl -w net.ipv4.conf.all.rp_filter=2 (loose; persist it in /etc/sysctl.d)"));
        i.rp_filter = None;
        assert_eq!(at(&i).status, Status::Unknown);
    }
}

//! Struct member offsets from the running kernel's BTF.
//!
//! Rust eBPF programs carry no CO-RE relocations, so the programs read struct
//! members at offsets userspace computes here, from `/sys/kernel/btf/vmlinux`
//! (and `/sys/kernel/btf/<module>` for module types such as IPVS').

use std::path::Path;

use anyhow::{Context, Result, anyhow, bail};
use btf_rs::{Btf, BtfType, Type};
use tracer_common::{DropOffsets, IpvsParamOffsets, NO_FIELD, ProcessOffsets, SkbOffsets, SockOffsets, TcpSockOffsets};

pub const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";

/// Parsed kernel BTF, with a module's split BTF on demand.
pub struct KernelBtf {
    vmlinux: Btf,
}

impl KernelBtf {
    pub fn load() -> Result<Self> {
        Self::from_file(VMLINUX_BTF)
    }

    /// Parsed from the whole file read at once: btf-rs's file reader asks
    /// the kernel for its position before every type (`lseek`, over 100,000
    /// calls for a distribution kernel's vmlinux).
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let vmlinux = std::fs::read(path)
            .map_err(anyhow::Error::from)
            .and_then(|bytes| Ok(Btf::from_bytes(&bytes)?))
            .with_context(|| format!("cannot read kernel BTF from {}", path.display()))?;
        Ok(Self { vmlinux })
    }

    /// BTF of a loaded module (split on top of vmlinux), if the module is loaded.
    pub fn module(&self, name: &str) -> Option<Btf> {
        let bytes = std::fs::read(format!("/sys/kernel/btf/{name}")).ok()?;
        Btf::from_split_bytes(&bytes, &self.vmlinux).ok()
    }

    #[cfg(test)]
    pub fn has_function(&self, name: &str) -> bool {
        has_function(&self.vmlinux, name)
    }

    pub fn sock_offsets(&self) -> Result<SockOffsets> {
        let btf = &self.vmlinux;
        let field = |name| member_offset(btf, "sock_common", name);
        let optional = |name| field(name).unwrap_or(NO_FIELD);
        let mut off = SockOffsets {
            // A bitfield before 5.6: the programs then skip the check.
            sk_protocol: member_offset(btf, "sock", "sk_protocol").unwrap_or(NO_FIELD),
            sk_err: member_offset(btf, "sock", "sk_err")?,
            skc_family: field("skc_family")?,
            skc_state: field("skc_state")?,
            skc_num: field("skc_num")?,
            skc_dport: field("skc_dport")?,
            skc_rcv_saddr: field("skc_rcv_saddr")?,
            skc_daddr: field("skc_daddr")?,
            // Only present with CONFIG_IPV6.
            skc_v6_rcv_saddr: optional("skc_v6_rcv_saddr"),
            skc_v6_daddr: optional("skc_v6_daddr"),
            tuple_window: NO_FIELD,
        };
        off.tuple_window = off.find_tuple_window();
        Ok(off)
    }
}

impl KernelBtf {
    /// `task_struct.comm` where programs can have the current task as a
    /// typed pointer (the kernel knows `bpf_get_current_task_btf`, 5.11+),
    /// so a connect's comm is two loads rather than a helper's copy;
    /// NO_FIELD otherwise, or when the comm is not 16 bytes.
    pub fn current_task_comm(&self) -> u32 {
        let btf = &self.vmlinux;
        let helper = btf.resolve_types_by_name("bpf_func_id").unwrap_or_default().into_iter().any(|ty| match ty {
            Type::Enum(e) => e.members.iter().any(|m| btf.resolve_name(m).is_ok_and(|n| n == "BPF_FUNC_get_current_task_btf")),
            _ => false,
        });
        let Ok(at) = member_offset(btf, "task_struct", "comm") else { return NO_FIELD };
        if !helper || array_len(btf, "task_struct", "comm") != Some(tracer_common::TASK_COMM_LEN) {
            return NO_FIELD;
        }
        at
    }

    /// The `tcp_sock` counters and `inet_sock` port a probe's phases need.
    pub fn tcp_sock_offsets(&self) -> Result<TcpSockOffsets> {
        let btf = &self.vmlinux;
        let tcp = |name| member_offset(btf, "tcp_sock", name);
        Ok(TcpSockOffsets {
            bytes_acked: tcp("bytes_acked")?,
            bytes_received: tcp("bytes_received")?,
            write_seq: tcp("write_seq")?,
            snd_una: tcp("snd_una")?,
            inet_sport: member_offset(btf, "inet_sock", "inet_sport")?,
            sk_receive_queue: member_offset(btf, "sock", "sk_receive_queue")?,
            queue_next: member_offset(btf, "sk_buff_head", "next")?,
            _pad: 0,
        })
    }

    /// The `sk_buff` and `net_device` members the drop hook reads; the
    /// tracepoint's fields are the caller's.
    pub fn drop_offsets(&self, off: &mut DropOffsets) -> Result<()> {
        let btf = &self.vmlinux;
        let skb = |name| member_offset(btf, "sk_buff", name);
        off.skb_sk = skb("sk")?;
        off.skb_dev = skb("dev")?;
        off.skb_protocol = skb("protocol")?;
        off.skb_network_header = skb("network_header")?;
        off.dev_nd_net = member_offset(btf, "net_device", "nd_net")?;
        off.dev_name = member_offset(btf, "net_device", "name")?;
        Ok(())
    }

    /// `enum skb_drop_reason`'s names by value, without the
    /// `SKB_DROP_REASON_` prefix: the running kernel's own (values move
    /// between kernels and vendors backport them). Empty before 5.17.
    pub fn drop_reasons(&self) -> std::collections::BTreeMap<u32, String> {
        let btf = &self.vmlinux;
        let mut names = std::collections::BTreeMap::new();
        for ty in btf.resolve_types_by_name("skb_drop_reason").unwrap_or_default() {
            if let Type::Enum(e) = ty {
                for m in &e.members {
                    if let Ok(name) = btf.resolve_name(m) {
                        names.insert(m.val(), name.trim_start_matches("SKB_DROP_REASON_").to_string());
                    }
                }
            }
        }
        names
    }

    /// `sock_common.skc_net` and `net.ns.inum`: a socket's network
    /// namespace (NO_FIELD without CONFIG_NET_NS: then every socket is the
    /// host's).
    pub fn netns_offsets(&self) -> (u32, u32) {
        let btf = &self.vmlinux;
        let skc_net = member_offset(btf, "sock_common", "skc_net").unwrap_or(NO_FIELD);
        let inum = member_offset(btf, "net", "ns")
            .and_then(|ns| Ok(ns + member_offset(btf, "ns_common", "inum")?))
            .unwrap_or(NO_FIELD);
        if skc_net == NO_FIELD || inum == NO_FIELD { (NO_FIELD, NO_FIELD) } else { (skc_net, inum) }
    }

    /// `sk_buff`, `skb_shared_info` and page-fragment members, and the
    /// size of `struct page`; the direct map's bases are the caller's
    /// (kallsyms). A fragment is `struct bio_vec` (5.4-6.7: `bv_page`,
    /// `bv_offset`) or `struct skb_frag` (`netmem`, `offset`).
    pub fn skb_offsets(&self) -> Result<SkbOffsets> {
        let btf = &self.vmlinux;
        let skb = |name| member_offset(btf, "sk_buff", name);
        let frag = |names: &[&str]| {
            ["skb_frag", "bio_vec"]
                .iter()
                .find_map(|s| names.iter().find_map(|n| member_offset(btf, s, n).ok()))
                .ok_or_else(|| anyhow!("no page fragment member {names:?} in skb_frag or bio_vec"))
        };
        let page_size = struct_size(btf, "page")?;
        Ok(SkbOffsets {
            len: skb("len")?,
            data_len: skb("data_len")?,
            head: skb("head")?,
            data: skb("data")?,
            end: skb("end")?,
            shinfo_frags: member_offset(btf, "skb_shared_info", "frags")?,
            frag_page: frag(&["netmem", "bv_page"])?,
            frag_offset: frag(&["offset", "bv_offset"])?,
            page_struct_shift: if page_size.is_power_of_two() { page_size.trailing_zeros() } else { NO_FIELD },
            ..SkbOffsets::MISSING
        })
    }

    /// Fills the `task_struct`, `signal_struct`, `mm_struct` and `struct pid`
    /// members of `off`; tracepoint fields are left as they are.
    pub fn process_offsets(&self, off: &mut ProcessOffsets) -> Result<()> {
        let btf = &self.vmlinux;
        let task = |name| member_offset(btf, "task_struct", name);
        off.task_exit_code = task("exit_code")?;
        off.task_thread_pid = task("thread_pid")?;
        off.task_real_parent = task("real_parent")?;
        off.task_tgid = task("tgid")?;
        off.task_pid = task("pid")?;
        off.task_signal = task("signal")?;
        off.task_mm = task("mm")?;
        off.task_comm = task("comm")?;
        // atomic_t live: its `counter` is its only member, at offset 0.
        off.signal_live = member_offset(btf, "signal_struct", "live")?;
        off.mm_arg_start = member_offset(btf, "mm_struct", "arg_start")?;
        off.mm_arg_end = member_offset(btf, "mm_struct", "arg_end")?;
        off.pid_level = member_offset(btf, "pid", "level")?;
        off.pid_numbers = member_offset(btf, "pid", "numbers")?;
        off.upid_size = struct_size(btf, "upid")?;
        off.upid_nr = member_offset(btf, "upid", "nr")?;
        off.bprm_filename = member_offset(btf, "linux_binprm", "filename")?;
        // The second syscall argument in the saved user registers. Other
        // architectures get no fexit hooks at all (no entry-point naming);
        // were the member missing, the setns program would report type 0.
        off.regs_arg2 = match std::env::consts::ARCH {
            "x86_64" => member_offset(btf, "pt_regs", "si").unwrap_or(NO_FIELD),
            "aarch64" => member_offset(btf, "pt_regs", "regs").map_or(NO_FIELD, |regs| regs + 8),
            _ => NO_FIELD,
        };
        Ok(())
    }
}

/// Offsets of `struct ip_vs_conn_param` in the ip_vs module's BTF.
pub fn ipvs_param_offsets(ipvs: &Btf) -> Result<IpvsParamOffsets> {
    let field = |name| member_offset(ipvs, "ip_vs_conn_param", name);
    Ok(IpvsParamOffsets {
        caddr: field("caddr")?,
        vaddr: field("vaddr")?,
        cport: field("cport")?,
        vport: field("vport")?,
        protocol: field("protocol")?,
        af: field("af")?,
    })
}

#[cfg(test)]
fn has_function(btf: &Btf, name: &str) -> bool {
    btf.resolve_types_by_name(name)
        .map(|types| types.iter().any(|t| matches!(t, Type::Func(_))))
        .unwrap_or(false)
}

/// Byte offset of `member` in `struct_name`, looking through anonymous
/// structs and unions (as in `sock_common`'s `skc_addrpair` union).
pub fn member_offset(btf: &Btf, struct_name: &str, member: &str) -> Result<u32> {
    let types = btf
        .resolve_types_by_name(struct_name)
        .with_context(|| format!("the kernel's BTF has no type named {struct_name}"))?;
    for ty in types {
        if let Type::Struct(s) | Type::Union(s) = ty
            && let Some(bits) = find_member_bits(btf, &s, member)? {
                if bits % 8 != 0 {
                    bail!("{struct_name}.{member} is a bitfield");
                }
                return Ok(bits / 8);
            }
    }
    Err(anyhow!("struct {struct_name} has no member {member} in this kernel's BTF"))
}

/// Elements of an array member of `struct_name` (a direct member), or
/// `None` when it is no array of one-byte integers.
fn array_len(btf: &Btf, struct_name: &str, member: &str) -> Option<usize> {
    for ty in btf.resolve_types_by_name(struct_name).ok()? {
        let Type::Struct(s) = ty else { continue };
        let m = s.members.iter().find(|m| btf.resolve_name(*m).is_ok_and(|n| n == member))?;
        let Type::Array(a) = btf.resolve_chained_type(m).ok()? else { return None };
        let mut elem = btf.resolve_chained_type(&a).ok()?;
        loop {
            elem = match &elem {
                Type::Typedef(t) => btf.resolve_chained_type(t).ok()?,
                Type::Const(t) | Type::Volatile(t) => btf.resolve_chained_type(t).ok()?,
                _ => break,
            };
        }
        return matches!(elem, Type::Int(ref i) if i.size() == 1).then(|| a.len());
    }
    None
}

/// Size in bytes of a struct.
pub fn struct_size(btf: &Btf, struct_name: &str) -> Result<u32> {
    for ty in btf.resolve_types_by_name(struct_name)? {
        if let Type::Struct(s) = ty {
            return Ok(s.size() as u32);
        }
    }
    Err(anyhow!("the kernel's BTF has no struct {struct_name}"))
}

fn find_member_bits(btf: &Btf, s: &btf_rs::Struct, wanted: &str) -> Result<Option<u32>> {
    for m in &s.members {
        let name = btf.resolve_name(m).unwrap_or_default();
        if name == wanted {
            return Ok(Some(m.bit_offset()));
        }
        if name.is_empty() {
            // Anonymous struct/union: search inside, offsets add up.
            if let Some(inner) = resolve_composite(btf, m)?
                && let Some(bits) = find_member_bits(btf, &inner, wanted)? {
                    return Ok(Some(m.bit_offset() + bits));
                }
        }
    }
    Ok(None)
}

/// The struct or union a member's type is, skipping typedefs and qualifiers.
fn resolve_composite(btf: &Btf, member: &dyn BtfType) -> Result<Option<btf_rs::Struct>> {
    let mut ty = btf.resolve_chained_type(member)?;
    loop {
        match ty {
            Type::Struct(s) | Type::Union(s) => return Ok(Some(s)),
            Type::Typedef(ref t) => ty = btf.resolve_chained_type(t)?,
            Type::Const(ref t) | Type::Volatile(ref t) => ty = btf.resolve_chained_type(t)?,
            _ => return Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs against this machine's own kernel BTF when it has one; the
    /// offsets must be plausible and the nested union members resolved.
    #[test]
    fn the_tuple_window_covers_the_fields_only_when_they_fit_aligned() {
        let layout = |daddr: u32, dport: u32, family: u32| {
            let off = SockOffsets {
                skc_daddr: daddr,
                skc_rcv_saddr: daddr + 4,
                skc_dport: dport,
                skc_num: dport + 2,
                skc_family: family,
                ..SockOffsets::MISSING
            };
            off.find_tuple_window()
        };
        // Every kernel's layout, and the same shifted by a word.
        assert_eq!(layout(0, 12, 16), 0);
        assert_eq!(layout(8, 20, 24), 8);
        // Starting mid-word: the window starts at the word.
        assert_eq!(layout(4, 16, 20), 0);
        // Too far apart for one window.
        assert_eq!(layout(0, 12, 40), NO_FIELD);
        // A port straddling a word (odd offset) is read on its own.
        assert_eq!(layout(0, 13, 16), NO_FIELD);
        assert_eq!(SockOffsets::MISSING.find_tuple_window(), NO_FIELD);
    }

    #[test]
    fn sock_common_offsets_from_running_kernel() {
        if !Path::new(VMLINUX_BTF).exists() {
            eprintln!("no {VMLINUX_BTF}: nothing to check on this kernel");
            return;
        }
        let btf = KernelBtf::load().unwrap();
        let off = btf.sock_offsets().unwrap();
        // skc_daddr and skc_rcv_saddr are the first two words of sock_common
        // on every kernel since 2.6.38 (the skc_addrpair union).
        assert_eq!(off.skc_daddr, 0);
        assert_eq!(off.skc_rcv_saddr, 4);
        assert!(off.skc_dport > off.skc_rcv_saddr && off.skc_num == off.skc_dport + 2);
        // The tuple fields are the first 18 bytes: one read covers them.
        assert_eq!(off.tuple_window, 0);
        assert!(btf.has_function("tcp_connect"));
        let mut p = ProcessOffsets::MISSING;
        btf.process_offsets(&mut p).unwrap();
        // struct upid { int nr; struct pid_namespace *ns; } on every kernel.
        assert_eq!((p.upid_nr, p.upid_size), (0, 16));
        assert_eq!(p.task_tgid, p.task_pid + 4);
        assert!(p.mm_arg_end == p.mm_arg_start + 8);
        assert!(!btf.has_function("no_such_function_here"));
        let tcp = btf.tcp_sock_offsets().unwrap();
        assert!(tcp.bytes_received > tcp.inet_sport && tcp.write_seq != tcp.snd_una);
        let skb = btf.skb_offsets().unwrap();
        // struct page is 64 bytes on every x86-64 distribution kernel.
        assert_eq!(skb.page_struct_shift, 6);
        assert!(skb.data_len == skb.len + 4 && skb.frag_offset > skb.frag_page);
        let reasons = btf.drop_reasons();
        if !reasons.is_empty() {
            assert!(reasons.values().any(|n| n == "NETFILTER_DROP"), "{reasons:?}");
            assert!(reasons.values().any(|n| n == "NO_SOCKET"), "{reasons:?}");
        }
    }
}

//! Offsets into the running kernel's structs and tracepoint records,
//! found by userspace at load time (BTF, tracepoint format files).

/// Offset of a field that the running kernel lacks (the program skips it).
pub const NO_FIELD: u32 = u32::MAX;

/// Field offsets inside one tracepoint's record, read at load time from
/// `/sys/kernel/tracing/events/<category>/<name>/format`. A field the
/// tracepoint does not have is [`NO_FIELD`].
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SockTracepointOffsets {
    pub skaddr: u32,
    pub oldstate: u32,
    pub newstate: u32,
    pub state: u32,
    pub sport: u32,
    pub dport: u32,
    pub family: u32,
    pub protocol: u32,
    pub saddr: u32,
    pub daddr: u32,
    pub saddr_v6: u32,
    pub daddr_v6: u32,
}

impl SockTracepointOffsets {
    pub const MISSING: Self = Self {
        skaddr: NO_FIELD,
        oldstate: NO_FIELD,
        newstate: NO_FIELD,
        state: NO_FIELD,
        sport: NO_FIELD,
        dport: NO_FIELD,
        family: NO_FIELD,
        protocol: NO_FIELD,
        saddr: NO_FIELD,
        daddr: NO_FIELD,
        saddr_v6: NO_FIELD,
        daddr_v6: NO_FIELD,
    };
}

/// Offsets inside `struct sock_common`, from the running kernel's BTF.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SockOffsets {
    /// `struct sock.sk_protocol` (NO_FIELD where it is a bitfield, < 5.6).
    pub sk_protocol: u32,
    /// `struct sock.sk_err`: why a socket closed (a reset sets it first).
    pub sk_err: u32,
    pub skc_family: u32,
    pub skc_state: u32,
    pub skc_num: u32,
    pub skc_dport: u32,
    pub skc_rcv_saddr: u32,
    pub skc_daddr: u32,
    pub skc_v6_rcv_saddr: u32,
    pub skc_v6_daddr: u32,
    /// Where a [`SOCK_WINDOW_BYTES`] read covering the tuple's ports,
    /// family and IPv4 addresses starts (see [`SockOffsets::find_tuple_window`]),
    /// or NO_FIELD to read them one by one.
    pub tuple_window: u32,
}

/// Bytes of `struct sock_common` the programs read at once for a tuple:
/// each `bpf_probe_read_kernel` costs ~40 ns (bpf_stats, bare 6.18), and
/// the fields are next to each other on every kernel (the first 18 bytes).
pub const SOCK_WINDOW_BYTES: u32 = 24;

impl SockOffsets {
    pub const MISSING: Self = Self {
        sk_protocol: NO_FIELD,
        sk_err: NO_FIELD,
        skc_family: NO_FIELD,
        skc_state: NO_FIELD,
        skc_num: NO_FIELD,
        skc_dport: NO_FIELD,
        skc_rcv_saddr: NO_FIELD,
        skc_daddr: NO_FIELD,
        skc_v6_rcv_saddr: NO_FIELD,
        skc_v6_daddr: NO_FIELD,
        tuple_window: NO_FIELD,
    };

    /// The 8-aligned start of a [`SOCK_WINDOW_BYTES`] window holding the
    /// IPv4 addresses, the ports and the family, each naturally aligned (so
    /// that none straddles one of the window's 64-bit words, which the
    /// programs pick fields from with shifts); NO_FIELD if they do not fit.
    pub fn find_tuple_window(&self) -> u32 {
        let fields =
            [(self.skc_daddr, 4), (self.skc_rcv_saddr, 4), (self.skc_dport, 2), (self.skc_num, 2), (self.skc_family, 2)];
        if fields.iter().any(|&(at, size)| at == NO_FIELD || at % size != 0) {
            return NO_FIELD;
        }
        let start = fields.iter().map(|&(at, _)| at).min().unwrap_or(0) & !7;
        let end = fields.iter().map(|&(at, size)| at + size).max().unwrap_or(0);
        if end - start <= SOCK_WINDOW_BYTES { start } else { NO_FIELD }
    }
}

/// What a probe's phases need beyond `sock_common`: `tcp_sock` counters
/// and `inet_sock`'s source port, from BTF; read through helpers, since
/// they lie past `struct sock`, where a BTF-typed load may not reach.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpSockOffsets {
    pub bytes_acked: u32,
    pub bytes_received: u32,
    pub write_seq: u32,
    pub snd_una: u32,
    /// `inet_sock.inet_sport`: kept after the port is released at close,
    /// where `skc_num` reads 0.
    pub inet_sport: u32,
    /// `sock.sk_receive_queue` and, in that `sk_buff_head`, `next`: the
    /// first unread segment, whose payload starts at its `data` (the TCP
    /// header is pulled when it is queued).
    pub sk_receive_queue: u32,
    pub queue_next: u32,
    pub _pad: u32,
}

impl TcpSockOffsets {
    pub const MISSING: Self = Self {
        bytes_acked: NO_FIELD,
        bytes_received: NO_FIELD,
        write_seq: NO_FIELD,
        snd_una: NO_FIELD,
        inet_sport: NO_FIELD,
        sk_receive_queue: NO_FIELD,
        queue_next: NO_FIELD,
        _pad: 0,
    };
}

/// Where a received segment's payload is: `sk_buff` and `skb_shared_info`
/// members from BTF, and how a page's address is found (x86-64's direct
/// map: `page_offset_base + (page - vmemmap_base) / sizeof(struct page) *
/// PAGE_SIZE`). TCP's payload is in page fragments on every kernel since
/// 4.20 (tcp_sendmsg allocates no linear room), so the first response
/// bytes are read from `frags[0]` unless the linear part holds them.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SkbOffsets {
    pub len: u32,
    pub data_len: u32,
    pub head: u32,
    pub data: u32,
    /// `sk_buff.end`: an offset from `head` on 64-bit kernels.
    pub end: u32,
    /// `skb_shared_info.frags`, and in a fragment its page (or netmem)
    /// and offset.
    pub shinfo_frags: u32,
    pub frag_page: u32,
    pub frag_offset: u32,
    /// log2 of `sizeof(struct page)` and of the page size; NO_FIELD when
    /// fragments cannot be read (no power of two, no known bases).
    pub page_struct_shift: u32,
    pub page_shift: u32,
    /// Kernel addresses of the `page_offset_base` and `vmemmap_base`
    /// variables (KASLR moves the bases; the programs read them), or 0
    /// when the kernel exports no such symbols and the values below hold.
    pub page_offset_base_at: u64,
    pub vmemmap_base_at: u64,
    pub page_offset_base: u64,
    pub vmemmap_base: u64,
}

impl SkbOffsets {
    pub const MISSING: Self = Self {
        len: NO_FIELD,
        data_len: NO_FIELD,
        head: NO_FIELD,
        data: NO_FIELD,
        end: NO_FIELD,
        shinfo_frags: NO_FIELD,
        frag_page: NO_FIELD,
        frag_offset: NO_FIELD,
        page_struct_shift: NO_FIELD,
        page_shift: NO_FIELD,
        page_offset_base_at: 0,
        vmemmap_base_at: 0,
        page_offset_base: 0,
        vmemmap_base: 0,
    };
}

/// What the drop hook reads: the tracepoint's fields (classic mechanism),
/// and `sk_buff` and `net_device` members from BTF.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DropOffsets {
    /// skb:kfree_skb `skbaddr`, `location`, `reason` (NO_FIELD before 5.17).
    pub tp_skbaddr: u32,
    pub tp_location: u32,
    pub tp_reason: u32,
    /// Whether the tracepoint's arguments include the reason (5.17+):
    /// the typed and raw programs read a third argument only then.
    pub has_reason: u32,
    pub skb_sk: u32,
    pub skb_dev: u32,
    /// `sk_buff.protocol` (big-endian EtherType) and the header offsets
    /// from `head`.
    pub skb_protocol: u32,
    pub skb_network_header: u32,
    pub dev_nd_net: u32,
    /// `net_device.name`.
    pub dev_name: u32,
}

impl DropOffsets {
    pub const MISSING: Self = Self {
        tp_skbaddr: NO_FIELD,
        tp_location: NO_FIELD,
        tp_reason: NO_FIELD,
        has_reason: 0,
        skb_sk: NO_FIELD,
        skb_dev: NO_FIELD,
        skb_protocol: NO_FIELD,
        skb_network_header: NO_FIELD,
        dev_nd_net: NO_FIELD,
        dev_name: NO_FIELD,
    };
}

/// Offsets inside the ip_vs module's `struct ip_vs_conn_param`, from
/// `/sys/kernel/btf/ip_vs`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IpvsParamOffsets {
    pub caddr: u32,
    pub vaddr: u32,
    pub cport: u32,
    pub vport: u32,
    pub protocol: u32,
    pub af: u32,
}

impl IpvsParamOffsets {
    pub const MISSING: Self = Self {
        caddr: NO_FIELD,
        vaddr: NO_FIELD,
        cport: NO_FIELD,
        vport: NO_FIELD,
        protocol: NO_FIELD,
        af: NO_FIELD,
    };
}

/// Offsets for the process hooks: tracepoint fields and `task_struct`/
/// `struct pid` members (from BTF) that tracepoints do not carry.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProcessOffsets {
    /// sched:sched_process_exec `filename` (a __data_loc field)
    pub exec_filename: u32,
    /// struct linux_binprm `filename` (the raw tracepoint's third argument)
    pub bprm_filename: u32,
    /// struct pt_regs: a syscall's second argument (`si` on x86_64), read by
    /// fexit programs on the syscall wrappers, which take `const struct pt_regs *`
    pub regs_arg2: u32,
    /// sched:sched_process_fork `child_pid`
    pub fork_child_pid: u32,
    /// syscalls:sys_exit_* `ret`
    pub sys_exit_ret: u32,
    /// syscalls:sys_enter_setns `flags` (`nstype` on older kernels)
    pub setns_nstype: u32,
    /// signal:signal_generate
    pub sig_sig: u32,
    pub sig_errno: u32,
    pub sig_code: u32,
    pub sig_comm: u32,
    pub sig_pid: u32,
    pub sig_result: u32,
    /// oom:mark_victim
    pub oom_pid: u32,
    pub oom_total_vm: u32,
    pub oom_anon_rss: u32,
    pub oom_file_rss: u32,
    pub oom_shmem_rss: u32,
    pub oom_comm: u32,
    /// struct task_struct
    pub task_exit_code: u32,
    pub task_thread_pid: u32,
    pub task_real_parent: u32,
    pub task_tgid: u32,
    pub task_pid: u32,
    pub task_signal: u32,
    pub task_mm: u32,
    pub task_comm: u32,
    /// struct signal_struct: live thread count (the group is dead at 0)
    pub signal_live: u32,
    /// struct mm_struct
    pub mm_arg_start: u32,
    pub mm_arg_end: u32,
    /// struct pid
    pub pid_level: u32,
    pub pid_numbers: u32,
    /// struct upid
    pub upid_size: u32,
    pub upid_nr: u32,
}

impl ProcessOffsets {
    pub const MISSING: Self = Self {
        exec_filename: NO_FIELD,
        bprm_filename: NO_FIELD,
        regs_arg2: NO_FIELD,
        fork_child_pid: NO_FIELD,
        sys_exit_ret: NO_FIELD,
        setns_nstype: NO_FIELD,
        sig_sig: NO_FIELD,
        sig_errno: NO_FIELD,
        sig_code: NO_FIELD,
        sig_comm: NO_FIELD,
        sig_pid: NO_FIELD,
        sig_result: NO_FIELD,
        oom_pid: NO_FIELD,
        oom_total_vm: NO_FIELD,
        oom_anon_rss: NO_FIELD,
        oom_file_rss: NO_FIELD,
        oom_shmem_rss: NO_FIELD,
        oom_comm: NO_FIELD,
        task_exit_code: NO_FIELD,
        task_thread_pid: NO_FIELD,
        task_real_parent: NO_FIELD,
        task_tgid: NO_FIELD,
        task_pid: NO_FIELD,
        task_signal: NO_FIELD,
        task_mm: NO_FIELD,
        task_comm: NO_FIELD,
        signal_live: NO_FIELD,
        mm_arg_start: NO_FIELD,
        mm_arg_end: NO_FIELD,
        pid_level: NO_FIELD,
        pid_numbers: NO_FIELD,
        upid_size: NO_FIELD,
        upid_nr: NO_FIELD,
    };
}

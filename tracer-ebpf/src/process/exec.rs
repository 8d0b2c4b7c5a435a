//! Hook: exec (sched:sched_process_exec). By now `comm` is the new binary's.

use aya_ebpf::{
    EbpfContext,
    helpers::{bpf_get_current_comm, bpf_probe_read_kernel_str_bytes, generated::bpf_probe_read_user},
    macros::{raw_tracepoint, tracepoint},
    programs::{RawTracePointContext, TracePointContext},
};
use tracer_common::{ARGS_LEN, ExecEvent, hook_mode, kind, role};

use crate::{config, first_byte_may_match, header, read_kernel, reserve, submit_now, tp_read};
use super::{
    NsPid, RUNTIME_COMM_FIRST_BYTES, RUNTIME_COMMS, current_task, current_tgid, level_of, ns_pid, pack,
    parent_tgid, role_of, track, tracked,
};

/// What an exec is to the tracker: the role it records, and whether it may
/// be a container's command in the runtime's own pid namespace (`hostPID`),
/// which only the binary's path tells from runc re-executing itself.
#[derive(Clone, Copy)]
struct ExecRole {
    value: u32,
    ns: NsPid,
    same_level_command: bool,
}

/// Decides whether this exec is the runtime's and records its role; `None`
/// for the exec of anything else (nearly every exec on a node).
#[inline(always)]
fn exec_role(task: *const u8) -> Option<ExecRole> {
    let tgid = current_tgid();
    let comm = bpf_get_current_comm().unwrap_or_default();
    let is_runtime = first_byte_may_match(&RUNTIME_COMM_FIRST_BYTES, &comm)
        && unsafe { RUNTIME_COMMS.get(&comm).is_some() };
    let previous = tracked(tgid);
    if !is_runtime && previous.is_none() {
        return None;
    }
    let ns = ns_pid(task);
    let same_level_command =
        !is_runtime && previous.is_some_and(|v| role_of(v) == role::RUNTIME && ns.level == level_of(v));
    let value = match previous {
        None => pack(role::RUNTIME, ns.level),
        Some(v) if is_runtime => pack(role::RUNTIME, level_of(v)),
        // runc init exec'ing the container's command: it runs in the
        // container's (deeper) pid namespace.
        Some(v) if role_of(v) == role::RUNTIME && ns.level > level_of(v) => {
            pack(role::CONTAINER, level_of(v))
        }
        Some(v) => v,
    };
    track(tgid, value);
    Some(ExecRole { value, ns, same_level_command })
}

/// runc re-executing itself (`/proc/self/exe`, `/proc/self/fd/N`,
/// `/dev/fd/N`): anything else a runtime process execs without entering a
/// deeper pid namespace is a hostPID container's command.
#[inline(always)]
fn is_self_reexec(filename: &[u8; tracer_common::FILENAME_LEN]) -> bool {
    // Whole-word compares: no branch per byte, so the verifier's state
    // count stays that of one comparison.
    let f = filename;
    let head = u64::from_le_bytes([f[0], f[1], f[2], f[3], f[4], f[5], f[6], f[7]]);
    let tail = u32::from_le_bytes([f[8], f[9], f[10], 0]);
    let proc_self = (head ^ u64::from_le_bytes(*b"/proc/se")) | (tail ^ u32::from_le_bytes(*b"lf/\0")) as u64;
    let dev_fd = head ^ u64::from_le_bytes(*b"/dev/fd/");
    proc_self == 0 || dev_fd == 0
}

/// Reports the exec; `filename` copies the binary's path from wherever the
/// hook finds it. Nothing is reported when the ring buffer is full (counted).
#[inline(always)]
fn emit_exec(task: *const u8, role: ExecRole, mode: u8, filename: impl FnOnce(&mut [u8; tracer_common::FILENAME_LEN])) {
    let ExecRole { mut value, ns, same_level_command } = role;
    let Some(mut entry) = reserve::<ExecEvent>() else { return };
    // SAFETY: reserve returned room for an ExecEvent; every field is set below.
    let e = unsafe { &mut *entry.as_mut_ptr() };
    e.header = header(kind::PROC_EXEC, mode);
    e.ppid = parent_tgid(task);
    e.ns_pid = ns.nr;
    e.ns_level = ns.level;
    e._pad = 0;
    e.filename = [0; tracer_common::FILENAME_LEN];
    filename(&mut e.filename);
    if same_level_command && !is_self_reexec(&e.filename) {
        // A hostPID container's command: its exit is reported, its
        // children (a fork storm) are not tracked.
        value = pack(role::CONTAINER, level_of(value));
        track(current_tgid(), value);
    }
    e.role = role_of(value);
    e.args = [0; ARGS_LEN];
    e.args_len = 0;
    read_args(task, e);
    // Woken at once, not with the next batch: userspace reads what only
    // the live runtime shows (its argv's tail, the pipes an exec's output
    // goes to), and runc lives tens of milliseconds. Runtime execs are few.
    submit_now(entry);
}

/// `TP_PROTO(struct task_struct *p, pid_t old_pid, struct linux_binprm *bprm)`:
/// cheaper than the tracepoint, which copies the filename into a perf
/// record for every exec on the node before the program can say no.
#[raw_tracepoint(tracepoint = "sched_process_exec")]
pub fn raw_tp_sched_process_exec(ctx: RawTracePointContext) -> u32 {
    let task = current_task();
    let Some(role) = exec_role(task) else { return 0 };
    let bprm = ctx.arg::<*const u8>(2);
    emit_exec(task, role, hook_mode::RAW_TRACEPOINT, |dst| {
        if let Some(name) = read_kernel::<*const u8>(bprm, config().process.bprm_filename) {
            let _ = unsafe { bpf_probe_read_kernel_str_bytes(name, dst) };
        }
    });
    0
}

#[tracepoint(category = "sched", name = "sched_process_exec")]
pub fn tp_sched_process_exec(ctx: TracePointContext) -> u32 {
    let task = current_task();
    let Some(role) = exec_role(task) else { return 0 };
    emit_exec(task, role, hook_mode::TRACEPOINT, |dst| {
        // __data_loc: low 16 bits are the string's offset in the record.
        let loc = tp_read::<u32>(&ctx, config().process.exec_filename);
        if loc != 0 {
            let src = unsafe { (ctx.as_ptr() as *const u8).add((loc & 0xffff) as usize) };
            let _ = unsafe { bpf_probe_read_kernel_str_bytes(src, dst) };
        }
    });
    0
}

/// Copies argv from the new image's stack (`mm->arg_start..arg_end`).
#[inline(always)]
fn read_args(task: *const u8, e: &mut ExecEvent) {
    let off = &config().process;
    let Some(mm) = read_kernel::<*const u8>(task, off.task_mm) else { return };
    let start = read_kernel::<u64>(mm, off.mm_arg_start).unwrap_or(0);
    let end = read_kernel::<u64>(mm, off.mm_arg_end).unwrap_or(0);
    if start == 0 || end <= start {
        return;
    }
    let total = end - start;
    e.args_len = if total > u32::MAX as u64 { u32::MAX } else { total as u32 };
    let mut len = total as u32;
    if len > ARGS_LEN as u32 {
        len = ARGS_LEN as u32;
    }
    // SAFETY: len is at most ARGS_LEN, the size of the destination.
    unsafe { bpf_probe_read_user(e.args.as_mut_ptr().cast(), len, start as *const _) };
}

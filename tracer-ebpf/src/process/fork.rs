//! Hook: fork. New processes (not threads) of tracked runtime processes
//! inherit the tracking.

use aya_ebpf::{
    macros::{raw_tracepoint, tracepoint},
    programs::{RawTracePointContext, TracePointContext},
};
use tracer_common::{ForkEvent, hook_mode, kind, role};

use crate::{config, emit, header, read_kernel, tp_read};
use super::{current_tgid, role_of, task_tgid, track, tracked};

/// The tracking a new process of the current one inherits, if any: checked
/// before anything about the child is read, so untracked forks cost one lookup.
#[inline(always)]
fn inherited() -> Option<u32> {
    tracked(current_tgid()).filter(|v| role_of(*v) == role::RUNTIME)
}

#[inline(always)]
fn on_fork(child_pid: u32, value: u32, mode: u8) {
    track(child_pid, value);
    emit(&ForkEvent { header: header(kind::PROC_FORK, mode), child_tid: child_pid, _pad: 0 });
}

/// `TP_PROTO(struct task_struct *parent, struct task_struct *child)`: the
/// child's pid and tgid tell a process from a thread.
#[raw_tracepoint(tracepoint = "sched_process_fork")]
pub fn raw_tp_sched_process_fork(ctx: RawTracePointContext) -> u32 {
    let Some(value) = inherited() else { return 0 };
    let child = ctx.arg::<*const u8>(1);
    let pid = read_kernel::<u32>(child, config().process.task_pid).unwrap_or(0);
    if pid == 0 || pid != task_tgid(child) {
        return 0;
    }
    on_fork(pid, value, hook_mode::RAW_TRACEPOINT);
    0
}

/// Tracepoint fallback: it cannot tell threads from processes, so thread
/// ids of tracked processes are tracked too (harmless, LRU-bounded).
#[tracepoint(category = "sched", name = "sched_process_fork")]
pub fn tp_sched_process_fork(ctx: TracePointContext) -> u32 {
    let Some(value) = inherited() else { return 0 };
    let pid = tp_read::<u32>(&ctx, config().process.fork_child_pid);
    if pid != 0 {
        on_fork(pid, value, hook_mode::TRACEPOINT);
    }
    0
}

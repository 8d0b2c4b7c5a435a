//! Hook: process exit. Runs in the exiting task, so `current` is the task in
//! both the raw tracepoint and the tracepoint.

use aya_ebpf::{
    macros::{raw_tracepoint, tracepoint},
    programs::{RawTracePointContext, TracePointContext},
};
use tracer_common::{ExitEvent, hook_mode, kind, role};

use crate::{config, emit, header, read_kernel, remove_counted, tracked_map};
use super::{OOM_VICTIMS, RUNTIME_TASKS, current_task, current_tgid, is_oom_victim, ns_pid, parent_tgid, role_of, tracked};

#[inline(always)]
fn on_exit(mode: u8) {
    let off = &config().process;
    let task = current_task();
    // Only the last thread of a process: signal->live has dropped to 0.
    let Some(signal) = read_kernel::<*const u8>(task, off.task_signal) else { return };
    if read_kernel::<i32>(signal, off.signal_live).unwrap_or(1) != 0 {
        return;
    }
    let tgid = current_tgid();
    let previous = tracked(tgid);
    let ns = ns_pid(task);
    let container_init = ns.level > 0 && ns.nr == 1;
    let oom_victim = is_oom_victim(tgid);
    if previous.is_none() && !container_init && !oom_victim {
        return;
    }
    if previous.is_some() {
        remove_counted(&RUNTIME_TASKS, tracked_map::RUNTIME_TASKS, &tgid);
    }
    if oom_victim {
        remove_counted(&OOM_VICTIMS, tracked_map::OOM_VICTIMS, &tgid);
    }
    let role = match previous {
        Some(v) => role_of(v),
        None if oom_victim => role::OOM_VICTIM,
        None => 0,
    };
    emit(&ExitEvent {
        header: header(kind::PROC_EXIT, mode),
        exit_code: read_kernel::<i32>(task, off.task_exit_code).unwrap_or(0),
        ns_pid: ns.nr,
        ppid: parent_tgid(task),
        group_dead: 1,
        ns_level: ns.level,
        role,
    });
}

#[raw_tracepoint(tracepoint = "sched_process_exit")]
pub fn raw_tp_sched_process_exit(_ctx: RawTracePointContext) -> u32 {
    on_exit(hook_mode::RAW_TRACEPOINT);
    0
}

#[tracepoint(category = "sched", name = "sched_process_exit")]
pub fn tp_sched_process_exit(_ctx: TracePointContext) -> u32 {
    on_exit(hook_mode::TRACEPOINT);
    0
}

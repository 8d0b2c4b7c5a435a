//! Hook: fatal signals sent to tracked processes or container inits (who
//! killed runc init, who killed the container's pid 1).

use aya_ebpf::{
    macros::{raw_tracepoint, tracepoint},
    programs::{RawTracePointContext, TracePointContext},
};
use tracer_common::{CommKey, SignalEvent, hook_mode, kind};

use crate::{config, emit, header, read_kernel, tp_read};
use super::{ns_pid, task_tgid, tracked};

#[inline(always)]
fn is_fatal(sig: i32) -> bool {
    // SIGHUP INT QUIT ILL ABRT BUS FPE KILL SEGV TERM XCPU XFSZ SYS
    matches!(sig, 1 | 2 | 3 | 4 | 6 | 7 | 8 | 9 | 11 | 15 | 24 | 25 | 31)
}

#[inline(always)]
fn emit_signal(mode: u8, sig: i32, result: i32, target_pid: u32, target_comm: CommKey) {
    emit(&SignalEvent {
        header: header(kind::SIGNAL, mode),
        sig,
        errno: 0,
        code: 0,
        result,
        target_pid,
        _pad: 0,
        target_comm,
    });
}

/// `TP_PROTO(int sig, struct kernel_siginfo *info, struct task_struct *task,
/// int group, int result)`.
#[raw_tracepoint(tracepoint = "signal_generate")]
pub fn raw_tp_signal_generate(ctx: RawTracePointContext) -> u32 {
    let sig = ctx.arg::<u64>(0) as i32;
    if !is_fatal(sig) {
        return 0;
    }
    let task = ctx.arg::<*const u8>(2);
    let tgid = task_tgid(task);
    if tracked(tgid).is_none() {
        let ns = ns_pid(task);
        if !(ns.level > 0 && ns.nr == 1) {
            return 0;
        }
    }
    let comm = read_kernel::<CommKey>(task, config().process.task_comm).unwrap_or_default();
    emit_signal(hook_mode::RAW_TRACEPOINT, sig, ctx.arg::<u64>(4) as i32, tgid, comm);
    0
}

/// Tracepoint fallback: sees the target's pid only, so it reports signals
/// to tracked processes (not to container inits the tracer did not see start).
#[tracepoint(category = "signal", name = "signal_generate")]
pub fn tp_signal_generate(ctx: TracePointContext) -> u32 {
    let off = &config().process;
    let sig = tp_read::<i32>(&ctx, off.sig_sig);
    if !is_fatal(sig) {
        return 0;
    }
    let pid = tp_read::<u32>(&ctx, off.sig_pid);
    if tracked(pid).is_none() {
        return 0;
    }
    let comm = tp_read::<CommKey>(&ctx, off.sig_comm);
    emit_signal(hook_mode::TRACEPOINT, sig, tp_read::<i32>(&ctx, off.sig_result), pid, comm);
    0
}

//! Hook: failed clone / clone3 / fork / vfork / setns.
//!
//! Best: fexit on the syscall's wrapper (`__x64_sys_clone`...), which runs
//! only when that syscall returns. The fallback, syscalls:sys_exit_*, costs
//! every task on the node: while any syscall tracepoint is enabled, every
//! syscall of every task takes the kernel's slow exit path (measured: a null
//! syscall 200 -> 265 ns on this machine's 6.18).

use aya_ebpf::{
    helpers::bpf_get_current_pid_tgid,
    macros::{fexit, map, tracepoint},
    maps::LruHashMap,
    programs::{FExitContext, TracePointContext},
};
use tracer_common::{SyscallFailedEvent, hook_mode, kind, syscall};

use crate::{config, emit, header, read_kernel, tp_read};
use super::{current_tgid, tracked};

/// `setns` calls in flight by tracked threads: tid -> nstype argument.
#[map]
static SETNS_CALLS: LruHashMap<u32, i32> = LruHashMap::with_max_entries(1024, 0);

#[inline(always)]
fn on_syscall_failed(which: u32, nstype: i32, ret: i64, mode: u8) {
    if ret >= 0 || tracked(current_tgid()).is_none() {
        return;
    }
    emit(&SyscallFailedEvent { header: header(kind::SYSCALL_FAILED, mode), syscall: which, nstype, ret });
}

/// fexit context of `long __x64_sys_NAME(const struct pt_regs *regs)`:
/// argument 0 is `regs`, then the return value.
#[inline(always)]
fn fexit_ret(ctx: &FExitContext) -> i64 {
    ctx.arg::<i64>(1)
}

#[inline(always)]
fn on_fexit(ctx: &FExitContext, which: u32) {
    on_syscall_failed(which, 0, fexit_ret(ctx), hook_mode::FEXIT);
}

#[fexit(function = "__x64_sys_clone")]
pub fn fexit_sys_clone(ctx: FExitContext) -> u32 {
    on_fexit(&ctx, syscall::CLONE);
    0
}

#[fexit(function = "__x64_sys_clone3")]
pub fn fexit_sys_clone3(ctx: FExitContext) -> u32 {
    on_fexit(&ctx, syscall::CLONE3);
    0
}

#[fexit(function = "__x64_sys_fork")]
pub fn fexit_sys_fork(ctx: FExitContext) -> u32 {
    on_fexit(&ctx, syscall::FORK);
    0
}

#[fexit(function = "__x64_sys_vfork")]
pub fn fexit_sys_vfork(ctx: FExitContext) -> u32 {
    on_fexit(&ctx, syscall::VFORK);
    0
}

/// setns(fd, nstype): the namespace type is the second argument, read from
/// the saved registers at the offset the loader took from BTF.
#[fexit(function = "__x64_sys_setns")]
pub fn fexit_sys_setns(ctx: FExitContext) -> u32 {
    let ret = fexit_ret(&ctx);
    // Checked here too, so that successful calls read no registers.
    if ret >= 0 {
        return 0;
    }
    let regs = ctx.arg::<*const u8>(0);
    let nstype = read_kernel::<u64>(regs, config().process.regs_arg2).unwrap_or(0) as i32;
    on_syscall_failed(syscall::SETNS, nstype, ret, hook_mode::FEXIT);
    0
}

#[inline(always)]
fn on_syscall_exit(ctx: &TracePointContext, which: u32) {
    let ret = tp_read::<i64>(ctx, config().process.sys_exit_ret);
    on_syscall_failed(which, 0, ret, hook_mode::TRACEPOINT);
}

#[tracepoint(category = "syscalls", name = "sys_exit_clone")]
pub fn tp_sys_exit_clone(ctx: TracePointContext) -> u32 {
    on_syscall_exit(&ctx, syscall::CLONE);
    0
}

#[tracepoint(category = "syscalls", name = "sys_exit_clone3")]
pub fn tp_sys_exit_clone3(ctx: TracePointContext) -> u32 {
    on_syscall_exit(&ctx, syscall::CLONE3);
    0
}

#[tracepoint(category = "syscalls", name = "sys_exit_fork")]
pub fn tp_sys_exit_fork(ctx: TracePointContext) -> u32 {
    on_syscall_exit(&ctx, syscall::FORK);
    0
}

#[tracepoint(category = "syscalls", name = "sys_exit_vfork")]
pub fn tp_sys_exit_vfork(ctx: TracePointContext) -> u32 {
    on_syscall_exit(&ctx, syscall::VFORK);
    0
}

/// Remembers which namespace type a tracked thread asks `setns` for.
#[tracepoint(category = "syscalls", name = "sys_enter_setns")]
pub fn tp_sys_enter_setns(ctx: TracePointContext) -> u32 {
    if tracked(current_tgid()).is_none() {
        return 0;
    }
    let nstype = tp_read::<u64>(&ctx, config().process.setns_nstype) as i32;
    let tid = bpf_get_current_pid_tgid() as u32;
    let _ = SETNS_CALLS.insert(&tid, &nstype, 0);
    0
}

#[tracepoint(category = "syscalls", name = "sys_exit_setns")]
pub fn tp_sys_exit_setns(ctx: TracePointContext) -> u32 {
    let tid = bpf_get_current_pid_tgid() as u32;
    let Some(nstype) = (unsafe { SETNS_CALLS.get(&tid).copied() }) else { return 0 };
    let _ = SETNS_CALLS.remove(&tid);
    let ret = tp_read::<i64>(&ctx, config().process.sys_exit_ret);
    if ret < 0 {
        emit(&SyscallFailedEvent {
            header: header(kind::SYSCALL_FAILED, hook_mode::TRACEPOINT),
            syscall: syscall::SETNS,
            nstype,
            ret,
        });
    }
    0
}

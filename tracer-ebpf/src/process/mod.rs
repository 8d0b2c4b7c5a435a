//! The container runtime's process tree: execs, forks, failed
//! clone/clone3/fork/vfork/setns calls, exits and fatal signals.
//!
//! A process is *tracked* (in `RUNTIME_TASKS`) once it execs a binary whose
//! name is in `RUNTIME_COMMS` (`--runtime-comm`, default `runc`); its new
//! processes inherit the tracking, so `runc init` and its `runc:[0:PARENT]`,
//! `runc:[1:CHILD]`, `runc:[2:INIT]` stages are covered whatever they call
//! themselves. When a tracked process execs a non-runtime binary inside a
//! deeper pid namespace than the runtime started in, that is the container's
//! own command: it keeps being tracked for its exit, but its children are
//! not, so a fork storm inside a container (or anywhere else) costs one map
//! lookup per fork. A `hostPID` container's command runs in the runtime's
//! own pid namespace: there, any exec that is not the runtime re-executing
//! itself (`/proc/self/...`, `/dev/fd/...`) is the container's command.
//!
//! Independently of tracking, the exit of any container init (pid 1 of a
//! non-root pid namespace) and fatal signals sent to one are reported:
//! a container whose init died is what "cannot exec in a stopped state"
//! is about, and that container may predate the tracer.
//!
//! One file per thing a reader looks for: this one holds the maps and what
//! every hook reads (tracking, a task's pid and namespace level); the
//! hooks are [`exec`], [`fork`], [`syscalls`] (failed clone/clone3/fork/
//! vfork/setns), [`exit`], [`signal`] and [`oom`].

mod exec;
mod exit;
mod fork;
mod oom;
mod signal;
mod syscalls;

use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, generated::bpf_get_current_task},
    macros::map,
    maps::{Array, HashMap, LruHashMap},
};
use tracer_common::{CommKey, NO_FIELD};

use crate::{config, insert_counted, may_hold, read_kernel, tracked_map};

/// Runtime binary names (`--runtime-comm`).
#[map]
static RUNTIME_COMMS: HashMap<CommKey, u8> = HashMap::with_max_entries(16, 0);

/// Non-zero at the first byte of each name in `RUNTIME_COMMS`.
#[map]
static RUNTIME_COMM_FIRST_BYTES: Array<u8> = Array::with_max_entries(256, 0);

/// Tracked processes by tgid. Value: role | (pid-namespace level the
/// runtime started in) << 8. LRU so a missed exit can never fill it.
#[map]
static RUNTIME_TASKS: LruHashMap<u32, u32> = LruHashMap::with_max_entries(16384, 0);

/// Processes the OOM killer chose, until they exit (their exit is reported).
#[map]
static OOM_VICTIMS: LruHashMap<u32, u8> = LruHashMap::with_max_entries(1024, 0);

#[inline(always)]
fn pack(role: u32, level: u32) -> u32 {
    role | (level << 8)
}

#[inline(always)]
fn role_of(value: u32) -> u32 {
    value & 0xff
}

#[inline(always)]
fn level_of(value: u32) -> u32 {
    value >> 8
}

#[inline(always)]
fn current_tgid() -> u32 {
    (bpf_get_current_pid_tgid() >> 32) as u32
}

#[inline(always)]
fn tracked(tgid: u32) -> Option<u32> {
    if !may_hold(tracked_map::RUNTIME_TASKS) {
        return None;
    }
    unsafe { RUNTIME_TASKS.get(&tgid).copied() }
}

#[inline(always)]
fn track(tgid: u32, value: u32) {
    insert_counted(&RUNTIME_TASKS, tracked_map::RUNTIME_TASKS, &tgid, &value);
}

#[inline(always)]
fn is_oom_victim(tgid: u32) -> bool {
    may_hold(tracked_map::OOM_VICTIMS) && unsafe { OOM_VICTIMS.get(&tgid).is_some() }
}

#[inline(always)]
fn current_task() -> *const u8 {
    unsafe { bpf_get_current_task() as *const u8 }
}

/// A task's pid as seen in its own pid namespace, and that namespace's depth.
#[derive(Clone, Copy, Default)]
struct NsPid {
    nr: u32,
    level: u32,
}

/// `task->thread_pid->numbers[level].nr` and `->level`.
#[inline(always)]
fn ns_pid(task: *const u8) -> NsPid {
    let off = &config().process;
    let Some(pid) = read_kernel::<*const u8>(task, off.task_thread_pid) else {
        return NsPid::default();
    };
    let level = read_kernel::<u32>(pid, off.pid_level).unwrap_or(0);
    if off.pid_numbers == NO_FIELD || off.upid_size == NO_FIELD || off.upid_nr == NO_FIELD {
        return NsPid { nr: 0, level };
    }
    // Nesting is limited to 32 levels (MAX_PID_NS_LEVEL); clamp for safety.
    let level = if level > 32 { 32 } else { level };
    let nr_offset = off.pid_numbers + level * off.upid_size + off.upid_nr;
    NsPid { nr: read_kernel::<u32>(pid, nr_offset).unwrap_or(0), level }
}

#[inline(always)]
fn task_tgid(task: *const u8) -> u32 {
    read_kernel::<u32>(task, config().process.task_tgid).unwrap_or(0)
}

#[inline(always)]
fn parent_tgid(task: *const u8) -> u32 {
    match read_kernel::<*const u8>(task, config().process.task_real_parent) {
        Some(parent) => task_tgid(parent),
        None => 0,
    }
}

//! Hook: OOM kills (oom:mark_victim). Its fields grew over time: before 6.8
//! only the pid; the loader fills the offsets the running kernel has.

use aya_ebpf::{
    EbpfContext,
    helpers::bpf_probe_read_kernel_str_bytes,
    macros::tracepoint,
    programs::TracePointContext,
};
use tracer_common::{NO_FIELD, OomKillEvent, TASK_COMM_LEN, hook_mode, kind};

use crate::{config, header, insert_counted, reserve, submit_now, tp_read, tracked_map};
use super::OOM_VICTIMS;

#[tracepoint(category = "oom", name = "mark_victim")]
pub fn tp_mark_victim(ctx: TracePointContext) -> u32 {
    let off = &config().process;
    let victim = tp_read::<u32>(&ctx, off.oom_pid);
    if victim == 0 {
        return 0;
    }
    insert_counted(&OOM_VICTIMS, tracked_map::OOM_VICTIMS, &victim, &1);
    let Some(mut entry) = reserve::<OomKillEvent>() else { return 0 };
    // SAFETY: reserve returned room for an OomKillEvent; every field is set below.
    let e = unsafe { &mut *entry.as_mut_ptr() };
    e.header = header(kind::OOM_KILL, hook_mode::TRACEPOINT);
    e.victim_pid = victim;
    e._pad = 0;
    e.total_vm_kb = tp_read::<u64>(&ctx, off.oom_total_vm);
    e.anon_rss_kb = tp_read::<u64>(&ctx, off.oom_anon_rss);
    e.file_rss_kb = tp_read::<u64>(&ctx, off.oom_file_rss);
    e.shmem_rss_kb = tp_read::<u64>(&ctx, off.oom_shmem_rss);
    e.victim_comm = [0; TASK_COMM_LEN];
    if off.oom_comm != NO_FIELD {
        let loc = tp_read::<u32>(&ctx, off.oom_comm);
        let src = unsafe { (ctx.as_ptr() as *const u8).add((loc & 0xffff) as usize) };
        let _ = unsafe { bpf_probe_read_kernel_str_bytes(src, &mut e.victim_comm) };
    }
    submit_now(entry);
    0
}

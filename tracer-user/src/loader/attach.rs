//! Attaching one hook: each mechanism its row allows, in order, until the
//! kernel accepts one; and attaching again after a pause.


use anyhow::{Context, Result, anyhow};
use aya::{
    Btf, Ebpf,
    programs::{BtfTracePoint, FEntry, FExit, KProbe, RawTracePoint, TracePoint},
};

use super::{Attach, Failure, HeldLink, HookSpec, HookStatus, IpvsProblem, LoadOptions, Mode, Sees};
use crate::kernel::tracefs::{self};

pub(super) fn attach_hook(
    ebpf: &mut Ebpf,
    spec: &HookSpec,
    btf: Option<&Btf>,
    earlier: &[HookStatus],
    ipvs_problem: Option<&IpvsProblem>,
    opts: &LoadOptions,
) -> (HookStatus, Option<(Attach, HeldLink)>) {
    let mut status =
        HookStatus { hook: spec.name, group: spec.groups[0], mode: None, target: None, tried: Vec::new(), limitation: None };
    for candidate in spec.candidates {
        // A disallowed mechanism is not tried at all (and not listed).
        if candidate.mode().is_some_and(|m| !opts.allowed_modes.contains(&m)) {
            continue;
        }
        // Listed, so that the hook report says why it is not attached.
        if let Attach::Tracepoint { category, name, .. } = *candidate
            && candidate.is_syscall_tracepoint()
            && !opts.syscall_tracepoints
        {
            status.tried.push(Failure::syscall_tracepoint_off(format!("{category}:{name}")));
            continue;
        }
        // The row's programs read ip_vs's structs, which this kernel lacks.
        let ipvs_problem = ipvs_problem.filter(|_| spec.sees == Some(Sees::IpvsConnections) && candidate.has_program());
        let (mode, target, result) = match *candidate {
            Attach::Fentry { program, function } => {
                (Mode::Fentry, function.to_string(), attach_fentry(ebpf, program, function, btf).map(Some))
            }
            Attach::FexitSyscall { program, syscall } => {
                let (function, result) = attach_fexit_syscall(ebpf, program, syscall, btf);
                (Mode::Fexit, function, result.map(Some))
            }
            Attach::Kprobe { program, function } => {
                let result = match ipvs_problem {
                    Some(problem) => Err(anyhow::Error::new(problem.clone())),
                    None => attach_kprobe(ebpf, program, function).map(Some),
                };
                (Mode::Kprobe, function.to_string(), result)
            }
            Attach::Tracepoint { program, category, name } => {
                (Mode::Tracepoint, format!("{category}:{name}"), attach_tracepoint(ebpf, program, category, name).map(Some))
            }
            Attach::RawTracepoint { program, name } => {
                (Mode::RawTracepoint, name.to_string(), attach_raw_tracepoint(ebpf, program, name).map(Some))
            }
            Attach::BtfTracepoint { program, name } => {
                (Mode::BtfTracepoint, name.to_string(), attach_btf_tracepoint(ebpf, program, name, btf).map(Some))
            }
            Attach::Via { hook } => {
                let other = earlier.iter().find(|h| h.hook == hook);
                match other.and_then(|h| h.mode.zip(h.target.clone())) {
                    Some((mode, target)) => (mode, target, Ok(None)),
                    None => (Mode::Tracepoint, hook.to_string(), Err(anyhow!("hook {hook} is not attached"))),
                }
            }
            Attach::CoveredBy { hook, modes } => {
                let other = earlier.iter().find(|h| h.hook == hook);
                match other.and_then(|h| h.mode.filter(|m| modes.contains(m)).zip(h.target.clone())) {
                    Some((mode, target)) => (mode, target, Ok(None)),
                    // Not an attach failure: the next candidate is the one needed.
                    None => continue,
                }
            }
            Attach::Inferred { source } => (Mode::Inferred, source.to_string(), Ok(None)),
        };

        match result {
            Ok(link) => {
                status.mode = Some(mode);
                status.target = Some(target);
                return (status, link.map(|l| (*candidate, l)));
            }
            Err(e) => status.tried.push(Failure::from_error(mode, target, &e)),
        }
    }
    (status, None)
}

/// Loads and attaches, unloading again if either step fails, so that the
/// hook's next candidate (or a retry under another name) starts clean.
/// aya's program types share no trait for these, hence the closures.
pub(super) fn load_and_attach<P>(
    prog: &mut P,
    load: impl FnOnce(&mut P) -> Result<()>,
    attach: impl FnOnce(&mut P) -> Result<HeldLink>,
    unload: impl FnOnce(&mut P),
) -> Result<HeldLink> {
    let result = load(prog).and_then(|()| attach(prog));
    if result.is_err() {
        unload(prog);
    }
    result
}

pub(super) fn attach_fentry(ebpf: &mut Ebpf, program: &str, function: &str, btf: Option<&Btf>) -> Result<HeldLink> {
    let btf = btf.ok_or_else(|| anyhow!("no kernel BTF"))?;
    let prog: &mut FEntry = program_mut(ebpf, program)?.try_into()?;
    load_and_attach(prog, |p| Ok(p.load(function, btf)?), link_fentry, |p| drop(p.unload()))
}

pub(super) fn attach_fexit(ebpf: &mut Ebpf, program: &str, function: &str, btf: Option<&Btf>) -> Result<HeldLink> {
    let btf = btf.ok_or_else(|| anyhow!("no kernel BTF"))?;
    let prog: &mut FExit = program_mut(ebpf, program)?.try_into()?;
    load_and_attach(prog, |p| Ok(p.load(function, btf)?), link_fexit, |p| drop(p.unload()))
}

/// Attaches `program` to the function `syscall` enters the kernel through
/// (64-bit ABI only: 32-bit compat callers are not traced by fexit). Both
/// names take `const struct pt_regs *` and return long, so one program
/// fits either: x86's argument-less syscalls (fork, vfork) are aliases of
/// `__do_sys_NAME`, and only that name is in BTF.
pub(super) fn attach_fexit_syscall(ebpf: &mut Ebpf, program: &str, syscall: &str, btf: Option<&Btf>) -> (String, Result<HeldLink>) {
    let prefix = match std::env::consts::ARCH {
        "x86_64" => "__x64_sys_",
        "aarch64" => "__arm64_sys_",
        arch => return (syscall.to_string(), Err(anyhow!("no syscall entry point naming known for {arch}"))),
    };
    let wrapper = format!("{prefix}{syscall}");
    let first = match attach_fexit(ebpf, program, &wrapper, btf) {
        Ok(link) => return (wrapper, Ok(link)),
        Err(e) => e,
    };
    let stub = format!("__do_sys_{syscall}");
    match attach_fexit(ebpf, program, &stub, btf) {
        Ok(link) => (stub, Ok(link)),
        Err(e) => (wrapper, Err(anyhow!("{first:#}; {stub}: {e:#}"))),
    }
}

pub(super) fn attach_kprobe(ebpf: &mut Ebpf, program: &str, function: &str) -> Result<HeldLink> {
    let prog: &mut KProbe = program_mut(ebpf, program)?.try_into()?;
    load_and_attach(prog, |p| Ok(p.load()?), |p| link_kprobe(p, function), |p| drop(p.unload()))
}

pub(super) fn attach_tracepoint(ebpf: &mut Ebpf, program: &str, category: &str, name: &str) -> Result<HeldLink> {
    if !tracefs::tracepoint_exists(category, name) {
        return Err(anyhow!("tracepoint {category}:{name} does not exist on this kernel"));
    }
    let prog: &mut TracePoint = program_mut(ebpf, program)?.try_into()?;
    load_and_attach(prog, |p| Ok(p.load()?), |p| link_tracepoint(p, category, name), |p| drop(p.unload()))
}

pub(super) fn attach_raw_tracepoint(ebpf: &mut Ebpf, program: &str, name: &str) -> Result<HeldLink> {
    let prog: &mut RawTracePoint = program_mut(ebpf, program)?.try_into()?;
    load_and_attach(prog, |p| Ok(p.load()?), |p| link_raw_tracepoint(p, name), |p| drop(p.unload()))
}

pub(super) fn attach_btf_tracepoint(ebpf: &mut Ebpf, program: &str, name: &str, btf: Option<&Btf>) -> Result<HeldLink> {
    let btf = btf.ok_or_else(|| anyhow!("no kernel BTF"))?;
    let prog: &mut BtfTracePoint = program_mut(ebpf, program)?.try_into()?;
    load_and_attach(prog, |p| Ok(p.load(name, btf)?), link_btf_tracepoint, |p| drop(p.unload()))
}

/// Attaches a program that is loaded already (see [`Tracer::resume`]); an
/// fentry or fexit program keeps the function it was loaded for (`target`).
pub(super) fn relink(ebpf: &mut Ebpf, how: &Attach, target: &str) -> Result<HeldLink> {
    match *how {
        Attach::Fentry { program, .. } => relink_tracing(
            program_mut(ebpf, program)?.try_into()?,
            link_fentry,
            |p: &mut FEntry, btf| Ok(p.unload().and_then(|()| p.load(target, btf))?),
        ),
        Attach::FexitSyscall { program, .. } => relink_tracing(
            program_mut(ebpf, program)?.try_into()?,
            link_fexit,
            |p: &mut FExit, btf| Ok(p.unload().and_then(|()| p.load(target, btf))?),
        ),
        Attach::Kprobe { program, function } => link_kprobe(program_mut(ebpf, program)?.try_into()?, function),
        Attach::Tracepoint { program, category, name } => {
            link_tracepoint(program_mut(ebpf, program)?.try_into()?, category, name)
        }
        Attach::RawTracepoint { program, name } => link_raw_tracepoint(program_mut(ebpf, program)?.try_into()?, name),
        Attach::BtfTracepoint { program, name } => relink_tracing(
            program_mut(ebpf, program)?.try_into()?,
            link_btf_tracepoint,
            |p: &mut BtfTracePoint, btf| Ok(p.unload().and_then(|()| p.load(name, btf))?),
        ),
        Attach::Via { .. } | Attach::CoveredBy { .. } | Attach::Inferred { .. } => {
            Err(anyhow!("{how:?} has no program of its own to attach"))
        }
    }
}

/// Before 5.13 the kernel drops a tracing program's target at its first
/// attach, so a second attach fails (ENOENT): the program is then loaded
/// again (verified again, seconds under emulation) and attached.
pub(super) fn relink_tracing<P>(
    prog: &mut P,
    link: fn(&mut P) -> Result<HeldLink>,
    reload: impl FnOnce(&mut P, &Btf) -> Result<()>,
) -> Result<HeldLink> {
    let first = match link(prog) {
        Ok(l) => return Ok(l),
        Err(e) => e,
    };
    let btf = Btf::from_sys_fs().context("reading the kernel's BTF to load a program again")?;
    reload(prog, &btf)
        .and_then(|()| link(prog))
        .map_err(|e| anyhow!("{first:#}; loading it again: {e:#}"))
}

// The link, taken from aya's per-program list so that the tracer decides
// when it is dropped (detached).
pub(super) fn link_fentry(p: &mut FEntry) -> Result<HeldLink> {
    let id = p.attach()?;
    Ok(Box::new(p.take_link(id)?))
}

pub(super) fn link_fexit(p: &mut FExit) -> Result<HeldLink> {
    let id = p.attach()?;
    Ok(Box::new(p.take_link(id)?))
}

pub(super) fn link_btf_tracepoint(p: &mut BtfTracePoint) -> Result<HeldLink> {
    let id = p.attach()?;
    Ok(Box::new(p.take_link(id)?))
}

pub(super) fn link_kprobe(p: &mut KProbe, function: &str) -> Result<HeldLink> {
    let id = p.attach(function, 0)?;
    Ok(Box::new(p.take_link(id)?))
}

pub(super) fn link_tracepoint(p: &mut TracePoint, category: &str, name: &str) -> Result<HeldLink> {
    let id = p.attach(category, name)?;
    Ok(Box::new(p.take_link(id)?))
}

pub(super) fn link_raw_tracepoint(p: &mut RawTracePoint, name: &str) -> Result<HeldLink> {
    let id = p.attach(name)?;
    Ok(Box::new(p.take_link(id)?))
}

pub(super) fn program_mut<'a>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut aya::programs::Program> {
    ebpf.program_mut(name).ok_or_else(|| anyhow!("program {name} missing from the eBPF object"))
}

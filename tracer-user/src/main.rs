//! The `probe-tracer` binary: parses the command line and turns every error
//! into one sentence on stderr and a non-zero exit.

use std::{
    fs::File,
    io::{BufRead, BufReader},
    process::ExitCode,
};

use anyhow::{Context, Result};
use clap::Parser;
use serde_json::json;
use tracer_user::{
    audit,
    cli::{CheckArgs, Cli, Command, ReplayArgs},
    diagnose::{Aggregator, probe::ProbeSettings},
    events::Event,
    kernel::info::KernelInfo,
    loader::{Group, LoadOptions, Mode, Tracer},
    host::ProcHost,
    node::ProcNode,
    output::{Clock, Format, Output},
    run::{cost_notes, daemon, hooks_text, run},
};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Check(args) => check(args),
        Command::Run(args) => tokio_runtime().and_then(|rt| rt.block_on(run(args))),
        Command::Daemon(args) => tokio_runtime().and_then(|rt| rt.block_on(daemon(args))),
        Command::Replay(args) => replay(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line: the cause chain joined, no backtrace.
            eprintln!("probe-tracer: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn tokio_runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// What this kernel lets probe-tracer do, and the node audit. The audit
/// reads procfs only, so it is printed even when tracing is not possible.
fn check(args: CheckArgs) -> Result<()> {
    let info = KernelInfo::probe();
    let mut out = Output::stdout(Format::auto(args.format), Clock::now());
    let findings = audit::audit(&audit::gather(&ProcNode, &ProcHost::default()), &args.nodeport_range);
    let blocker = info.blocker();
    let hooks = match blocker {
        Some(_) => Vec::new(),
        None => {
            let tracer = Tracer::load(&LoadOptions {
                groups: vec![Group::Probe, Group::Exec, Group::Node],
                allowed_modes: Mode::ALL.to_vec(),
                // Shows what `run` gets; the cost note says what that costs.
                syscall_tracepoints: true,
                prober_comms: vec!["kubelet".into()],
                runtime_comms: vec!["runc".into()],
                ringbuf_bytes: 4096,
            })?;
            tracer.hooks.clone()
        }
    };
    let mut text = format!(
        "kernel:      {}\nBTF:         {}\nlockdown:    {}\nprivileges:  {}",
        info.release,
        if info.btf { "yes" } else { "no" },
        info.lockdown,
        if info.privileged { "ok".to_string() } else { format!("missing {}", info.missing_capabilities.join(", ")) },
    );
    let notes = cost_notes(&hooks);
    if !hooks.is_empty() {
        text.push_str("\nhooks:");
        text.push_str(&hooks_text(&hooks, &notes));
    }
    text.push_str("\nnode audit:");
    for f in &findings {
        let status = serde_json::to_value(f.status)?.as_str().unwrap_or("").to_uppercase();
        text.push_str(&format!("\n  {:<16} {:<7} {}", f.check, status, f.message));
        if let Some(fix) = &f.fix {
            text.push_str(&format!("\n  {:<16} {:<7} fix: {fix}", "", ""));
        }
    }
    out.record("check", json!({ "kernel": info, "hooks": hooks, "notes": notes, "audit": findings }), &text)?;
    match blocker {
        Some(sentence) => Err(anyhow::anyhow!(sentence)),
        None => Ok(()),
    }
}

fn replay(args: ReplayArgs) -> Result<()> {
    let file = File::open(&args.file).with_context(|| format!("cannot open {}", args.file.display()))?;
    let settings = ProbeSettings {
        nodeport_range: args.diagnose.nodeport_range.clone(),
        ipvs_observed: !args.ipvs_inferred,
        // Recorded by a kernel side that follows probes to their close.
        follows_close: true,
        ..Default::default()
    };
    let mut agg = Aggregator::new(settings, ProcNode, args.diagnose.exec_settings(), ProcHost::default());
    let mut out = Output::stdout(Format::auto(args.format), Clock::now());
    let mut last_ts = 0;
    for (n, line) in BufReader::new(file).lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let ev: Event = serde_json::from_str(&line)
            .with_context(|| format!("{} line {} is not a recorded event", args.file.display(), n + 1))?;
        last_ts = ev.ts_ns;
        for r in agg.handle(&ev) {
            out.report(&r)?;
        }
    }
    for r in agg.finish(last_ts) {
        out.report(&r)?;
    }
    let summary = agg.summary();
    let text = format!("summary: {}", serde_json::to_string(&summary)?);
    out.record("summary", summary, &text)?;
    Ok(())
}

//! The `probe-tracer` command: parses the command line, runs the
//! subcommand, and turns every error into one sentence on stderr and a
//! non-zero exit. The binary is this function and nothing else, so the
//! library's own items can stay crate-private.

use std::{fs::File, io::BufReader, process::ExitCode};

use anyhow::{Context, Result};
use clap::{CommandFactory, Parser};

use crate::{
    check,
    cli::{Cli, Command, ReplayArgs},
    diagnose::{Correlators, probe::ProbeSettings},
    network::LiveNetwork,
    output::{Clock, Format, Output, text},
    processes::LiveProcesses,
    replay::Recording,
    run::{daemon, run},
};

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Check(args) => match check::check(args) {
            Ok(status) => return status.exit_code(),
            Err(e) => Err(e),
        },
        Command::Completions(args) => {
            let mut script = Vec::new();
            clap_complete::generate(args.shell, &mut Cli::command(), "probe-tracer", &mut script);
            std::io::Write::write_all(&mut std::io::stdout(), &script).context("cannot write the completion script")
        }
        Command::Run(args) => tokio_runtime().and_then(|rt| rt.block_on(run(args))),
        Command::Daemon(args) => tokio_runtime().and_then(|rt| rt.block_on(daemon(args))),
        Command::Replay(args) => replay(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // A closed stderr loses the sentence, not the exit status.
            crate::output::warn(&text::error(&e));
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

fn replay(args: ReplayArgs) -> Result<()> {
    let file = File::open(&args.file).with_context(|| format!("cannot open {}", args.file.display()))?;
    let settings = ProbeSettings {
        nodeport_range: args.diagnose.nodeport_range.clone(),
        ipvs_observed: !args.ipvs_inferred,
        // Recorded by a kernel side that follows probes to their close.
        follows_close: true,
        drop_names: crate::diagnose::probe::DropNames {
            reasons: std::sync::Arc::new(crate::kernel::btf::KernelBtf::load().map(|b| b.drop_reasons()).unwrap_or_default()),
            host_netns: crate::network::own_netns(),
        },
        ..Default::default()
    };
    let mut correlators = Correlators::new(settings, LiveNetwork, args.diagnose.exec_settings(), LiveProcesses::default());
    let recording = Recording::new(BufReader::new(file), args.file.display().to_string());
    // A recording starts with its boot's clock; older ones are placed by
    // this boot's.
    let clock = recording.header.as_ref().map_or_else(Clock::now, Clock::recorded);
    let mut out = Output::stdout(Format::auto(args.format), clock);
    crate::replay::replay(recording, &mut correlators, &mut out)?;
    Ok(())
}

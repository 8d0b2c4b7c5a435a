//! `probe-tracer replay FILE`: a recording's header and JSON lines, run
//! through the whole diagnosis and both output formats, as the command
//! does (against fixed node and host answers instead of this machine's).
#![no_main]

use libfuzzer_sys::fuzz_target;
use tracer_user::{
    diagnose::{Correlators, exec::ExecSettings, probe::ProbeSettings},
    processes::StaticProcesses,
    network::StaticNetwork,
    output::{Clock, Format, Output},
    replay::{Recording, replay},
};

fuzz_target!(|data: &[u8]| {
    // As `replay` sets them: recorded by a kernel side that follows probes to their close.
    let settings = ProbeSettings { follows_close: true, ..Default::default() };
    for format in [Format::Json, Format::Text] {
        let recording = Recording::new(data, "fuzz");
        let clock = recording.header.as_ref().map_or_else(Clock::now, Clock::recorded);
        let mut out = Output::to_writer(format, clock, Box::new(std::io::sink()));
        let mut agg = Correlators::new(settings.clone(), StaticNetwork::default(), ExecSettings::default(), StaticProcesses::default());
        let _ = replay(recording, &mut agg, &mut out);
    }
});

//! The container runtime's state files: runc's `state.json` and crun's
//! `status` (their cgroup paths and annotations come from the pod), and
//! the `/proc/PID/stat` line whose start time says the init is the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tracer_user::processes::{parse_crun_status, parse_runc_state, start_time_from_stat};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    parse_runc_state(&text);
    parse_crun_status(&text, "c1");
    start_time_from_stat(data);
});

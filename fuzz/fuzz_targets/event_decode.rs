//! Ring-buffer record bytes (what the kernel side writes) -> events, and
//! each event through JSON and back, as `run --record` and `replay` do.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tracer_user::events::{Event, decode};

fuzz_target!(|data: &[u8]| {
    for ev in decode(data).into_iter().flatten() {
        let json = serde_json::to_string(&ev).expect("an event serialises");
        let back: Event = serde_json::from_str(&json).expect("a recorded event reads back");
        assert_eq!(back, ev, "{json}");
    }
});

//! Writing reports: one JSON object per line, or one sentence per line.

use std::{
    io::{self, IsTerminal, Write},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use anyhow::Result;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::diagnose::Report;

pub mod text;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Text,
    Json,
}

impl Format {
    /// Text for a person at a terminal, JSON for a pipe or a log collector.
    pub fn auto(requested: Option<Format>) -> Format {
        requested.unwrap_or(if io::stdout().is_terminal() { Format::Text } else { Format::Json })
    }
}

/// Converts kernel CLOCK_MONOTONIC timestamps to wall-clock time.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    realtime_minus_monotonic_ns: i128,
}

impl Clock {
    pub fn now() -> Self {
        let real = clock_ns(libc::CLOCK_REALTIME);
        let mono = clock_ns(libc::CLOCK_MONOTONIC);
        Self { realtime_minus_monotonic_ns: real - mono }
    }

    /// The clock of a recording's header: a replay prints the times its
    /// events happened at, on whatever boot and machine it runs.
    pub fn recorded(header: &RecordingHeader) -> Self {
        Self { realtime_minus_monotonic_ns: header.recording.realtime_minus_monotonic_ns.into() }
    }

    /// The header a recording starts with.
    pub fn header(&self) -> RecordingHeader {
        RecordingHeader { recording: RecordingClock { realtime_minus_monotonic_ns: self.realtime_minus_monotonic_ns as i64 } }
    }

    pub fn monotonic_now_ns() -> u64 {
        clock_ns(libc::CLOCK_MONOTONIC) as u64
    }

    pub fn wall(&self, monotonic_ns: u64) -> SystemTime {
        let ns = (monotonic_ns as i128 + self.realtime_minus_monotonic_ns).max(0) as u128;
        UNIX_EPOCH + Duration::from_nanos(ns as u64)
    }

    /// RFC 3339 UTC with nanoseconds: "2026-11-22T14:40:28.123456789Z".
    pub fn rfc3339(&self, monotonic_ns: u64) -> String {
        humantime::format_rfc3339_nanos(self.wall(monotonic_ns)).to_string()
    }
}

/// The first line of a `--record` file. Event times are the kernel's
/// CLOCK_MONOTONIC, which restarts at every boot: without this a replay
/// would place them by the replaying boot's clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordingHeader {
    pub recording: RecordingClock,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordingClock {
    pub realtime_minus_monotonic_ns: i64,
}

fn clock_ns(clock: libc::clockid_t) -> i128 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: valid pointer to a timespec.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts.tv_sec as i128 * 1_000_000_000 + ts.tv_nsec as i128
}

pub struct Output {
    format: Format,
    clock: Clock,
    out: Box<dyn Write + Send>,
}

impl Output {
    pub fn stdout(format: Format, clock: Clock) -> Self {
        Self { format, clock, out: Box::new(io::stdout()) }
    }

    pub fn to_writer(format: Format, clock: Clock, out: Box<dyn Write + Send>) -> Self {
        Self { format, clock, out }
    }

    pub fn format(&self) -> Format {
        self.format
    }

    pub fn report(&mut self, r: &Report) -> Result<()> {
        match self.format {
            Format::Json => self.json_line(report_json(r, &self.clock)),
            // The story report that follows says it in one line.
            Format::Text if r.grouped => Ok(()),
            Format::Text => {
                let time = self.clock.rfc3339(r.ts_ns);
                // HH:MM:SS.mmm is enough on a terminal.
                let short = time.get(11..23).unwrap_or(&time);
                // The message quotes what containers control (comm, argv,
                // IDs, cgroup paths, pod names): no terminal escapes.
                writeln!(self.out, "{short} {}: {}", r.kind, escape_controls(&r.message, false))?;
                self.out.flush()?;
                Ok(())
            }
        }
    }

    /// A record that is not a report (start, summary): JSON gets the object
    /// with `kind` and `ts` first; text gets `text`.
    pub fn record(&mut self, kind: &str, fields: impl Serialize, text: &str) -> Result<()> {
        match self.format {
            Format::Json => {
                let mut obj = Map::new();
                obj.insert("kind".into(), json!(kind));
                obj.insert("ts".into(), json!(self.clock.rfc3339(Clock::monotonic_now_ns())));
                if let Value::Object(rest) = serde_json::to_value(fields)? {
                    obj.extend(rest);
                }
                self.json_line(Value::Object(obj))
            }
            Format::Text => {
                writeln!(self.out, "{}", escape_controls(text, true))?;
                self.out.flush()?;
                Ok(())
            }
        }
    }

    fn json_line(&mut self, v: Value) -> Result<()> {
        serde_json::to_writer(&mut self.out, &v)?;
        self.out.write_all(b"\n")?;
        self.out.flush()?;
        Ok(())
    }
}

/// Text output's defence against terminal escape injection (the class of
/// kubectl's CVE-2021-25743): every control character (C0, DEL, C1) and
/// the bidirectional overrides are written as `\xNN` / `\u{NNNN}`, and a
/// backslash as `\\`, so what a container named itself is shown, never
/// obeyed. `keep_newlines` lets a multi-line record (the hook list) keep
/// its own line breaks. JSON output needs none of this: serde escapes.
pub fn escape_controls(s: &str, keep_newlines: bool) -> std::borrow::Cow<'_, str> {
    let needs = |c: char| (c.is_control() && !(keep_newlines && c == '\n')) || c == '\\' || is_bidi_control(c);
    if !s.chars().any(needs) {
        return std::borrow::Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            c if needs(c) && (c as u32) < 0x100 => out.push_str(&format!("\\x{:02x}", c as u32)),
            c if needs(c) => out.push_str(&format!("\\u{{{:04x}}}", c as u32)),
            c => out.push(c),
        }
    }
    std::borrow::Cow::Owned(out)
}

fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{200e}' | '\u{200f}' | '\u{061c}')
}

/// A line on stderr that cannot panic: a closed stderr loses the line.
pub fn warn(msg: &str) {
    let _ = writeln!(io::stderr(), "probe-tracer: {msg}");
}

/// The JSON contract: `kind`, `ts`, then the report as it serializes
/// (`pid`, `comm`, its fields, `message`: see diagnose/report.rs).
pub fn report_json(r: &Report, clock: &Clock) -> Value {
    let mut obj = Map::new();
    obj.insert("kind".into(), json!(r.kind));
    obj.insert("ts".into(), json!(clock.rfc3339(r.ts_ns)));
    if let Value::Object(rest) = r.to_json() {
        obj.extend(rest.into_iter().filter(|(k, _)| k != "kind"));
    }
    Value::Object(obj)
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_recording_header_gives_the_recording_boots_wall_times() {
        let header: RecordingHeader = serde_json::from_str(r#"{"recording":{"realtime_minus_monotonic_ns":1764600000000000000}}"#).unwrap();
        let clock = Clock::recorded(&header);
        assert_eq!(clock.header(), header);
        assert_eq!(clock.rfc3339(5_000_000_000), "2025-12-01T14:40:05.000000000Z");
        // An event line is no header.
        assert!(serde_json::from_str::<RecordingHeader>(r#"{"ts_ns":1,"pid":1,"event":"exit"}"#).is_err());
    }

    use super::*;
    use crate::events::{Body, Event, Mode};

    #[test]
    fn json_report_has_the_contract_fields_in_order() {
        let ev = Event { ts_ns: 5, pid: 7, tid: 7, comm: "kubelet".into(), cgroup_id: 0, mode: Mode::Kprobe, body: Body::Fork { child_tid: 1 } };
        let r = Report::new("probe_refused", &ev).with("sport", 40000).message("m".into());
        let v = report_json(&r, &Clock::now());
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(keys, ["kind", "ts", "pid", "comm", "sport", "message"]);
        assert!(v["ts"].as_str().unwrap().ends_with('Z'));
    }

    #[test]
    fn text_output_escapes_what_containers_control() {
        assert_eq!(escape_controls("plain runc exec c9", false), "plain runc exec c9");
        assert_eq!(escape_controls("a\x1b]0;pwned\x07b", false), "a\\x1b]0;pwned\\x07b");
        assert_eq!(escape_controls("x\ry\nz\t", false), "x\\x0dy\\x0az\\x09");
        assert_eq!(escape_controls("c1 \u{9b}31m", false), "c1 \\x9b31m");
        assert_eq!(escape_controls("rtl \u{202e}gpj.exe", false), "rtl \\u{202e}gpj.exe");
        assert_eq!(escape_controls("a\\x1b", false), "a\\\\x1b", "a literal backslash cannot forge an escape");
        assert_eq!(escape_controls("one\ntwo\x1b", true), "one\ntwo\\x1b");

        let ev = Event { ts_ns: 5, pid: 7, tid: 7, comm: "evil\x1b[2J".into(), cgroup_id: 0, mode: Mode::Kprobe, body: Body::Fork { child_tid: 1 } };
        let r = Report::new("fork_failed", &ev).message("fork failed in evil\x1b[2J (container \x1b]8;;http://x\x07id)".into());
        let buf = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        struct Shared(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);
        impl Write for Shared {
            fn write(&mut self, b: &[u8]) -> io::Result<usize> {
                self.0.lock().unwrap().write(b)
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let mut out = Output::to_writer(Format::Text, Clock::now(), Box::new(Shared(buf.clone())));
        out.report(&r).unwrap();
        out.record("summary", json!({}), "line one\nline \x1b[31mtwo").unwrap();
        let text = String::from_utf8(buf.lock().unwrap().clone()).unwrap();
        assert!(!text.chars().any(|c| c.is_control() && c != '\n'), "{text:?}");
        assert!(text.contains("evil\\x1b[2J"), "{text}");
        assert_eq!(text.lines().count(), 3, "{text}");
    }

    #[test]
    fn clock_maps_monotonic_now_close_to_wall_now() {
        let clock = Clock::now();
        let wall = clock.wall(Clock::monotonic_now_ns());
        let delta = SystemTime::now().duration_since(wall).unwrap_or_default();
        assert!(delta < Duration::from_secs(1));
    }
}

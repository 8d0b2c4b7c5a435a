//! `probe-tracer replay FILE`: a `run --record` file read back (its clock
//! header, then one event per line) and run through the diagnosis.

use std::io::{BufRead, Read};

use anyhow::{Context, Result, anyhow};

use crate::{
    diagnose::Correlators,
    events::Event,
    processes::ProcessFacts,
    network::NetworkFacts,
    output::{Output, RecordingHeader},
};

/// Longest line read: a recorded event is a few KB (argv and a response's
/// head at most); a longer line is not one, and is not held in memory.
pub const LINE_MAX: usize = 1 << 20;

/// A recording's events, in order, after its header.
pub struct Recording<R> {
    reader: R,
    name: String,
    lines_read: usize,
    /// The first line, when it was not a header.
    pending: Option<(usize, Result<String>)>,
    /// Set at the first error: nothing after it is read.
    done: bool,
    /// The boot's clock the recording starts with; older recordings have none.
    pub header: Option<RecordingHeader>,
}

impl<R: BufRead> Recording<R> {
    /// Reads the header, if the first line is one; `name` names the file in errors.
    pub fn new(reader: R, name: impl Into<String>) -> Self {
        let mut r = Self { reader, name: name.into(), lines_read: 0, pending: None, done: false, header: None };
        r.pending = r.read_line();
        if let Some((_, Ok(first))) = &r.pending
            && let Ok(h) = serde_json::from_str::<RecordingHeader>(first)
        {
            r.header = Some(h);
            r.pending = None;
        }
        r
    }

    /// The next line's number and text without its newline, at most
    /// [`LINE_MAX`] bytes.
    fn read_line(&mut self) -> Option<(usize, Result<String>)> {
        let mut raw = Vec::new();
        let read = (&mut self.reader).take(LINE_MAX as u64 + 1).read_until(b'\n', &mut raw);
        self.lines_read += 1;
        let n = self.lines_read;
        let line = match read {
            Ok(0) => return None,
            Err(e) => Err(e).with_context(|| format!("cannot read {}", self.name)),
            Ok(_) if raw.last() == Some(&b'\n') => {
                raw.pop();
                String::from_utf8(raw).with_context(|| format!("{} line {n} is not a recorded event", self.name))
            }
            Ok(_) if raw.len() > LINE_MAX => Err(anyhow!("{} line {n} is longer than {LINE_MAX} bytes: not a recorded event", self.name)),
            Ok(_) => String::from_utf8(raw).with_context(|| format!("{} line {n} is not a recorded event", self.name)),
        };
        Some((n, line))
    }
}

impl<R: BufRead> Iterator for Recording<R> {
    type Item = Result<Event>;

    fn next(&mut self) -> Option<Result<Event>> {
        while !self.done {
            let (n, line) = match self.pending.take() {
                Some(pending) => pending,
                None => self.read_line()?,
            };
            let parsed = line.and_then(|line| {
                if line.trim().is_empty() {
                    return Ok(None);
                }
                serde_json::from_str(&line).map(Some).with_context(|| format!("{} line {n} is not a recorded event", self.name))
            });
            match parsed {
                Ok(None) => continue,
                Ok(Some(ev)) => return Some(Ok(ev)),
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
            }
        }
        None
    }
}

/// Runs every event of `recording` through `agg`, then its end, writing
/// the reports and the summary to `out`.
pub fn replay<R: BufRead, N: NetworkFacts, H: ProcessFacts + Clone>(
    recording: Recording<R>,
    agg: &mut Correlators<N, H>,
    out: &mut Output,
) -> Result<()> {
    let mut last_ts = 0;
    for ev in recording {
        let ev = ev?;
        last_ts = ev.ts_ns;
        for r in agg.handle(&ev) {
            out.report(&r)?;
        }
    }
    for r in agg.finish(last_ts) {
        out.report(&r)?;
    }
    let summary = agg.summary();
    let text = crate::output::text::replay_summary(&summary)?;
    out.record("summary", summary, &text)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const EVENT: &str = r#"{"ts_ns":1,"pid":2,"tid":2,"comm":"runc","cgroup_id":9,"mode":"tracepoint","event":"fork","child_tid":3}"#;

    #[test]
    fn a_header_then_events_with_blank_lines_between() {
        let text = format!("{{\"recording\":{{\"realtime_minus_monotonic_ns\":5}}}}\n{EVENT}\n\n  \n{EVENT}");
        let r = Recording::new(text.as_bytes(), "rec");
        assert_eq!(r.header.map(|h| h.recording.realtime_minus_monotonic_ns), Some(5));
        assert_eq!(r.map(|e| e.unwrap().pid).collect::<Vec<_>>(), [2, 2]);
        // Older recordings start with an event.
        let r = Recording::new(EVENT.as_bytes(), "rec");
        assert!(r.header.is_none());
        assert_eq!(r.count(), 1);
    }

    #[test]
    fn a_bad_line_is_named_by_its_number_and_ends_the_reading() {
        let text = format!("{{\"recording\":{{\"realtime_minus_monotonic_ns\":5}}}}\n{EVENT}\nnot json\n{EVENT}\n");
        let results: Vec<_> = Recording::new(text.as_bytes(), "rec").collect();
        assert_eq!(results.len(), 2);
        assert_eq!(results[1].as_ref().unwrap_err().to_string(), "rec line 3 is not a recorded event");
        let long = format!("{EVENT}\n{}\n{EVENT}\n", "x".repeat(LINE_MAX + 10));
        let results: Vec<_> = Recording::new(long.as_bytes(), "rec").collect();
        assert_eq!(results.len(), 2);
        assert!(results[1].as_ref().unwrap_err().to_string().starts_with("rec line 2 is longer than"), "{results:?}");
        let bad_utf8 = b"\xff\xfe\n";
        assert!(Recording::new(&bad_utf8[..], "rec").next().unwrap().is_err());
    }
}

//! A connected probe's phases, from its close: what failed after the
//! handshake.

use tracer_common::tcp_state::{TCP_CLOSE, TCP_CLOSE_WAIT, TCP_FIN_WAIT1};

use super::{Attempt, ECONNRESET, SLOW_ANSWER_MS};
use crate::{
    diagnose::Report,
    events::{Event, TcpClose},
};

/// What failed after the handshake.
pub(super) enum Failure {
    NoResponse,
    HttpError(u16),
    /// Reset or closed by the pod before answering.
    DroppedByPod,
}

/// A connected probe's phases, from its close.
pub(super) struct Phases {
    pub(super) connect_ms: u64,
    /// From the connect to the close.
    pub(super) elapsed_ms: u64,
    /// From ESTABLISHED to the close.
    pub(super) after_ms: u64,
    pub(super) request_bytes: u64,
    pub(super) request_acked: bool,
    pub(super) unacked: u64,
    pub(super) response_bytes: u64,
    /// From ESTABLISHED to the first response byte, where seen.
    pub(super) response_ms: Option<u64>,
    pub(super) http_status: Option<u16>,
    pub(super) closed_by: &'static str,
    pub(super) closed_with: &'static str,
    pub(super) responses_observed: bool,
    pub(super) still_open: bool,
}

impl Phases {
    /// An answer slow enough to be worth its container's CPU window.
    pub(super) fn slow(&self) -> bool {
        self.response_ms.is_some_and(|ms| ms >= SLOW_ANSWER_MS)
    }

    pub(super) fn of(a: &Attempt, ev: &Event, close: &TcpClose, responses_observed: bool) -> Self {
        let ms = |from: u64, to: u64| to.saturating_sub(from) / 1_000_000;
        let established = a.established_ns.unwrap_or(close.established_ts_ns);
        let (closed_by, closed_with) = match close.info.newstate {
            TCP_FIN_WAIT1 => ("prober", "fin"),
            TCP_CLOSE_WAIT => ("pod", "fin"),
            TCP_CLOSE if close.sk_err == ECONNRESET => ("pod", "rst"),
            TCP_CLOSE => ("prober", "rst"),
            _ => ("nobody", "none"),
        };
        Self {
            connect_ms: ms(a.started.ts_ns, established),
            elapsed_ms: ms(a.started.ts_ns, ev.ts_ns),
            after_ms: ms(established, ev.ts_ns),
            request_bytes: close.request_bytes,
            request_acked: close.request_acked,
            unacked: close.request_unacked,
            response_bytes: close.response_bytes,
            response_ms: close.first_response_ts_ns.map(|t| ms(established, t)),
            http_status: close.http_status(),
            closed_by,
            closed_with,
            responses_observed,
            still_open: close.still_open(),
        }
    }

    /// A TCP probe (nothing sent) passes by connecting; one that sent a
    /// request fails without an answer or with an HTTP error.
    pub(super) fn failure(&self) -> Option<Failure> {
        if self.request_bytes == 0 || self.still_open {
            return None;
        }
        if let Some(status) = self.http_status.filter(|s| *s >= 400) {
            return Some(Failure::HttpError(status));
        }
        if self.response_bytes > 0 {
            return None;
        }
        match self.closed_by {
            "pod" => Some(Failure::DroppedByPod),
            _ => Some(Failure::NoResponse),
        }
    }

    /// The phases in words, for the attempt's record.
    pub(super) fn text(&self) -> String {
        let answer = match (self.response_bytes, self.response_ms, self.http_status) {
            (0, _, _) if !self.responses_observed => "nothing back that the kernel could see".to_string(),
            (0, _, _) => "nothing back".to_string(),
            (n, ms, status) => format!(
                "{n} bytes back{}{}",
                status.map(|s| format!(" (HTTP {s})")).unwrap_or_default(),
                ms.map(|ms| format!(" after {ms} ms")).unwrap_or_default()
            ),
        };
        let closed = if self.still_open {
            "still open: not a probe".to_string()
        } else {
            format!("closed by the {} ({}) at {} ms", self.closed_by, self.closed_with.to_uppercase(), self.elapsed_ms)
        };
        format!("connected in {} ms, sent {} bytes, {answer}, {closed}", self.connect_ms, self.request_bytes)
    }

    pub(super) fn add_to(&self, r: Report) -> Report {
        let r = r
            .with("request_bytes", self.request_bytes)
            .with("request_acked", self.request_acked)
            .with("response_bytes", self.response_bytes)
            .with("response_ms", self.response_ms)
            .with("connect_ms", self.connect_ms)
            .with("elapsed_ms", self.elapsed_ms)
            .with("closed_by", self.closed_by)
            .with("closed_with", self.closed_with);
        let r = r.with("http_status", self.http_status);
        if self.responses_observed { r } else { r.with("response_observed", false) }
    }
}

//! Correlation and diagnosis: plain Rust over decoded [`Event`]s, no kernel
//! in the loop. Each correlator turns a stream of events into [`Report`]s:
//! verdicts (something failed, and why) and per-attempt records.

pub mod probe;

use std::net::IpAddr;

use serde::Serialize;
use serde_json::{Map, Value};

use crate::events::Event;

/// One line of output: a verdict or a record, with the fields every kind
/// shares and kind-specific ones in `fields`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// `synack_diverted`, `probe_timeout`, ... (a contract: keep spellings).
    pub kind: &'static str,
    /// CLOCK_MONOTONIC ns of the event that decided it; rendered as `ts`.
    #[serde(skip)]
    pub ts_ns: u64,
    pub pid: u32,
    pub comm: String,
    /// Kind-specific fields, flattened into the JSON object.
    #[serde(flatten)]
    pub fields: Map<String, Value>,
    /// The one sentence a person on call reads.
    pub message: String,
}

impl Report {
    pub fn new(kind: &'static str, ev: &Event) -> Self {
        Self {
            kind,
            ts_ns: ev.ts_ns,
            pid: ev.pid,
            comm: ev.comm.clone(),
            fields: Map::new(),
            message: String::new(),
        }
    }

    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.fields.insert(key.to_string(), value.into());
        self
    }

    pub fn with_ip(self, key: &str, ip: IpAddr) -> Self {
        self.with(key, ip.to_string())
    }

    pub fn message(mut self, message: String) -> Self {
        self.message = message;
        self
    }

    /// Verdicts say something failed; other reports are records.
    pub fn is_verdict(&self) -> bool {
        VERDICT_KINDS.contains(&self.kind)
    }

    pub fn field_str(&self, key: &str) -> Option<&str> {
        self.fields.get(key).and_then(Value::as_str)
    }
}

/// Every verdict kind probe-tracer emits.
pub const VERDICT_KINDS: &[&str] = &[
    "synack_diverted",
    "probe_refused",
    "probe_timeout",
    "fork_failed",
    "setns_failed",
    "runc_init_died",
    "container_init_exit",
    "exec_into_stopped_container",
    "oom_kill",
    "runtime_slow",
];

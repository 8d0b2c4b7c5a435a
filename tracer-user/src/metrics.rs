//! Prometheus metrics and `/healthz` for `probe-tracer daemon`.
//!
//! The registry is filled from the reports the aggregator produces and from
//! the kernel-side counters; it is served over HTTP by hyper.

use std::{
    collections::VecDeque,
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use anyhow::{Context, Result};
use http_body_util::Full;
use hyper::{Request, Response, StatusCode, body::Bytes, server::conn::http1, service::service_fn};
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus_client::{
    encoding::{EncodeLabelSet, text::encode},
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};
use tokio::{net::TcpListener, task::AbortHandle};

use crate::{
    diagnose::{Report, catalogue::Class},
    loader::{HookStatus, KernelCounters},
};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VerdictLabels {
    pub kind: String,
    /// The kind's cause in one word: errno name, evidence, OOM constraint...
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HookLabels {
    pub hook: String,
    pub mode: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SubcommandLabels {
    pub subcommand: String,
}

pub struct Metrics {
    registry: Registry,
    verdicts: Family<VerdictLabels, Counter>,
    connections: Family<OutcomeLabels, Counter>,
    events: Counter,
    lost_events: Counter,
    tracking_map_full: Counter,
    tracking_map_evictions: Counter,
    missed_program_runs: Counter,
    hooks: Family<HookLabels, Gauge>,
    ringbuf_fill: Gauge<f64, std::sync::atomic::AtomicU64>,
    runtime_calls: Family<SubcommandLabels, Histogram>,
    kubernetes_events: Family<ResultLabels, Counter>,
    throttled: Counter,
    /// Kernel counters are cumulative; the Prometheus counters get deltas.
    last_kernel: Mutex<(u64, u64, u64, u64)>,
    /// Unix seconds of the last pass of the event loop (for /healthz).
    last_loop: AtomicU64,
}

impl Metrics {
    pub fn new() -> Arc<Self> {
        let mut registry = Registry::with_prefix("probe_tracer");
        let verdicts = Family::<VerdictLabels, Counter>::default();
        let connections = Family::<OutcomeLabels, Counter>::default();
        let events = Counter::default();
        let lost_events = Counter::default();
        let tracking_map_full = Counter::default();
        let tracking_map_evictions = Counter::default();
        let missed_program_runs = Counter::default();
        let hooks = Family::<HookLabels, Gauge>::default();
        let ringbuf_fill = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
        let runtime_calls = Family::<SubcommandLabels, Histogram>::new_with_constructor(|| {
            // 1 ms .. ~65 s: a runc call past a few seconds is the PLEG's problem.
            Histogram::new([0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0])
        });
        let kubernetes_events = Family::<ResultLabels, Counter>::default();
        let throttled = Counter::default();
        registry.register("verdicts", "Verdicts by kind and reason", verdicts.clone());
        registry.register("probe_connections", "Prober TCP connections by outcome", connections.clone());
        registry.register("events", "Events received from the kernel", events.clone());
        registry.register("lost_events", "Events the ring buffer had no room for", lost_events.clone());
        registry.register("tracking_map_full", "Sockets or pids the tracking maps could not take", tracking_map_full.clone());
        registry.register(
            "tracking_map_evictions",
            "Sockets or pids the LRU tracking maps evicted before they were done with",
            tracking_map_evictions.clone(),
        );
        registry.register(
            "missed_program_runs",
            "Program runs the kernel skipped because the program was already running on that CPU",
            missed_program_runs.clone(),
        );
        registry.register("hook_attached", "1 for the mechanism each hook got", hooks.clone());
        registry.register("ringbuf_fill_ratio", "Highest ring buffer fill since the last update (0..1)", ringbuf_fill.clone());
        registry.register("runtime_call_duration_seconds", "Duration of container runtime (runc) calls", runtime_calls.clone());
        registry.register(
            "kubernetes_events",
            "Kubernetes Events for verdicts (--emit-events): posted, deduplicated, failed, dropped",
            kubernetes_events.clone(),
        );
        registry.register(
            "throttled_reports",
            "Reports not printed or posted because their source (a cgroup, a probed pod) exceeded its rate limit",
            throttled.clone(),
        );
        Arc::new(Self {
            registry,
            verdicts,
            connections,
            events,
            lost_events,
            tracking_map_full,
            tracking_map_evictions,
            missed_program_runs,
            hooks,
            ringbuf_fill,
            runtime_calls,
            kubernetes_events,
            throttled,
            last_kernel: Mutex::new((0, 0, 0, 0)),
            last_loop: AtomicU64::new(now_secs()),
        })
    }

    pub fn hooks(&self, hooks: &[HookStatus]) {
        for h in hooks {
            let mode = h.mode.map_or("none".to_string(), |m| m.to_string());
            self.hooks.get_or_create(&HookLabels { hook: h.hook.to_string(), mode }).set(1);
        }
    }

    /// Counts a report as its catalogue row says (diagnose/catalogue.rs).
    pub fn report(&self, r: &Report) {
        match r.catalogued().map(|k| k.class) {
            Some(Class::Attempt) => {
                let outcome = r.field_str("outcome").unwrap_or("unknown").to_string();
                self.connections.get_or_create(&OutcomeLabels { outcome }).inc();
            }
            Some(Class::Verdict { metric_reason, .. }) => {
                let reason = metric_reason.and_then(|k| r.text_of(k)).unwrap_or("").to_string();
                self.verdicts.get_or_create(&VerdictLabels { kind: r.kind.to_string(), reason }).inc();
            }
            Some(Class::Record) | None => {}
        }
    }

    /// Healthy probes the kernel counted without sending a record each.
    pub fn established(&self, n: u64) {
        if n > 0 {
            self.connections.get_or_create(&OutcomeLabels { outcome: "established".into() }).inc_by(n);
        }
    }

    pub fn events(&self, n: u64) {
        self.events.inc_by(n);
    }

    pub fn events_seen(&self) -> u64 {
        self.events.get()
    }

    pub fn runtime_call(&self, subcommand: &str, ns: u64) {
        self.runtime_calls
            .get_or_create(&SubcommandLabels { subcommand: subcommand.to_string() })
            .observe(ns as f64 / 1e9);
    }

    pub fn throttled(&self) {
        self.throttled.inc();
    }

    pub fn kubernetes_event(&self, result: &str) {
        self.kubernetes_events.get_or_create(&ResultLabels { result: result.to_string() }).inc();
    }

    /// Kernel counters (cumulative) and the ring buffer's fill high-water.
    pub fn kernel(&self, c: &KernelCounters, fill_ratio: f64) {
        let mut last = self.last_kernel.lock().expect("metrics lock");
        let missed = c.missed_runs.unwrap_or(0);
        let evicted = c.map_evictions.unwrap_or(0);
        self.lost_events.inc_by(c.ringbuf_full.saturating_sub(last.0));
        self.tracking_map_full.inc_by(c.map_full.saturating_sub(last.1));
        self.missed_program_runs.inc_by(missed.saturating_sub(last.2));
        self.tracking_map_evictions.inc_by(evicted.saturating_sub(last.3));
        *last = (c.ringbuf_full.max(last.0), c.map_full.max(last.1), missed.max(last.2), evicted.max(last.3));
        self.ringbuf_fill.set(fill_ratio);
    }

    /// The event loop is alive.
    pub fn heartbeat(&self) {
        self.last_loop.store(now_secs(), Ordering::Relaxed);
    }

    pub fn healthy(&self) -> bool {
        now_secs().saturating_sub(self.last_loop.load(Ordering::Relaxed)) <= 10
    }

    pub fn encode(&self) -> String {
        let mut text = String::new();
        encode(&mut text, &self.registry).expect("encoding to a String cannot fail");
        text
    }
}

fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO).as_secs()
}

/// What one flooded or slow client may cost the metrics server.
#[derive(Debug, Clone, Copy)]
pub struct ServerLimits {
    /// Connections served at once. One more evicts the oldest, so a flood
    /// of idle connections cannot keep the kubelet's /healthz out.
    pub max_connections: usize,
    /// A request's headers must arrive within this (slowloris).
    pub header_timeout: Duration,
    /// A connection is closed (gracefully) after this, however busy.
    pub connection_lifetime: Duration,
    /// Longest pause after failing accepts (EMFILE, ENFILE, ENOBUFS).
    pub max_accept_backoff: Duration,
}

impl Default for ServerLimits {
    fn default() -> Self {
        Self {
            max_connections: 64,
            header_timeout: Duration::from_secs(5),
            connection_lifetime: Duration::from_secs(60),
            max_accept_backoff: Duration::from_secs(1),
        }
    }
}

/// Serves `/metrics` and `/healthz` on a thread of its own, with its own
/// runtime: a flooded or slow server cannot stall event draining, and a
/// busy event loop cannot keep /healthz from answering (it then says
/// whether the loop still beats). Binding happens here, so a bad address is
/// reported before anything is loaded.
pub fn serve(addr: SocketAddr, metrics: Arc<Metrics>, limits: ServerLimits) -> Result<()> {
    let listener = std::net::TcpListener::bind(addr)
        .with_context(|| format!("cannot listen on {addr} for metrics (--metrics-addr)"))?;
    listener.set_nonblocking(true)?;
    std::thread::Builder::new()
        .name("metrics".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(rt) => rt,
                Err(e) => return tracing::error!("metrics server: cannot start its runtime: {e}"),
            };
            rt.block_on(async move {
                let listener = match TcpListener::from_std(listener) {
                    Ok(l) => l,
                    Err(e) => return tracing::error!("metrics server: {e}"),
                };
                accept_loop(|| listener.accept(), metrics, limits).await
            })
        })
        .context("cannot start the metrics server's thread")?;
    Ok(())
}

/// Accepts forever. A failing accept (EMFILE at the descriptor limit, say)
/// is retried after a pause that doubles up to `max_accept_backoff`, never
/// in a tight loop.
async fn accept_loop<F, Fut, S, A>(mut accept: F, metrics: Arc<Metrics>, limits: ServerLimits)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = std::io::Result<(S, A)>>,
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let open: Arc<Mutex<VecDeque<(u64, AbortHandle)>>> = Default::default();
    let mut next_id = 0u64;
    let mut backoff = Duration::ZERO;
    loop {
        let stream = match accept().await {
            Ok((stream, _)) => {
                backoff = Duration::ZERO;
                stream
            }
            Err(e) => {
                backoff = (backoff * 2).clamp(Duration::from_millis(5), limits.max_accept_backoff.max(Duration::from_millis(5)));
                tracing::warn!("metrics server: accept failed ({e}); retrying in {backoff:?}");
                tokio::time::sleep(backoff).await;
                continue;
            }
        };
        let id = next_id;
        next_id += 1;
        let metrics = metrics.clone();
        let open_for_task = open.clone();
        // Locked across spawn and push: the task removes itself under the
        // same lock, so it cannot finish before it is listed.
        let mut list = open.lock().expect("connection list");
        while list.len() >= limits.max_connections.max(1) {
            if let Some((_, oldest)) = list.pop_front() {
                oldest.abort();
            }
        }
        let task = tokio::spawn(async move {
            serve_connection(stream, metrics, limits).await;
            open_for_task.lock().expect("connection list").retain(|(i, _)| *i != id);
        });
        list.push_back((id, task.abort_handle()));
    }
}

async fn serve_connection<S>(stream: S, metrics: Arc<Metrics>, limits: ServerLimits)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |req: Request<hyper::body::Incoming>| {
        let metrics = metrics.clone();
        async move { Ok::<_, std::convert::Infallible>(respond(&metrics, req.uri().path())) }
    });
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(16 * 1024)
        .serve_connection(TokioIo::new(stream), service);
    let mut conn = std::pin::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => {}
        _ = tokio::time::sleep(limits.connection_lifetime) => {
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(limits.header_timeout, conn).await;
        }
    }
}

fn respond(metrics: &Metrics, path: &str) -> Response<Full<Bytes>> {
    let (status, content_type, body) = match path {
        "/metrics" => (StatusCode::OK, "application/openmetrics-text; version=1.0.0; charset=utf-8", metrics.encode()),
        "/healthz" if metrics.healthy() => (StatusCode::OK, "text/plain", "ok\n".to_string()),
        "/healthz" => (StatusCode::SERVICE_UNAVAILABLE, "text/plain", "event loop stalled\n".to_string()),
        _ => (StatusCode::NOT_FOUND, "text/plain", "try /metrics or /healthz\n".to_string()),
    };
    Response::builder()
        .status(status)
        .header("content-type", content_type)
        .body(Full::new(Bytes::from(body)))
        .expect("static response parts are valid")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{Body, Event, Mode};

    #[tokio::test]
    async fn failing_accepts_back_off_instead_of_spinning() {
        let calls = Arc::new(AtomicU64::new(0));
        let counted = calls.clone();
        let accept = move || {
            counted.fetch_add(1, Ordering::Relaxed);
            std::future::ready(Err::<(tokio::io::DuplexStream, ()), _>(std::io::Error::from_raw_os_error(libc::EMFILE)))
        };
        let limits = ServerLimits { max_accept_backoff: Duration::from_millis(100), ..Default::default() };
        let _ = tokio::time::timeout(Duration::from_millis(500), accept_loop(accept, Metrics::new(), limits)).await;
        // 5+10+20+40+80+100+100+100 ms: about 8 tries, not millions.
        let n = calls.load(Ordering::Relaxed);
        assert!((3..=15).contains(&n), "{n} accepts in 500 ms");
    }

    #[tokio::test]
    async fn healthz_answers_past_hundreds_of_idle_connections() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (tx, mut rx) = tokio::sync::mpsc::channel::<tokio::io::DuplexStream>(1024);
        let accept = move || {
            let next = rx.try_recv();
            async move {
                match next {
                    Ok(s) => Ok((s, ())),
                    Err(_) => {
                        tokio::time::sleep(Duration::from_millis(1)).await;
                        Err(std::io::Error::from_raw_os_error(libc::EAGAIN))
                    }
                }
            }
        };
        let limits = ServerLimits { max_connections: 32, max_accept_backoff: Duration::from_millis(5), ..Default::default() };
        let server = tokio::spawn(accept_loop(accept, Metrics::new(), limits));
        // 500 clients that connect and say nothing (or half a request).
        let mut idle = Vec::new();
        for i in 0..500 {
            let (mut client, server_side) = tokio::io::duplex(1024);
            if i % 2 == 0 {
                client.write_all(b"GET /metrics HTTP/1.1\r\nHost:").await.unwrap();
            }
            tx.send(server_side).await.unwrap();
            idle.push(client);
        }
        let (mut client, server_side) = tokio::io::duplex(4096);
        tx.send(server_side).await.unwrap();
        client.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await.unwrap();
        let mut reply = String::new();
        tokio::time::timeout(Duration::from_secs(2), client.read_to_string(&mut reply)).await.expect("/healthz in time").unwrap();
        assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
        server.abort();
    }

    #[test]
    fn verdicts_and_outcomes_are_counted_with_reasons() {
        let m = Metrics::new();
        let ev = Event { ts_ns: 1, pid: 1, tid: 1, comm: "runc".into(), cgroup_id: 0, mode: Mode::Tracepoint, body: Body::Fork { child_tid: 2 } };
        m.report(&Report::new("fork_failed", &ev).with("errno_name", "EAGAIN"));
        m.report(&Report::new("tcp_attempt", &ev).with("outcome", "established"));
        let counters = |ringbuf_full, missed_runs| KernelCounters { ringbuf_full, map_full: 0, ringbuf_high_water: 0, missed_runs, map_evictions: Some(0) };
        m.kernel(&counters(5, Some(2)), 0.25);
        m.kernel(&counters(7, Some(3)), 0.5);
        m.runtime_call("state", 1_500_000_000);
        let text = m.encode();
        assert!(text.contains(r#"probe_tracer_verdicts_total{kind="fork_failed",reason="EAGAIN"} 1"#), "{text}");
        assert!(text.contains(r#"probe_tracer_probe_connections_total{outcome="established"} 1"#), "{text}");
        assert!(text.contains("probe_tracer_lost_events_total 7"), "{text}");
        assert!(text.contains("probe_tracer_missed_program_runs_total 3"), "{text}");
        assert!(text.contains("probe_tracer_ringbuf_fill_ratio 0.5"), "{text}");
        assert!(text.contains(r#"probe_tracer_runtime_call_duration_seconds_bucket{le="2.5",subcommand="state"} 1"#), "{text}");
        assert!(m.healthy());
    }
}

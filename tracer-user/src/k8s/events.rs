//! Events posted on the pods (or the node) a verdict is about, from a
//! background task that deduplicates them and backs off when the API
//! server refuses.

use std::{
    collections::HashMap,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use k8s_openapi::{
    api::core::v1::{Event, EventSource, ObjectReference},
    apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time},
    chrono::Utc,
};
use kube::{Api, api::PostParams};
use tokio::{sync::mpsc, task::JoinHandle};

use super::{
    client::{Kube, warn},
    directory::PodInfo,
};

/// What a verdict says about a Kubernetes object, ready to be an Event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventRequest {
    pub target: EventTarget,
    /// `ProbeSynAckDiverted`, `ExecProbeForkFailed`, ...
    pub reason: &'static str,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventTarget {
    Pod { pod: PodInfo, container: Option<String> },
    Node,
}

/// Posts Events from a background task: the tracing loop only queues them.
/// The same reason on the same object is posted at most once per
/// `DEDUP_WINDOW` (a flapping probe would otherwise flood the API server).
#[derive(Clone)]
pub struct EventPoster {
    tx: mpsc::Sender<EventRequest>,
    results: Option<EventResults>,
}

/// Told what became of each Event: `posted`, `deduplicated`, `failed` or
/// `dropped` (the daemon counts them in its metrics).
pub type EventResults = Arc<dyn Fn(&str) + Send + Sync>;

pub const DEDUP_WINDOW: Duration = Duration::from_secs(60);

impl EventPoster {
    pub fn spawn(kube: Kube, results: Option<EventResults>) -> (Self, JoinHandle<()>) {
        let (tx, mut rx) = mpsc::channel::<EventRequest>(256);
        let task_results = results.clone();
        let handle = tokio::spawn(async move {
            let mut gate = PostGate::default();
            while let Some(req) = rx.recv().await {
                let key = (target_key(&req.target), req.reason);
                if let Err(result) = gate.admit(&key, Instant::now()) {
                    count(&task_results, result);
                    continue;
                }
                let posted = kube.post_event(&req).await;
                if let Err(e) = &posted {
                    count(&task_results, "failed");
                    // One warning per run of failures, not one per Event.
                    if gate.failures == 0 {
                        warn(&format!("cannot post a {} Event: {e:#}; backing off, further failures are counted in probe_tracer_kubernetes_events_total", req.reason));
                    }
                } else {
                    count(&task_results, "posted");
                    if gate.failures > 0 {
                        warn("posting Events works again");
                    }
                }
                gate.record(key, posted.is_ok(), Instant::now());
            }
        });
        (Self { tx, results }, handle)
    }

    /// Queues without waiting; a full queue is counted, not waited on.
    pub fn post(&self, req: EventRequest) {
        if self.tx.try_send(req).is_err() {
            count(&self.results, "dropped");
        }
    }
}

/// Longest pause in posting after failed POSTs.
pub const MAX_POST_BACKOFF: Duration = Duration::from_secs(300);
/// Most (object, reason) pairs remembered for deduplication.
pub const MAX_DEDUP_KEYS: usize = 4096;

type PostKey = (String, &'static str);

/// Which Events are posted: one per (object, reason) per `DEDUP_WINDOW`,
/// failed ones included (a failing POST is not retried for the same
/// object at once), and none at all for a pause after failures that doubles
/// from a second up to `MAX_POST_BACKOFF` (the API server is down or
/// refusing: hammering it helps nobody).
#[derive(Default)]
struct PostGate {
    last: HashMap<PostKey, Instant>,
    /// Consecutive failed POSTs.
    failures: u32,
    retry_at: Option<Instant>,
}

impl PostGate {
    /// `Err(result)`: not posted, counted as `result`.
    fn admit(&mut self, key: &PostKey, now: Instant) -> Result<(), &'static str> {
        if self.last.get(key).is_some_and(|t| now.saturating_duration_since(*t) < DEDUP_WINDOW) {
            return Err("deduplicated");
        }
        if self.retry_at.is_some_and(|t| now < t) {
            return Err("dropped");
        }
        Ok(())
    }

    fn record(&mut self, key: PostKey, ok: bool, now: Instant) {
        self.last.retain(|_, t| now.saturating_duration_since(*t) < DEDUP_WINDOW);
        if self.last.len() >= MAX_DEDUP_KEYS {
            // Full of distinct recent keys: forget the oldest.
            if let Some(oldest) = self.last.iter().min_by_key(|(_, t)| **t).map(|(k, _)| k.clone()) {
                self.last.remove(&oldest);
            }
        }
        self.last.insert(key, now);
        if ok {
            self.failures = 0;
            self.retry_at = None;
        } else {
            self.failures = self.failures.saturating_add(1);
            let pause = Duration::from_secs(1u64 << self.failures.min(16).saturating_sub(1)).min(MAX_POST_BACKOFF);
            self.retry_at = Some(now + pause);
        }
    }
}

fn count(results: &Option<EventResults>, result: &str) {
    if let Some(tell) = results {
        tell(result);
    }
}

fn target_key(t: &EventTarget) -> String {
    match t {
        EventTarget::Pod { pod, .. } => pod.uid.clone(),
        EventTarget::Node => "node".into(),
    }
}

impl Kube {
    async fn post_event(&self, req: &EventRequest) -> Result<()> {
        let event = event_object(req, &self.node);
        let namespace = event.metadata.namespace.clone().unwrap_or_default();
        Api::<Event>::namespaced(self.client.clone(), &namespace)
            .create(&PostParams::default(), &event)
            .await
            .with_context(|| format!("POST events in namespace {namespace}"))?;
        Ok(())
    }
}

/// A core/v1 Event as the kubelet writes its own probe failures, so
/// `kubectl describe pod` lists probe-tracer's diagnosis beside them.
pub fn event_object(req: &EventRequest, node: &str) -> Event {
    let now = Time(Utc::now());
    let (namespace, involved, name_prefix) = match &req.target {
        EventTarget::Pod { pod, container } => (
            pod.namespace.clone(),
            ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Pod".into()),
                namespace: Some(pod.namespace.clone()),
                name: Some(pod.name.clone()),
                uid: Some(pod.uid.clone()),
                field_path: container.as_ref().map(|c| format!("spec.containers{{{c}}}")),
                ..Default::default()
            },
            pod.name.clone(),
        ),
        // Nodes are cluster-scoped; their Events live in "default".
        EventTarget::Node => (
            "default".to_string(),
            ObjectReference { api_version: Some("v1".into()), kind: Some("Node".into()), name: Some(node.into()), uid: Some(node.into()), ..Default::default() },
            node.to_string(),
        ),
    };
    Event {
        metadata: ObjectMeta {
            generate_name: Some(format!("{name_prefix}.probe-tracer.")),
            namespace: Some(namespace),
            ..Default::default()
        },
        involved_object: involved,
        reason: Some(req.reason.into()),
        message: Some(req.message.clone()),
        type_: Some("Warning".into()),
        source: Some(EventSource { component: Some("probe-tracer".into()), host: Some(node.into()) }),
        reporting_component: Some("probe-tracer".into()),
        reporting_instance: Some(node.into()),
        first_timestamp: Some(now.clone()),
        last_timestamp: Some(now),
        count: Some(1),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_event_names_the_pod_and_container() {
        let pod = PodInfo { namespace: "shop".into(), name: "web-0".into(), uid: "u-1".into() };
        let req = EventRequest {
            target: EventTarget::Pod { pod, container: Some("app".into()) },
            reason: "ExecProbeForkFailed",
            message: "m".into(),
        };
        let e = event_object(&req, "node-1");
        let v = serde_json::to_value(&e).unwrap();
        assert_eq!(v["metadata"]["namespace"], "shop");
        assert_eq!(v["metadata"]["generateName"], "web-0.probe-tracer.");
        assert_eq!(v["involvedObject"]["kind"], "Pod");
        assert_eq!(v["involvedObject"]["uid"], "u-1");
        assert_eq!(v["involvedObject"]["fieldPath"], "spec.containers{app}");
        assert_eq!(v["reason"], "ExecProbeForkFailed");
        assert_eq!(v["type"], "Warning");
        assert_eq!(v["source"]["component"], "probe-tracer");
        assert_eq!(v["source"]["host"], "node-1");
    }

    #[test]
    fn failed_posts_are_deduplicated_and_backed_off() {
        let mut gate = PostGate::default();
        let t0 = Instant::now();
        let a: PostKey = ("pod-a".into(), "ProbeConnectionRefused");
        let b: PostKey = ("pod-b".into(), "ProbeConnectionRefused");
        assert_eq!(gate.admit(&a, t0), Ok(()));
        gate.record(a.clone(), false, t0);
        // The same Event again: not retried within the window.
        assert_eq!(gate.admit(&a, t0 + Duration::from_millis(10)), Err("deduplicated"));
        // Another object: held back while the pause after a failure lasts.
        assert_eq!(gate.admit(&b, t0 + Duration::from_millis(500)), Err("dropped"));
        assert_eq!(gate.admit(&b, t0 + Duration::from_millis(1001)), Ok(()));
        gate.record(b.clone(), false, t0 + Duration::from_secs(1));
        // The pause doubles: 2 s after the second failure.
        let c: PostKey = ("pod-c".into(), "ProbeConnectionRefused");
        assert_eq!(gate.admit(&c, t0 + Duration::from_millis(2500)), Err("dropped"));
        assert_eq!(gate.admit(&c, t0 + Duration::from_millis(3001)), Ok(()));
        // It never exceeds MAX_POST_BACKOFF, however many failures.
        for i in 0..100 {
            gate.record((format!("p{i}"), "X"), false, t0);
        }
        assert_eq!(gate.retry_at, Some(t0 + MAX_POST_BACKOFF));
        // A success ends the pause.
        gate.record(c, true, t0 + Duration::from_secs(4));
        assert_eq!(gate.admit(&("pod-d".into(), "X"), t0 + Duration::from_secs(4)), Ok(()));
        // The dedup memory is bounded.
        for i in 0..(MAX_DEDUP_KEYS * 2) {
            gate.record((format!("q{i}"), "X"), true, t0 + Duration::from_secs(5));
        }
        assert!(gate.last.len() <= MAX_DEDUP_KEYS);
    }
}

//! The API server, through kube-rs: the pods on this node and the cluster's
//! NodePort services (watched in the background into a [`Directory`]),
//! and Events posted on the pods a verdict is about. Optional: without a
//! configured cluster probe-tracer works as before, and an unreachable API
//! server costs a warning, never the tracing.

use std::{
    collections::HashMap,
    path::PathBuf,
    sync::{
        Arc, Mutex, RwLock,
        atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use k8s_openapi::{
    api::core::v1::{Event, EventSource, ObjectReference, Pod, Service},
    apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time},
    chrono::Utc,
};
use futures::StreamExt;
use futures::stream::Stream;
use kube::{
    Api, Client, Config,
    api::PostParams,
    config::{KubeConfigOptions, Kubeconfig},
    runtime::{
        WatchStreamExt,
        reflector::{self, Store},
        watcher::{self, watcher},
    },
};
use tokio::{sync::mpsc, task::JoinHandle};

use super::directory::{Directory, PodInfo};

/// How the command line asked to reach the API server.
#[derive(Debug, Clone, Default)]
pub struct KubeOptions {
    /// Off: never contact the API server.
    pub disabled: bool,
    /// An explicit API server URL (`http://127.0.0.1:8001` for
    /// `kubectl proxy`); else `kubeconfig`; else in-cluster or ~/.kube/config.
    pub api_url: Option<String>,
    pub kubeconfig: Option<PathBuf>,
    /// This node's name (the DaemonSet passes spec.nodeName as NODE_NAME).
    pub node_name: Option<String>,
    /// How long a request, a watch included, may go without a byte from
    /// the API server before it is given up (default [`READ_TIMEOUT`]).
    pub read_timeout: Option<Duration>,
}

/// A hung API server is noticed within this. kube's own default (295 s,
/// with watches of 290 s) left the directory stale for five minutes.
pub const READ_TIMEOUT: Duration = Duration::from_secs(60);
/// A watch is ended by the server this long before the read timeout, so
/// a quiet, healthy watch never meets it.
const WATCH_MARGIN: Duration = Duration::from_secs(5);

#[derive(Clone)]
pub struct Kube {
    client: Client,
    pub node: String,
    /// When the API server last answered a request with success.
    answered: Arc<Mutex<Option<Instant>>>,
    /// The server-side timeout of each watch (`timeoutSeconds`).
    watch_timeout_s: u32,
}

impl Kube {
    /// `Ok(None)` when no cluster is configured and none was asked for.
    pub async fn connect(opts: &KubeOptions) -> Result<Option<Kube>> {
        if opts.disabled {
            return Ok(None);
        }
        let config = if let Some(url) = &opts.api_url {
            let uri = url.parse().with_context(|| format!("--kube-api '{url}' is not a URL"))?;
            Config::new(uri)
        } else if let Some(path) = &opts.kubeconfig {
            let kc = Kubeconfig::read_from(path).with_context(|| format!("cannot read kubeconfig {}", path.display()))?;
            Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
                .await
                .with_context(|| format!("kubeconfig {} is not usable", path.display()))?
        } else {
            match Config::infer().await {
                Ok(config) => config,
                // Not in a cluster and no kubeconfig: a node-local run.
                Err(_) => return Ok(None),
            }
        };
        let mut config = config;
        let read_timeout = opts.read_timeout.unwrap_or(READ_TIMEOUT);
        config.read_timeout = Some(read_timeout);
        let watch_timeout_s = read_timeout.saturating_sub(WATCH_MARGIN).as_secs().clamp(1, u64::from(u32::MAX)) as u32;
        // A watch that starts again yields nothing until something changes:
        // its answer is seen here, as is any other request's.
        let answered = Arc::new(Mutex::new(None));
        let note = tower::util::MapResponseLayer::new(noting(answered.clone()));
        let client = kube::client::ClientBuilder::try_from(config)
            .context("cannot build the Kubernetes client")?
            .with_layer(&note)
            // A handle to call later: the pacing layer holds a request back.
            .with_layer(&tower::buffer::BufferLayer::new(64))
            .with_layer(&super::pacing::WatchPacingLayer::default())
            .build();
        Ok(Some(Kube { client, node: node_name(opts.node_name.as_deref()), answered, watch_timeout_s }))
    }

    /// Keeps `dir` up to date from two watches: this node's pods and the
    /// cluster's Services (NodePorts are cluster-wide). Each is listed once
    /// in pages, then watched; after an error kube's watcher restarts it with
    /// backoff, and verdicts use the last known directory meanwhile. Waits at
    /// most `first_wait` for the first lists, so a slow API server does not
    /// hold up tracing.
    pub async fn keep_directory(self, dir: Arc<RwLock<Directory>>, first_wait: Duration) -> DirectoryWatch {
        let (pods, pod_writer) = reflector::store::<Pod>();
        let (services, service_writer) = reflector::store::<Service>();
        // Paginated lists of the latest state (client-go's page size):
        // a list at resourceVersion 0 would ignore the limit.
        let watched = watcher::Config::default().timeout(self.watch_timeout_s);
        let on_node = watched.clone().fields(&format!("spec.nodeName={}", self.node));
        let pod_events =
            watcher(Api::<Pod>::all(self.client.clone()), on_node).default_backoff().modify(slim_pod).reflect(pod_writer);
        let service_events = watcher(Api::<Service>::all(self.client.clone()), watched)
            .default_backoff()
            .modify(slim_service)
            .reflect(service_writer);
        let status = Arc::new(WatchStatus { healthy: AtomicBool::new(true), ..Default::default() });
        let follower = Follower {
            pods: pods.clone(),
            services: services.clone(),
            dir: dir.clone(),
            status: status.clone(),
            node: self.node.clone(),
            answered: self.answered.clone(),
        };
        let task = tokio::spawn(follower.run(pod_events, service_events));
        let both_listed = async {
            let _ = pods.wait_until_ready().await;
            let _ = services.wait_until_ready().await;
        };
        if tokio::time::timeout(first_wait, both_listed).await.is_ok() {
            rebuild(&pods, &services, &dir, &status);
        }
        DirectoryWatch { task, status }
    }
}

/// At most one Directory rebuild per this, however busy the watches are.
pub const REBUILD_EVERY: Duration = Duration::from_secs(1);

/// How often a failing client looks for the API server's recovery, and how
/// long an answer must stand unrefuted.
const RECOVERY_CHECK: Duration = Duration::from_millis(500);

/// The background watches behind a [`Directory`].
pub struct DirectoryWatch {
    task: JoinHandle<()>,
    status: Arc<WatchStatus>,
}

#[derive(Default)]
struct WatchStatus {
    healthy: AtomicBool,
    warnings: AtomicU32,
    rebuilds: AtomicU64,
}

impl DirectoryWatch {
    pub fn abort(&self) {
        self.task.abort();
    }

    /// False from a watch's error until the API server answers again.
    pub fn healthy(&self) -> bool {
        self.status.healthy.load(Ordering::Relaxed)
    }

    /// Warnings printed about the API server so far.
    pub fn warnings(&self) -> u32 {
        self.status.warnings.load(Ordering::Relaxed)
    }

    /// Times the Directory was rebuilt from the watched state.
    pub fn rebuilds(&self) -> u64 {
        self.status.rebuilds.load(Ordering::Relaxed)
    }
}

struct Follower {
    pods: Store<Pod>,
    services: Store<Service>,
    dir: Arc<RwLock<Directory>>,
    status: Arc<WatchStatus>,
    node: String,
    answered: Arc<Mutex<Option<Instant>>>,
}

/// Which watch an event came from.
#[derive(Clone, Copy)]
enum Watched {
    Pods = 0,
    Services = 1,
}

impl Follower {
    async fn run(
        self,
        pod_events: impl Stream<Item = Result<watcher::Event<Pod>, watcher::Error>>,
        service_events: impl Stream<Item = Result<watcher::Event<Service>, watcher::Error>>,
    ) {
        let pod_events = pod_events.map(|e| (Watched::Pods, e.map(|e| effect(&e))));
        let service_events = service_events.map(|e| (Watched::Services, e.map(|e| effect(&e))));
        let mut events = std::pin::pin!(futures::stream::select(pod_events, service_events));
        let mut failing = [false; 2];
        let mut dirty = false;
        let mut next_rebuild = tokio::time::Instant::now();
        let mut last_error: Option<Instant> = None;
        loop {
            let failed = failing.contains(&true);
            tokio::select! {
                event = events.next() => {
                    let Some((which, event)) = event else { return };
                    let mut error = None;
                    match event {
                        Ok(Effect { answered, changed }) => {
                            dirty |= changed;
                            if answered {
                                failing[which as usize] = false;
                            }
                        }
                        // A watch too far behind is relisted by the watcher;
                        // the API server is fine.
                        Err(watcher::Error::WatchError(e)) if e.code == 410 => {}
                        Err(e) => {
                            failing[which as usize] = true;
                            last_error = Some(Instant::now());
                            // The watcher's errors name their causes already.
                            error = Some(e.to_string());
                        }
                    }
                    self.health(failing, error);
                }
                // Coalesced: under churn the stores change many times between
                // two rebuilds.
                _ = tokio::time::sleep_until(next_rebuild), if dirty => {
                    rebuild(&self.pods, &self.services, &self.dir, &self.status);
                    dirty = false;
                    next_rebuild = tokio::time::Instant::now() + REBUILD_EVERY;
                }
                // A restarted watch is silent: the API server has recovered
                // when it answered after the last error and that answer
                // was not followed by another error (a 200 with a broken
                // body is).
                _ = tokio::time::sleep(RECOVERY_CHECK), if failed => {
                    let answered = self.answered.lock().ok().and_then(|a| *a);
                    if let Some(at) = answered
                        && last_error.is_none_or(|e| at > e)
                        && at.elapsed() >= RECOVERY_CHECK
                    {
                        failing = [false; 2];
                        self.health(failing, None);
                    }
                }
            }
        }
    }

    /// One warning when the API server starts failing, one when it answers
    /// again.
    fn health(&self, failing: [bool; 2], error: Option<String>) {
        let healthy = !failing.contains(&true);
        let was = self.status.healthy.swap(healthy, Ordering::Relaxed);
        if was && !healthy {
            let error = error.unwrap_or_default();
            if self.status.rebuilds.load(Ordering::Relaxed) == 0 {
                self.warn(&format!("Kubernetes API: {error}; verdicts carry pod UIDs and container IDs only until it answers"));
            } else {
                self.warn(&format!("Kubernetes API: {error}; keeping the last pod list"));
            }
        } else if !was && healthy {
            self.warn(&format!("Kubernetes API answers again ({} pods on node {})", self.pods.len(), self.node));
        }
    }

    fn warn(&self, msg: &str) {
        self.status.warnings.fetch_add(1, Ordering::Relaxed);
        warn(msg);
    }
}

/// What a watcher event says: whether the API server answered, and whether
/// the store changed. The restart marker is sent before any request; the
/// store takes a relisted page only once the whole list is in.
struct Effect {
    answered: bool,
    changed: bool,
}

fn effect<K>(e: &watcher::Event<K>) -> Effect {
    use watcher::Event::*;
    match e {
        Init => Effect { answered: false, changed: false },
        InitApply(_) => Effect { answered: true, changed: false },
        InitDone | Apply(_) | Delete(_) => Effect { answered: true, changed: true },
    }
}

fn rebuild(pods: &Store<Pod>, services: &Store<Service>, dir: &RwLock<Directory>, status: &WatchStatus) {
    let (pods, services) = (pods.state(), services.state());
    let d = Directory::from_objects(pods.iter().map(|p| &**p), services.iter().map(|s| &**s));
    replace(dir, d);
    status.rebuilds.fetch_add(1, Ordering::Relaxed);
}

/// The stores keep what the Directory reads, no more: managed fields and
/// annotations (a last-applied configuration is a whole manifest) go.
fn slim_pod(pod: &mut Pod) {
    pod.metadata.managed_fields = None;
    pod.metadata.annotations = None;
    pod.metadata.labels = None;
    pod.metadata.owner_references = None;
    if let Some(spec) = pod.spec.as_mut() {
        spec.volumes = None;
        for c in spec.containers.iter_mut() {
            c.env = None;
            c.env_from = None;
            c.volume_mounts = None;
            c.args = None;
            c.command = None;
        }
        spec.init_containers = None;
    }
    if let Some(status) = pod.status.as_mut() {
        status.conditions = None;
    }
}

/// Only NodePorts matter: other Services are kept as their name alone, so
/// a cluster's worth of them costs little.
fn slim_service(svc: &mut Service) {
    svc.metadata.managed_fields = None;
    svc.metadata.annotations = None;
    svc.metadata.labels = None;
    svc.status = None;
    let node_ports = svc.spec.as_ref().and_then(|s| s.ports.as_ref()).is_some_and(|ports| ports.iter().any(|p| p.node_port.is_some()));
    if !node_ports {
        svc.spec = None;
    } else if let Some(spec) = svc.spec.as_mut() {
        spec.selector = None;
    }
}

/// Passes responses through, noting when one was a success.
fn noting<B>(answered: Arc<Mutex<Option<Instant>>>) -> impl Fn(http::Response<B>) -> http::Response<B> + Clone {
    move |resp| {
        if resp.status().is_success()
            && let Ok(mut at) = answered.lock()
        {
            *at = Some(Instant::now());
        }
        resp
    }
}

fn replace(dir: &RwLock<Directory>, d: Directory) {
    if let Ok(mut guard) = dir.write() {
        *guard = d;
    }
}

fn warn(msg: &str) {
    crate::output::warn(msg);
}

/// --node-name, else $NODE_NAME, else the kernel's hostname (what the
/// kubelet registers by default).
fn node_name(flag: Option<&str>) -> String {
    flag.map(str::to_string)
        .or_else(|| std::env::var("NODE_NAME").ok().filter(|s| !s.is_empty()))
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok().map(|s| s.trim().to_string()))
        .unwrap_or_default()
}

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

    #[test]
    fn stores_keep_only_what_the_directory_reads() {
        let svc = |ports: serde_json::Value| -> Service {
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": "s", "namespace": "n", "annotations": {"a": "x".repeat(4096)}},
                "spec": {"ports": ports, "selector": {"app": "s"}}
            }))
            .unwrap()
        };
        let mut cluster_ip = svc(serde_json::json!([{"port": 80}]));
        slim_service(&mut cluster_ip);
        assert!(cluster_ip.spec.is_none() && cluster_ip.metadata.annotations.is_none());
        let mut node_port = svc(serde_json::json!([{"port": 80, "nodePort": 31000}]));
        slim_service(&mut node_port);
        let d = Directory::from_objects([], [&node_port, &cluster_ip]);
        assert_eq!(d.service_by_nodeport(31000).unwrap().name, "s");

        let list: k8s_openapi::List<Pod> = serde_json::from_str(include_str!("testdata/pods.json")).unwrap();
        let mut pods = list.items.clone();
        pods.iter_mut().for_each(slim_pod);
        let (full, slim) = (Directory::new(&list.items, &[]), Directory::new(&pods, &[]));
        let ip = "10.200.1.2".parse().unwrap();
        assert_eq!(full.pod_by_ip(ip), slim.pod_by_ip(ip));
        assert_eq!(full.probes_at(ip, 8080), slim.probes_at(ip, 8080));
        assert_eq!(full.container(&"ab".repeat(32)), slim.container(&"ab".repeat(32)));
    }

    #[test]
    fn node_name_prefers_the_flag() {
        assert_eq!(node_name(Some("n1")), "n1");
        assert!(!node_name(None).is_empty());
    }
}

//! The pods on this node and the cluster's NodePort services, listed and
//! then watched in the background into a [`Directory`].

use std::{
    sync::{
        Arc, Mutex, RwLock,
        atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use futures::StreamExt;
use futures::stream::Stream;
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::{
    Api,
    runtime::{
        WatchStreamExt,
        reflector::{self, Store},
        watcher::{self, watcher},
    },
};
use tokio::task::JoinHandle;

use super::{
    client::{Kube, warn},
    directory::Directory,
};

impl Kube {
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

fn replace(dir: &RwLock<Directory>, d: Directory) {
    if let Ok(mut guard) = dir.write() {
        *guard = d;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}

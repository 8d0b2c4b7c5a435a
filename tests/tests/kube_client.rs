//! The Kubernetes client against a local API server serving recorded
//! responses: the pod directory it builds and keeps from watches, how it
//! takes the server's failures, and the Events it posts. Needs
//! no root and no cluster, so it runs with plain `cargo test`.

use std::{
    sync::{Arc, Mutex, RwLock},
    time::{Duration, Instant},
};

use serde_json::{Value, json};
use tests::fake_api::{Fault, FakeApiServer, recorded};
use tracer_user::k8s::{
    client::{DirectoryWatch, EventPoster, EventRequest, EventResults, EventTarget, Kube, KubeOptions},
    directory::{Directory, PodInfo},
};

fn options(server: &FakeApiServer, node: &str) -> KubeOptions {
    KubeOptions { api_url: Some(server.url.clone()), node_name: Some(node.into()), ..Default::default() }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

fn directory() -> Arc<RwLock<Directory>> {
    Arc::new(RwLock::new(Directory::default()))
}

/// Polls `ok` for up to `secs` seconds.
async fn eventually(secs: u64, ok: impl Fn() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        if ok() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    ok()
}

fn pod(name: &str, ip: &str) -> Value {
    json!({"kind": "Pod", "apiVersion": "v1",
        "metadata": {"name": name, "namespace": "shop", "uid": format!("uid-{name}")},
        "spec": {"nodeName": "node-1", "containers": [{"name": "app"}]},
        "status": {"phase": "Running", "podIP": ip}})
}

fn pod_list(pods: Vec<Value>) -> Value {
    json!({"kind": "PodList", "apiVersion": "v1", "metadata": {"resourceVersion": "1"}, "items": pods})
}

fn ip(s: &str) -> std::net::IpAddr {
    s.parse().unwrap()
}

/// A client following `server` as node-1, its first lists in.
async fn follow(server: &FakeApiServer) -> (Arc<RwLock<Directory>>, DirectoryWatch) {
    let kube = Kube::connect(&options(server, "node-1")).await.unwrap().expect("a client");
    let dir = directory();
    let watch = kube.keep_directory(dir.clone(), Duration::from_secs(5)).await;
    (dir, watch)
}

#[test]
fn lists_this_nodes_pods_and_the_nodeport_services() {
    let server = FakeApiServer::start("node-1", recorded("pods.json"), recorded("services.json"));
    runtime().block_on(async {
        let (dir, watch) = follow(&server).await;
        {
            let dir = dir.read().unwrap();
            assert_eq!(dir.pods(), 2);
            let web = dir.pod_by_ip(ip("10.200.1.2")).unwrap();
            assert_eq!((web.namespace.as_str(), web.name.as_str()), ("shop", "web-7d9f8b6c5-x2x4q"));
            assert_eq!(dir.service_by_nodeport(31055).unwrap().name, "checkout");
        }
        assert!(watch.healthy());
        assert_eq!(watch.warnings(), 0);

        // Another node's name selects none of them.
        let other = Kube::connect(&options(&server, "node-2")).await.unwrap().unwrap();
        let other_dir = directory();
        let _w = other.keep_directory(other_dir.clone(), Duration::from_secs(5)).await;
        assert_eq!(other_dir.read().unwrap().pods(), 0);
        assert!(other_dir.read().unwrap().service_by_nodeport(31055).is_some());
    });
    let pod_list = server.lists("/api/v1/pods").into_iter().next().unwrap();
    assert!(pod_list.target.contains("fieldSelector=spec.nodeName%3Dnode-1"), "{}", pod_list.target);
}

#[test]
fn pods_added_and_deleted_later_arrive_through_the_watch() {
    let server = FakeApiServer::start("node-1", recorded("pods.json"), recorded("services.json"));
    runtime().block_on(async {
        let (dir, _watch) = follow(&server).await;
        assert!(eventually(5, || !server.watches("/api/v1/pods").is_empty()).await, "no pod watch");
        let lists = server.lists("/api/v1/pods").len();
        assert_eq!(lists, 1, "one initial list");

        server.apply_pod(pod("late-0", "10.200.1.9"));
        assert!(eventually(5, || dir.read().unwrap().pod_by_ip(ip("10.200.1.9")).is_some()).await, "the added pod never arrived");
        assert_eq!(dir.read().unwrap().pod_by_ip(ip("10.200.1.9")).unwrap().name, "late-0");

        server.delete_pod("shop", "late-0");
        assert!(eventually(5, || dir.read().unwrap().pod_by_ip(ip("10.200.1.9")).is_none()).await, "the deleted pod stayed");
        assert_eq!(dir.read().unwrap().pods(), 2);

        server.delete_pod("shop", "web-7d9f8b6c5-x2x4q");
        assert!(eventually(5, || dir.read().unwrap().pod_by_ip(ip("10.200.1.2")).is_none()).await, "a listed pod's deletion was missed");
        assert_eq!(server.lists("/api/v1/pods").len(), lists, "changes came by a new LIST, not the watch");
    });
}

#[test]
fn rebuilds_are_coalesced_under_churn() {
    let server = FakeApiServer::start("node-1", recorded("pods.json"), recorded("services.json"));
    runtime().block_on(async {
        let (dir, watch) = follow(&server).await;
        assert!(eventually(5, || !server.watches("/api/v1/pods").is_empty()).await);
        let before = watch.rebuilds();
        // A change every 10 ms for two seconds.
        let start = Instant::now();
        for i in 0..200 {
            server.apply_pod(pod(&format!("churn-{i}"), &format!("10.201.{}.{}", i / 200, i % 200 + 1)));
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(eventually(5, || dir.read().unwrap().pods() == 202).await, "{} pods", dir.read().unwrap().pods());
        let rebuilds = watch.rebuilds() - before;
        let secs = start.elapsed().as_secs() + 1;
        assert!(rebuilds <= secs + 2, "{rebuilds} rebuilds in {secs} s for 200 changes");
    });
}

#[test]
fn the_initial_list_is_paginated() {
    let pods = (0..1200).map(|i| pod(&format!("p-{i}"), &format!("10.202.{}.{}", i / 250, i % 250 + 1))).collect();
    let server = FakeApiServer::start("node-1", pod_list(pods), recorded("services.json"));
    runtime().block_on(async {
        let (dir, _watch) = follow(&server).await;
        assert_eq!(dir.read().unwrap().pods(), 1200);
    });
    let lists = server.lists("/api/v1/pods");
    assert_eq!(lists.len(), 3, "{lists:?}");
    assert_eq!(lists[0].query("limit"), Some("500"));
    assert_eq!(lists[0].query("continue"), None);
    assert_eq!(lists[1].query("continue"), Some("500"));
    assert_eq!(lists[2].query("continue"), Some("1000"));
}

/// The client under `fault`: it warns once, verdicts keep the last
/// directory, and it recovers (warning once more) when the server does.
fn survives(fault: Fault) {
    let server = FakeApiServer::start("node-1", recorded("pods.json"), recorded("services.json"));
    runtime().block_on(async {
        let (dir, watch) = follow(&server).await;
        assert!(eventually(5, || server.watches("/api/v1/services").len() == 1 && server.watches("/api/v1/pods").len() == 1).await);
        server.set_fault(fault);
        assert!(eventually(20, || !watch.healthy()).await, "{fault:?} went unnoticed");
        assert_eq!(watch.warnings(), 1);
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert_eq!(watch.warnings(), 1, "one warning per outage");
        assert_eq!(dir.read().unwrap().pods(), 2, "the last known pods are kept");
        assert!(dir.read().unwrap().pod_by_ip(ip("10.200.1.2")).is_some());

        server.set_fault(Fault::None);
        assert!(eventually(40, || watch.healthy()).await, "no recovery from {fault:?}");
        assert_eq!(watch.warnings(), 2);
        server.apply_pod(pod("after", "10.200.1.77"));
        assert!(eventually(40, || dir.read().unwrap().pod_by_ip(ip("10.200.1.77")).is_some()).await, "no updates after {fault:?}");
    });
}

/// A server (or a proxy before it) that ends every watch at once: each
/// resource is watched again at most once a second, not in a loop as fast
/// as the connection allows; the directory stays the listed one.
#[test]
fn watches_ended_at_once_are_started_again_at_most_once_a_second() {
    let server = FakeApiServer::start("node-1", recorded("pods.json"), recorded("services.json"));
    server.close_watches_at_once(true);
    runtime().block_on(async {
        let (dir, _watch) = follow(&server).await;
        tokio::time::sleep(Duration::from_secs(4)).await;
        assert_eq!(dir.read().unwrap().pods(), 2);
    });
    for path in ["/api/v1/pods", "/api/v1/services"] {
        let watches = server.watches(path).len();
        assert!((2..=6).contains(&watches), "{watches} watches of {path} in about 4 s");
    }
}

#[test]
fn survives_5xx() {
    survives(Fault::Status(503));
}

#[test]
fn survives_garbage() {
    survives(Fault::Garbage);
}

#[test]
fn a_hanging_server_does_not_hold_up_tracing() {
    let server = FakeApiServer::start("node-1", recorded("pods.json"), recorded("services.json"));
    server.set_fault(Fault::Hang);
    runtime().block_on(async {
        let kube = Kube::connect(&options(&server, "node-1")).await.unwrap().unwrap();
        let dir = directory();
        let start = Instant::now();
        let watch = kube.keep_directory(dir.clone(), Duration::from_secs(1)).await;
        assert!(start.elapsed() < Duration::from_secs(3), "waited {:?}", start.elapsed());
        assert_eq!(dir.read().unwrap().pods(), 0);
        // The hung requests are cut when the server heals.
        server.set_fault(Fault::None);
        assert!(eventually(40, || dir.read().unwrap().pods() == 2).await, "no recovery after a hang");
        assert!(eventually(5, || watch.healthy() && watch.warnings() == 2).await, "warnings {}", watch.warnings());
    });
}

/// A server that stalls with the watches open (no data, no end): noticed
/// within the read timeout, not after kube's default five minutes, and
/// followed again once it answers. Watches end before that timeout by
/// themselves (`timeoutSeconds`), so quiet ones are not taken for a hang.
#[test]
fn a_server_that_stalls_mid_watch_is_noticed_within_the_read_timeout() {
    let server = FakeApiServer::start("node-1", recorded("pods.json"), recorded("services.json"));
    let read_timeout = Duration::from_secs(3);
    runtime().block_on(async {
        let kube = Kube::connect(&KubeOptions { read_timeout: Some(read_timeout), ..options(&server, "node-1") }).await.unwrap().unwrap();
        let dir = directory();
        let watch = kube.keep_directory(dir.clone(), Duration::from_secs(10)).await;
        assert_eq!(dir.read().unwrap().pods(), 2);
        // Quiet but healthy for longer than the read timeout.
        tokio::time::sleep(read_timeout * 2).await;
        assert!(watch.healthy() && watch.warnings() == 0, "a quiet watch was taken for a hang: {} warnings", watch.warnings());
        let watches = server.watches("/api/v1/pods");
        assert!(watches.len() >= 2 && watches.iter().all(|w| w.query("timeoutSeconds") == Some("1")), "{watches:?}");
        server.set_fault(Fault::Hang);
        let stalled = Instant::now();
        assert!(eventually(10, || !watch.healthy()).await, "a stalled server went unnoticed");
        assert!(stalled.elapsed() < read_timeout * 3, "noticed after {:?}", stalled.elapsed());
        assert_eq!(watch.warnings(), 1);
        assert_eq!(dir.read().unwrap().pods(), 2, "the last known pods are kept");
        server.set_fault(Fault::None);
        assert!(eventually(40, || watch.healthy()).await, "no recovery after the stall");
        server.apply_pod(pod("after", "10.200.1.77"));
        assert!(eventually(40, || dir.read().unwrap().pod_by_ip(ip("10.200.1.77")).is_some()).await, "no updates after the stall");
    });
}

#[test]
fn survives_a_huge_unpaginated_list() {
    let padding = "x".repeat(2048);
    let services: Vec<Value> = (0..5000)
        .map(|i| {
            let mut port = json!({"port": 80, "targetPort": 8080});
            if i % 50 == 0 {
                port["nodePort"] = (30000 + i / 50).into();
            }
            json!({"metadata": {"name": format!("s-{i}"), "namespace": "bulk", "annotations": {"pad": padding}},
                "spec": {"type": if i % 50 == 0 { "NodePort" } else { "ClusterIP" }, "ports": [port]}})
        })
        .collect();
    let server = FakeApiServer::start("node-1", recorded("pods.json"), json!({"kind": "ServiceList", "apiVersion": "v1", "metadata": {}, "items": services}));
    server.ignore_limit(true);
    runtime().block_on(async {
        let kube = Kube::connect(&options(&server, "node-1")).await.unwrap().unwrap();
        let dir = directory();
        let watch = kube.keep_directory(dir.clone(), Duration::from_secs(30)).await;
        let d = dir.read().unwrap();
        assert_eq!(d.pods(), 2);
        for n in 0..100 {
            assert_eq!(d.service_by_nodeport(30000 + n).unwrap().name, format!("s-{}", n * 50));
        }
        assert!(d.service_by_nodeport(30100).is_none());
        assert!(watch.healthy());
        assert_eq!(watch.warnings(), 0);
    });
    assert_eq!(server.lists("/api/v1/services").len(), 1);
}

#[test]
fn failing_event_posts_are_counted_and_backed_off() {
    let server = FakeApiServer::start("node-1", recorded("pods.json"), recorded("services.json"));
    server.fail_events(true);
    let results = Arc::new(Mutex::new(Vec::<String>::new()));
    let seen = results.clone();
    runtime().block_on(async {
        let (dir, watch) = follow(&server).await;
        let kube = Kube::connect(&options(&server, "node-1")).await.unwrap().unwrap();
        let tell = Arc::new(move |r: &str| seen.lock().unwrap().push(r.to_string())) as EventResults;
        let (poster, task) = EventPoster::spawn(kube, Some(tell));
        let req = |uid: &str| EventRequest {
            target: EventTarget::Pod { pod: PodInfo { namespace: "shop".into(), name: format!("p-{uid}"), uid: uid.into() }, container: None },
            reason: "ProbeConnectionTimeout",
            message: "m".into(),
        };
        poster.post(req("a"));
        poster.post(req("b"));
        assert!(eventually(5, || results.lock().unwrap().len() == 2).await);
        assert_eq!(*results.lock().unwrap(), ["failed", "dropped"], "the second POST should wait out the backoff");
        server.fail_events(false);
        tokio::time::sleep(Duration::from_millis(1100)).await;
        poster.post(req("c"));
        drop(poster);
        tokio::time::timeout(Duration::from_secs(10), task).await.unwrap().unwrap();
        assert_eq!(results.lock().unwrap().last().map(String::as_str), Some("posted"));
        // The directory is not disturbed by failing POSTs.
        assert!(watch.healthy());
        assert_eq!(dir.read().unwrap().pods(), 2);
    });
    assert_eq!(server.events().len(), 2, "one failed POST and one that worked");
}

#[test]
fn posts_one_event_per_pod_and_reason_per_window() {
    let server = FakeApiServer::start("node-1", recorded("pods.json"), recorded("services.json"));
    runtime().block_on(async {
        let kube = Kube::connect(&options(&server, "node-1")).await.unwrap().unwrap();
        let (poster, task) = EventPoster::spawn(kube, None);
        let pod = PodInfo { namespace: "shop".into(), name: "web-7d9f8b6c5-x2x4q".into(), uid: "0a1b2c3d-1111-2222-3333-444455556666".into() };
        let req = |reason| EventRequest {
            target: EventTarget::Pod { pod: pod.clone(), container: Some("app".into()) },
            reason,
            message: "the SYN-ACK was taken by IPVS".into(),
        };
        poster.post(req("ProbeSynAckDiverted"));
        poster.post(req("ProbeSynAckDiverted")); // a repeat within the window
        poster.post(req("ProbeConnectionTimeout"));
        drop(poster);
        tokio::time::timeout(Duration::from_secs(10), task).await.unwrap().unwrap();
    });
    let events = server.events();
    let reasons: Vec<&str> = events.iter().map(|e| e["reason"].as_str().unwrap()).collect();
    assert_eq!(reasons, ["ProbeSynAckDiverted", "ProbeConnectionTimeout"]);
    let e = &events[0];
    assert_eq!(e["involvedObject"]["name"], "web-7d9f8b6c5-x2x4q");
    assert_eq!(e["involvedObject"]["fieldPath"], "spec.containers{app}");
    assert_eq!(e["source"]["host"], "node-1");
    let post = server.requests().into_iter().find(|r| r.method == "POST").unwrap();
    assert_eq!(post.target.split('?').next().unwrap(), "/api/v1/namespaces/shop/events");
}

#[test]
fn no_cluster_configured_means_no_client() {
    runtime().block_on(async {
        let off = KubeOptions { disabled: true, ..Default::default() };
        assert!(Kube::connect(&off).await.unwrap().is_none());
        let bad = KubeOptions { api_url: Some("not a url".into()), ..Default::default() };
        assert!(Kube::connect(&bad).await.is_err());
    });
}

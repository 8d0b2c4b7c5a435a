//! The Kubernetes client against a local API server serving recorded
//! responses: the pod directory it builds, and the Events it posts. Needs
//! no root and no cluster, so it runs with plain `cargo test`.

use std::time::Duration;

use tests::fake_api::{FakeApiServer, recorded};
use tracer_user::k8s::{
    client::{EventPoster, EventRequest, EventTarget, Kube, KubeOptions},
    directory::PodInfo,
};

fn options(server: &FakeApiServer, node: &str) -> KubeOptions {
    KubeOptions { api_url: Some(server.url.clone()), node_name: Some(node.into()), ..Default::default() }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

#[test]
fn lists_this_nodes_pods_and_the_nodeport_services() {
    let server = FakeApiServer::start("node-1", recorded("pods.json"), recorded("services.json"));
    runtime().block_on(async {
        let kube = Kube::connect(&options(&server, "node-1")).await.unwrap().expect("a client");
        let dir = kube.load_directory().await.unwrap();
        assert_eq!(dir.pods(), 2);
        let web = dir.pod_by_ip("10.200.1.2".parse().unwrap()).unwrap();
        assert_eq!((web.namespace.as_str(), web.name.as_str()), ("shop", "web-7d9f8b6c5-x2x4q"));
        assert_eq!(dir.service_by_nodeport(31055).unwrap().name, "checkout");

        // Another node's name selects none of them.
        let other = Kube::connect(&options(&server, "node-2")).await.unwrap().unwrap();
        assert_eq!(other.load_directory().await.unwrap().pods(), 0);
    });
    let pod_list = server.requests().into_iter().find(|r| r.target.starts_with("/api/v1/pods")).unwrap();
    assert!(pod_list.target.contains("fieldSelector=spec.nodeName%3Dnode-1"), "{}", pod_list.target);
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

//! The API server, through kube-rs: connecting to it ([`Kube`]), as the
//! command line asks. What the client does once connected has a file each:
//! the pods on this node and the cluster's NodePort services, watched in the
//! background into a [`Directory`](super::directory::Directory)
//! ([`super::watch`]), and Events posted on the pods a verdict is about
//! ([`super::events`]). Optional: without a configured cluster probe-tracer
//! works as before, and an unreachable API server costs a warning, never
//! the tracing.

use std::{
    path::PathBuf,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use kube::{
    Client, Config,
    config::{KubeConfigOptions, Kubeconfig},
};

// The paths the rest of the crate, the tests and earlier releases use.
pub use super::events::{
    DEDUP_WINDOW, EventPoster, EventRequest, EventResults, EventTarget, MAX_DEDUP_KEYS, MAX_POST_BACKOFF, event_object,
};
pub use super::watch::{DirectoryWatch, REBUILD_EVERY};

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
    pub(super) client: Client,
    pub node: String,
    /// When the API server last answered a request with success.
    pub(super) answered: Arc<Mutex<Option<Instant>>>,
    /// The server-side timeout of each watch (`timeoutSeconds`).
    pub(super) watch_timeout_s: u32,
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

pub(super) fn warn(msg: &str) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_name_prefers_the_flag() {
        assert_eq!(node_name(Some("n1")), "n1");
        assert!(!node_name(None).is_empty());
    }
}

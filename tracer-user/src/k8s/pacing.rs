//! At most one watch of a resource a second. kube's watcher starts a watch
//! again the moment one ends without an error (its backoff is for errors),
//! so a server, or a proxy before it, that ends every watch at once is
//! asked again as fast as it answers: a hundred watches a second per node.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    task::{Context, Poll},
    time::{Duration, Instant},
};

use futures::future::BoxFuture;
use tower::{Layer, Service};

/// The least time between the starts of two watches of one resource.
pub const WATCH_EVERY: Duration = Duration::from_secs(1);
/// Resources remembered, at most (a client watches two).
const PATHS_MAX: usize = 64;

#[derive(Clone, Default)]
pub struct WatchPacingLayer {
    next_start: Arc<Mutex<HashMap<String, Instant>>>,
}

impl<S> Layer<S> for WatchPacingLayer {
    type Service = WatchPacing<S>;
    fn layer(&self, inner: S) -> WatchPacing<S> {
        WatchPacing { inner, next_start: self.next_start.clone() }
    }
}

#[derive(Clone)]
pub struct WatchPacing<S> {
    inner: S,
    /// Per resource path: the start of its last watch, as scheduled.
    next_start: Arc<Mutex<HashMap<String, Instant>>>,
}

impl<S> WatchPacing<S> {
    /// How long a request must wait: a watch of a path whose last watch
    /// started less than [`WATCH_EVERY`] ago waits out the rest.
    fn wait_for(&self, uri: &http::Uri, now: Instant) -> Option<Duration> {
        if !uri.query().unwrap_or("").split('&').any(|kv| kv == "watch=true" || kv == "watch=1") {
            return None;
        }
        let mut last = self.next_start.lock().ok()?;
        let start = last.get(uri.path()).map_or(now, |t| (*t + WATCH_EVERY).max(now));
        if last.len() >= PATHS_MAX && !last.contains_key(uri.path()) {
            last.clear();
        }
        last.insert(uri.path().to_string(), start);
        (start > now).then(|| start - now)
    }
}

impl<S, B> Service<http::Request<B>> for WatchPacing<S>
where
    S: Service<http::Request<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<S::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let wait = self.wait_for(req.uri(), Instant::now());
        // The service polled ready is the one to call; its clone stays.
        let clone = self.inner.clone();
        let mut ready = std::mem::replace(&mut self.inner, clone);
        Box::pin(async move {
            if let Some(wait) = wait {
                tokio::time::sleep(wait).await;
            }
            ready.call(req).await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watches_of_one_path_start_a_second_apart_and_other_requests_never_wait() {
        let p = WatchPacingLayer::default().layer(());
        let (watch, list): (http::Uri, http::Uri) =
            ("/api/v1/pods?fieldSelector=spec.nodeName%3Dn&watch=true".parse().unwrap(), "/api/v1/pods?limit=500".parse().unwrap());
        let t0 = Instant::now();
        assert_eq!(p.wait_for(&watch, t0), None, "the first");
        assert_eq!(p.wait_for(&watch, t0 + Duration::from_millis(100)), Some(Duration::from_millis(900)));
        // Queued behind that one: a second after it.
        assert_eq!(p.wait_for(&watch, t0 + Duration::from_millis(200)), Some(Duration::from_millis(1800)));
        assert_eq!(p.wait_for(&list, t0 + Duration::from_millis(300)), None);
        assert_eq!(p.wait_for(&"/api/v1/services?watch=true".parse().unwrap(), t0), None, "another resource");
        // Long after: no wait.
        assert_eq!(p.wait_for(&watch, t0 + Duration::from_secs(60)), None);
    }
}

//! The API server's side of a run, on a thread of its own with its own
//! async runtime: listing and watching pods and Services (pages of JSON
//! that run to megabytes on a large cluster) and posting Events never hold
//! up the event loop that drains the kernel's ring buffer and answers
//! signals. What the two sides share is the [`Directory`] (behind a lock
//! the event loop only reads) and the Event queue ([`EventPoster`]).

use std::{
    sync::{Arc, RwLock},
    thread,
    time::Duration,
};

use anyhow::{Context, Result, anyhow};
use tokio::sync::oneshot;

use super::{
    client::{EventPoster, EventResults, Kube, KubeOptions},
    directory::Directory,
};

/// The Kubernetes thread, once it has its client.
pub struct Background {
    pub directory: Arc<RwLock<Directory>>,
    /// The Event queue (with --emit-events), for whoever posts.
    pub poster: Option<EventPoster>,
    /// Resolved once the first lists are in (or the first wait is over).
    listed: Option<oneshot::Receiver<()>>,
    /// Asks the thread to stop; it answers on `stopped`.
    stop: Option<oneshot::Sender<()>>,
    stopped: Option<oneshot::Receiver<()>>,
}

/// What the thread says once it tried to build its client.
type Connected = Result<Option<Option<EventPoster>>>;

impl Background {
    /// Starts the thread and waits until it has a client, which does not
    /// contact the API server yet. `None`: no cluster is configured (a
    /// node-local run), and no thread is left running.
    pub async fn start(opts: KubeOptions, emit_events: bool, results: Option<EventResults>) -> Result<Option<Self>> {
        let directory = Arc::new(RwLock::new(Directory::default()));
        let (connected_tx, connected_rx) = oneshot::channel::<Connected>();
        let (listed_tx, listed_rx) = oneshot::channel();
        let (stop_tx, stop_rx) = oneshot::channel();
        let (stopped_tx, stopped_rx) = oneshot::channel();
        let shared = directory.clone();
        thread::Builder::new()
            .name("kubernetes".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                    Ok(r) => r,
                    Err(e) => {
                        let _ = connected_tx.send(Err(anyhow!(e).context("cannot start the Kubernetes thread's async runtime")));
                        return;
                    }
                };
                runtime.block_on(async move {
                    let kube = match Kube::connect(&opts).await {
                        Ok(Some(kube)) => kube,
                        other => {
                            let _ = connected_tx.send(other.map(|_| None));
                            return;
                        }
                    };
                    let (poster, poster_task) = match emit_events {
                        true => {
                            let (p, task) = EventPoster::spawn(kube.clone(), results);
                            (Some(p), Some(task))
                        }
                        false => (None, None),
                    };
                    if connected_tx.send(Ok(Some(poster))).is_err() {
                        return;
                    }
                    let watch = kube.keep_directory(shared, FIRST_WAIT).await;
                    let _ = listed_tx.send(());
                    // Until the run ends (or drops its handle).
                    let _ = stop_rx.await;
                    watch.abort();
                    // Queued Events get a moment to reach the API server,
                    // no more: SIGTERM must finish within a second.
                    if let Some(task) = poster_task {
                        let _ = tokio::time::timeout(POSTER_GRACE, task).await;
                    }
                    let _ = stopped_tx.send(());
                });
            })
            .context("cannot start the Kubernetes thread")?;
        let Some(poster) = connected_rx.await.context("the Kubernetes thread ended at its start")?? else {
            return Ok(None);
        };
        Ok(Some(Self { directory, poster, listed: Some(listed_rx), stop: Some(stop_tx), stopped: Some(stopped_rx) }))
    }

    /// Waits for the first pod and Service lists (at most [`FIRST_WAIT`]:
    /// a slow API server does not hold up tracing).
    pub async fn listed(&mut self) {
        if let Some(listed) = self.listed.take() {
            let _ = listed.await;
        }
    }

    /// Stops the watches and gives queued Events their moment.
    pub async fn stop(mut self) {
        drop(self.poster.take());
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(stopped) = self.stopped.take() {
            let _ = tokio::time::timeout(POSTER_GRACE + Duration::from_millis(200), stopped).await;
        }
    }
}

/// How long startup waits for the first pod list; later changes arrive
/// through watches in the background.
pub const FIRST_WAIT: Duration = Duration::from_secs(5);

/// How long queued Events may take to reach the API server at the end.
const POSTER_GRACE: Duration = Duration::from_millis(500);

//! Kubernetes context: which pod and container a verdict is about (from
//! cgroup paths, and from the API server when one is reachable), and
//! Events that put the diagnosis on the pod.

pub mod cgroup;
pub mod client;
pub mod directory;
pub mod enrich;

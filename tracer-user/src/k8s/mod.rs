//! The Kubernetes adapter: container references in cgroup paths, the API
//! server's pods and NodePort services (a [`directory::Directory`]), and
//! posting Events. It knows nothing of reports: `crate::enrich` joins the
//! two.

pub mod background;
pub mod cgroup;
pub mod client;
pub mod directory;
pub mod events;
pub mod pacing;
pub mod watch;

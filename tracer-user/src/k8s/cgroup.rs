//! Pod UID and container ID from a cgroup path: how a pid is tied to a pod
//! without asking anyone. The kubelet names cgroups after the pod UID and
//! the runtime names the container's after its ID, in one of these shapes:
//!
//! | driver   | runtime     | leaf under the pod's cgroup                                           |
//! |----------|-------------|------------------------------------------------------------------------|
//! | systemd  | containerd  | `kubepods-burstable-pod<uid_>.slice/cri-containerd-<id>.scope`          |
//! | systemd  | cri-o       | `kubepods-pod<uid_>.slice/crio-<id>.scope` (`crio-conmon-<id>.scope`)   |
//! | systemd  | docker      | `kubepods-besteffort-pod<uid_>.slice/docker-<id>.scope`                 |
//! | cgroupfs | any         | `/kubepods/burstable/pod<uid>/<id>`                                     |
//!
//! (The systemd driver writes the UID's dashes as underscores.)

use serde::Serialize;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ContainerRef {
    pub pod_uid: Option<String>,
    pub container_id: Option<String>,
    /// `containerd`, `cri-o`, `docker` when the cgroup name says so.
    pub runtime: Option<&'static str>,
}

impl ContainerRef {
    /// Reads a cgroup path (`/sys/fs/cgroup/...` or as in `/proc/PID/cgroup`).
    pub fn from_cgroup_path(path: &str) -> Self {
        let mut r = ContainerRef::default();
        for part in path.split('/') {
            let name = part.strip_suffix(".slice").or_else(|| part.strip_suffix(".scope")).unwrap_or(part);
            if let Some(uid) = pod_uid(name) {
                r.pod_uid = Some(uid);
                continue;
            }
            let (runtime, id) = match name.rsplit_once('-') {
                Some((prefix, id)) => (runtime_of(prefix), id),
                None => (None, name),
            };
            if is_container_id(id) {
                r.container_id = Some(id.to_string());
                r.runtime = runtime;
            }
        }
        r
    }

    pub fn is_empty(&self) -> bool {
        self.pod_uid.is_none() && self.container_id.is_none()
    }
}

/// `pod<uid>` (cgroupfs) or `...-pod<uid_>` (systemd), with the UID
/// normalised to dashes.
fn pod_uid(name: &str) -> Option<String> {
    let uid = match name.strip_prefix("pod") {
        Some(uid) => uid,
        None => &name[name.rfind("-pod")? + 4..],
    };
    let uid = uid.replace('_', "-");
    let hex = uid.chars().filter(char::is_ascii_hexdigit).count();
    (hex == 32 && uid.len() == 36 && uid.chars().all(|c| c.is_ascii_hexdigit() || c == '-')).then_some(uid)
}

fn runtime_of(prefix: &str) -> Option<&'static str> {
    match prefix {
        "cri-containerd" => Some("containerd"),
        "crio" | "crio-conmon" => Some("cri-o"),
        "docker" => Some("docker"),
        _ => None,
    }
}

/// Runtimes name containers by a 64-hex-digit ID.
fn is_container_id(s: &str) -> bool {
    s.len() == 64 && s.chars().all(|c| c.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;

    const UID: &str = "0a1b2c3d-1111-2222-3333-444455556666";

    fn id() -> String {
        "ab".repeat(32)
    }

    #[test]
    fn systemd_driver_with_each_runtime() {
        let uid_ = UID.replace('-', "_");
        for (leaf, runtime) in [
            (format!("cri-containerd-{}.scope", id()), "containerd"),
            (format!("crio-{}.scope", id()), "cri-o"),
            (format!("crio-conmon-{}.scope", id()), "cri-o"),
            (format!("docker-{}.scope", id()), "docker"),
        ] {
            let path = format!("/sys/fs/cgroup/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{uid_}.slice/{leaf}");
            let r = ContainerRef::from_cgroup_path(&path);
            assert_eq!(r.pod_uid.as_deref(), Some(UID), "{path}");
            assert_eq!(r.container_id, Some(id()), "{path}");
            assert_eq!(r.runtime, Some(runtime), "{path}");
        }
        // Guaranteed pods sit directly under kubepods.slice.
        let r = ContainerRef::from_cgroup_path(&format!("/kubepods.slice/kubepods-pod{uid_}.slice/cri-containerd-{}.scope", id()));
        assert_eq!(r.pod_uid.as_deref(), Some(UID));
    }

    #[test]
    fn cgroupfs_driver_v1_and_v2() {
        for path in [
            format!("/kubepods/burstable/pod{UID}/{}", id()),
            format!("/sys/fs/cgroup/pids/kubepods/pod{UID}/{}", id()),
        ] {
            let r = ContainerRef::from_cgroup_path(&path);
            assert_eq!((r.pod_uid.as_deref(), r.container_id.clone(), r.runtime), (Some(UID), Some(id()), None), "{path}");
        }
        // The pod's own cgroup (the sandbox's processes live below it).
        let r = ContainerRef::from_cgroup_path(&format!("/kubepods/besteffort/pod{UID}"));
        assert_eq!((r.pod_uid.as_deref(), r.container_id), (Some(UID), None));
    }

    #[test]
    fn docker_outside_kubernetes_and_ordinary_cgroups() {
        let r = ContainerRef::from_cgroup_path(&format!("/system.slice/docker-{}.scope", id()));
        assert_eq!((r.pod_uid, r.container_id, r.runtime), (None, Some(id()), Some("docker")));
        for path in ["/user.slice/user-0.slice/session-1.scope", "/system.slice/containerd.service", "/", ""] {
            assert!(ContainerRef::from_cgroup_path(path).is_empty(), "{path}");
        }
        // Not a UID: too short, or not hex.
        assert!(ContainerRef::from_cgroup_path("/kubepods/podabc/x").is_empty());
    }
}

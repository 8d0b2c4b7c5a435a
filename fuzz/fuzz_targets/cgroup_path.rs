//! Cgroup paths (named by the kubelet and the runtime, from a tenant's pod
//! and container names) -> pod UID and container ID; `/proc/PID/cgroup`
//! text -> the CPU controller's directory.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use tracer_user::{cgroup_cpu::cgroup_of, k8s::cgroup::ContainerRef};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let r = ContainerRef::from_cgroup_path(&text);
    if let Some(id) = &r.container_id {
        assert_eq!(id.len(), 64);
    }
    if let Some(uid) = &r.pod_uid {
        assert_eq!(uid.len(), 36);
    }
    // A root that does not exist: only the parsing runs.
    cgroup_of(1, &text, Path::new("/nonexistent/probe-tracer-fuzz"));
});

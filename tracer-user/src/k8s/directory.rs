//! What the API server says about this node's pods and the cluster's
//! NodePorts, indexed the ways a verdict looks things up: by pod UID (from a
//! cgroup), by container ID (from a cgroup or runc's container name), by pod
//! IP (a probe's destination) and by NodePort (an IPVS virtual service);
//! and the pods' probes, by address and port or by container.
//! Pure data: built from typed API lists, unit-tested without a cluster.

use std::{collections::HashMap, net::IpAddr, sync::Arc};

use k8s_openapi::api::core::v1::{Container, Pod, PodSpec, Probe, Service};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodInfo {
    pub namespace: String,
    pub name: String,
    pub uid: String,
}

/// A container of a pod: the pod and the container's name in its spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerInfo {
    pub pod: Arc<PodInfo>,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceInfo {
    pub namespace: String,
    pub name: String,
}

/// A probe in a pod's spec, with the kubelet's defaults filled in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeSpec {
    pub container: String,
    /// `liveness`, `readiness`, `startup`.
    pub probe_type: &'static str,
    /// `http`, `tcp`, `grpc`, `exec`.
    pub handler: &'static str,
    pub path: Option<String>,
    /// An exec probe's command (the argv the runtime starts in the
    /// container); empty for network probes.
    pub command: Vec<String>,
    pub timeout_s: u32,
    pub period_s: u32,
    pub failure_threshold: u32,
}

/// Probes indexed per pod, at most (a spec is the tenant's to write).
const PROBES_PER_POD_MAX: usize = 64;
/// An exec probe's command longer than this (arguments, bytes) is not
/// indexed: the tenant writes it, and the runtime's argv as the tracer
/// reads it is shorter.
const EXEC_COMMAND_ARGS_MAX: usize = 64;
const EXEC_COMMAND_BYTES_MAX: usize = 4096;

#[derive(Debug, Default)]
pub struct Directory {
    by_uid: HashMap<String, Arc<PodInfo>>,
    by_ip: HashMap<IpAddr, Arc<PodInfo>>,
    by_container: HashMap<String, ContainerInfo>,
    by_nodeport: HashMap<u16, ServiceInfo>,
    /// Network probes by the pod's address and the probe's port.
    probes: HashMap<(IpAddr, u16), Vec<ProbeSpec>>,
    /// Exec probes by the pod's UID and the container's name.
    exec_probes: HashMap<(String, String), Vec<ProbeSpec>>,
}

impl Directory {
    pub fn new(pods: &[Pod], services: &[Service]) -> Self {
        Self::from_objects(pods, services)
    }

    /// Built from anything that yields the objects, such as the reflector
    /// stores' snapshots.
    pub fn from_objects<'a>(pods: impl IntoIterator<Item = &'a Pod>, services: impl IntoIterator<Item = &'a Service>) -> Self {
        let mut d = Directory::default();
        for pod in pods {
            let meta = &pod.metadata;
            let (Some(name), Some(uid)) = (meta.name.clone(), meta.uid.clone()) else { continue };
            let info = Arc::new(PodInfo { namespace: meta.namespace.clone().unwrap_or_else(|| "default".into()), name, uid: uid.clone() });
            d.by_uid.insert(uid.clone(), info.clone());
            for spec in pod.spec.as_ref().map(exec_probe_specs).unwrap_or_default() {
                d.exec_probes.entry((uid.clone(), spec.container.clone())).or_default().push(spec);
            }
            let Some(status) = &pod.status else { continue };
            // A host-network pod has the node's address: an IP would name
            // every such pod at once, so it names none.
            let host_network = pod.spec.as_ref().and_then(|s| s.host_network).unwrap_or(false);
            if !host_network {
                let ips = status.pod_ips.iter().flatten().map(|p| p.ip.as_str()).chain(status.pod_ip.as_deref());
                let specs = pod.spec.as_ref().map(probe_specs).unwrap_or_default();
                for ip in ips.filter_map(|ip| ip.parse::<IpAddr>().ok()) {
                    d.by_ip.insert(ip, info.clone());
                    for (port, spec) in &specs {
                        let at = d.probes.entry((ip, *port)).or_default();
                        if !at.contains(spec) {
                            at.push(spec.clone());
                        }
                    }
                }
            }
            let statuses = [&status.container_statuses, &status.init_container_statuses, &status.ephemeral_container_statuses];
            for cs in statuses.into_iter().flatten().flatten() {
                if let Some(id) = cs.container_id.as_deref().and_then(strip_runtime_scheme) {
                    d.by_container.insert(id.to_string(), ContainerInfo { pod: info.clone(), name: cs.name.clone() });
                }
            }
        }
        for svc in services {
            let (Some(name), Some(spec)) = (svc.metadata.name.clone(), svc.spec.as_ref()) else { continue };
            let namespace = svc.metadata.namespace.clone().unwrap_or_else(|| "default".into());
            for port in spec.ports.iter().flatten() {
                if let Some(np) = port.node_port.and_then(|p| u16::try_from(p).ok()) {
                    d.by_nodeport.insert(np, ServiceInfo { namespace: namespace.clone(), name: name.clone() });
                }
            }
        }
        d
    }

    pub fn pod_by_uid(&self, uid: &str) -> Option<&Arc<PodInfo>> {
        self.by_uid.get(uid)
    }

    pub fn pod_by_ip(&self, ip: IpAddr) -> Option<&Arc<PodInfo>> {
        self.by_ip.get(&ip)
    }

    pub fn container(&self, id: &str) -> Option<&ContainerInfo> {
        self.by_container.get(id)
    }

    pub fn service_by_nodeport(&self, port: u16) -> Option<&ServiceInfo> {
        self.by_nodeport.get(&port)
    }

    pub fn pods(&self) -> usize {
        self.by_uid.len()
    }

    /// The network probes of the pod at `ip` on `port`.
    pub fn probes_at(&self, ip: IpAddr, port: u16) -> &[ProbeSpec] {
        self.probes.get(&(ip, port)).map_or(&[], Vec::as_slice)
    }

    /// The exec probes of container `container` (its name) of pod `pod_uid`.
    pub fn exec_probes_of(&self, pod_uid: &str, container: &str) -> &[ProbeSpec] {
        self.exec_probes.get(&(pod_uid.to_string(), container.to_string())).map_or(&[], Vec::as_slice)
    }
}

/// The kubelet's defaults for a probe's numbers (a zero or negative value
/// is the default too, as the API server's defaulting leaves it).
fn probe_spec(container: &str, probe_type: &'static str, handler: &'static str, p: &Probe) -> ProbeSpec {
    let positive = |v: Option<i32>, default: u32| v.and_then(|v| u32::try_from(v).ok()).filter(|v| *v > 0).unwrap_or(default);
    ProbeSpec {
        container: container.to_string(),
        probe_type,
        handler,
        path: p.http_get.as_ref().and_then(|h| h.path.clone()),
        command: Vec::new(),
        timeout_s: positive(p.timeout_seconds, 1),
        period_s: positive(p.period_seconds, 10),
        failure_threshold: positive(p.failure_threshold, 3),
    }
}

fn probes_of(c: &Container) -> [(&'static str, &Option<Probe>); 3] {
    [("liveness", &c.liveness_probe), ("readiness", &c.readiness_probe), ("startup", &c.startup_probe)]
}

/// A pod spec's exec probes, their commands bounded.
fn exec_probe_specs(spec: &PodSpec) -> Vec<ProbeSpec> {
    let mut out = Vec::new();
    for c in &spec.containers {
        for (probe_type, probe) in probes_of(c) {
            let Some((p, command)) = probe.as_ref().and_then(|p| Some((p, p.exec.as_ref()?.command.as_ref()?))) else { continue };
            if command.is_empty() || command.len() > EXEC_COMMAND_ARGS_MAX || command.iter().map(String::len).sum::<usize>() > EXEC_COMMAND_BYTES_MAX {
                continue;
            }
            out.push(ProbeSpec { command: command.clone(), ..probe_spec(&c.name, probe_type, "exec", p) });
            if out.len() >= PROBES_PER_POD_MAX {
                return out;
            }
        }
    }
    out
}

/// A pod spec's network probes by port, named ports resolved.
fn probe_specs(spec: &PodSpec) -> Vec<(u16, ProbeSpec)> {
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
    let mut out = Vec::new();
    for c in &spec.containers {
        let named = |name: &str| {
            c.ports.iter().flatten().find(|p| p.name.as_deref() == Some(name)).and_then(|p| u16::try_from(p.container_port).ok())
        };
        let port_of = |p: &IntOrString| match p {
            IntOrString::Int(n) => u16::try_from(*n).ok(),
            IntOrString::String(name) => named(name),
        };
        for (probe_type, probe) in probes_of(c) {
            let Some(p) = probe else { continue };
            let (handler, port) = if let Some(h) = &p.http_get {
                ("http", port_of(&h.port))
            } else if let Some(t) = &p.tcp_socket {
                ("tcp", port_of(&t.port))
            } else if let Some(g) = &p.grpc {
                ("grpc", u16::try_from(g.port).ok())
            } else {
                continue;
            };
            let Some(port) = port else { continue };
            out.push((port, probe_spec(&c.name, probe_type, handler, p)));
            if out.len() >= PROBES_PER_POD_MAX {
                return out;
            }
        }
    }
    out
}

/// `containerd://<id>`, `cri-o://<id>`, `docker://<id>` -> `<id>`.
fn strip_runtime_scheme(s: &str) -> Option<&str> {
    let id = s.split_once("://").map_or(s, |(_, id)| id);
    (!id.is_empty()).then_some(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Lists as the API server returns them (trimmed to the fields read).
    pub fn sample() -> Directory {
        let pods: k8s_openapi::List<Pod> = serde_json::from_str(include_str!("testdata/pods.json")).unwrap();
        let services: k8s_openapi::List<Service> = serde_json::from_str(include_str!("testdata/services.json")).unwrap();
        Directory::new(&pods.items, &services.items)
    }

    #[test]
    fn indexes_pods_by_uid_ip_and_container() {
        let d = sample();
        let web = d.pod_by_ip("10.200.1.2".parse().unwrap()).unwrap();
        assert_eq!((web.namespace.as_str(), web.name.as_str()), ("shop", "web-7d9f8b6c5-x2x4q"));
        assert_eq!(d.pod_by_uid(&web.uid).unwrap().name, web.name);
        let c = d.container(&"ab".repeat(32)).unwrap();
        assert_eq!((c.pod.name.as_str(), c.name.as_str()), ("web-7d9f8b6c5-x2x4q", "app"));
        // Dual-stack pods are found by either address.
        assert!(d.pod_by_ip("fd00:10:200:1::2".parse().unwrap()).is_some());
        // Host-network pods are not found by the node's address.
        assert!(d.pod_by_ip("192.168.122.10".parse().unwrap()).is_none());
        assert!(d.pod_by_uid("1e2f3a4b-5555-6666-7777-888899990000").is_some());
    }

    #[test]
    fn indexes_network_probes_by_address_and_port() {
        let d = sample();
        let probes = d.probes_at("10.200.1.2".parse().unwrap(), 8080);
        assert_eq!(probes.len(), 1);
        let p = &probes[0];
        assert_eq!((p.probe_type, p.handler, p.path.as_deref(), p.container.as_str()), ("liveness", "http", Some("/healthz"), "app"));
        assert_eq!((p.timeout_s, p.period_s, p.failure_threshold), (1, 10, 3));
        assert!(d.probes_at("10.200.1.2".parse().unwrap(), 9090).is_empty());
    }

    #[test]
    fn indexes_exec_probes_by_container_with_their_commands() {
        let d = sample();
        let probes = d.exec_probes_of("0a1b2c3d-1111-2222-3333-444455556666", "app");
        assert_eq!(probes.len(), 1);
        let p = &probes[0];
        assert_eq!((p.probe_type, p.handler, p.command.as_slice()), ("readiness", "exec", ["/bin/sh", "-c", "test -e /tmp/ready"].map(String::from).as_slice()));
        assert_eq!((p.timeout_s, p.period_s, p.failure_threshold), (5, 15, 2));
        assert!(d.exec_probes_of("0a1b2c3d-1111-2222-3333-444455556666", "sidecar").is_empty());
        // Not a network probe on any port.
        assert_eq!(d.probes_at("10.200.1.2".parse().unwrap(), 8080).len(), 1);
    }

    #[test]
    fn a_tenants_oversized_exec_command_is_not_indexed() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "uid": "u"},
            "spec": {"containers": [{"name": "c",
                "livenessProbe": {"exec": {"command": ["sh", "-c", "x".repeat(EXEC_COMMAND_BYTES_MAX)]}}},
                {"name": "d", "livenessProbe": {"exec": {"command": vec!["a"; EXEC_COMMAND_ARGS_MAX + 1]}}},
                {"name": "e", "livenessProbe": {"exec": {"command": ["true"]}}}]}
        }))
        .unwrap();
        let d = Directory::new(&[pod], &[]);
        assert!(d.exec_probes_of("u", "c").is_empty() && d.exec_probes_of("u", "d").is_empty());
        assert_eq!(d.exec_probes_of("u", "e")[0].timeout_s, 1, "the kubelet's default");
    }

    #[test]
    fn maps_nodeports_to_services() {
        let d = sample();
        let s = d.service_by_nodeport(31055).unwrap();
        assert_eq!((s.namespace.as_str(), s.name.as_str()), ("shop", "checkout"));
        assert!(d.service_by_nodeport(8080).is_none(), "a ClusterIP port is not a NodePort");
    }
}

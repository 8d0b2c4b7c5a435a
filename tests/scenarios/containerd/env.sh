# Names shared by the containerd scenario's scripts: Debian's containerd 1.6
# with its CRI plugin disabled, driven by ctr in namespace k8s.io, as a
# kubelet's exec probes reach it (CRI ExecSync -> shim -> runc exec).
CTRD_DIR="$SCENARIO_WORK/containerd"
CTRD_SOCK="$CTRD_DIR/containerd.sock"
CTRD_NS=k8s.io
ROOTFS="$CTRD_DIR/rootfs"
# The pod every container belongs to, and its containers (64-hex IDs).
POD_UID=0a1b2c3d-1111-2222-3333-444455556666
PROBE_ID=$(printf 'c0%.0s' $(seq 32))
STOPPED_ID=$(printf 'd1%.0s' $(seq 32))
CRUN_ID=$(printf 'e2%.0s' $(seq 32))
HOSTPID_ID=$(printf 'f3%.0s' $(seq 32))
# The cgroup containerd (and so every shim) runs in, as systemd names it.
RUNTIME_CGROUP=system.slice/containerd.service
POD_CGROUP=kubepods/burstable/pod$POD_UID
ctr_() { ctr --address "$CTRD_SOCK" -n "$CTRD_NS" "$@"; }
# The pids hierarchy: v1's pids controller, else the v2 root.
pids_root() {
    if [ -d /sys/fs/cgroup/pids ]; then echo /sys/fs/cgroup/pids; else echo /sys/fs/cgroup; fi
}

# Names shared by the containerd scenario's scripts: Debian's containerd 1.6
# with its CRI plugin disabled, driven by ctr in namespace k8s.io, as a
# kubelet's exec probes reach it (CRI ExecSync -> shim -> runc exec).
CTRD_DIR="$SCENARIO_WORK/containerd"
CTRD_SOCK="$CTRD_DIR/containerd.sock"
CTRD_NS=k8s.io
# containerd's usual state directory: the tracer finds runc's state under
# it (runc/k8s.io) without being told.
CTRD_STATE=/run/containerd
ROOTFS="$CTRD_DIR/rootfs"
# The pod every container belongs to, and its containers (64-hex IDs).
POD_UID=0a1b2c3d-1111-2222-3333-444455556666
PROBE_ID=$(printf 'c0%.0s' $(seq 32))
STOPPED_ID=$(printf 'd1%.0s' $(seq 32))
# Stopped before the tracer starts: found in the runtime's state.
EARLY_STOPPED_ID=$(printf 'd0%.0s' $(seq 32))
CRUN_ID=$(printf 'e2%.0s' $(seq 32))
HOSTPID_ID=$(printf 'f3%.0s' $(seq 32))
# Exec'd into with a command that leaves a child holding its output: the
# orphan becomes a zombie of that container's init, which never reaps.
HELD_ID=$(printf 'b5%.0s' $(seq 32))
# The cgroup containerd (and so every shim) runs in, named as systemd
# names a service's, in a slice of its own: never a real containerd's.
RUNTIME_CGROUP=probe-tracer-test.slice/containerd.service
POD_CGROUP=kubepods/burstable/pod$POD_UID
ctr_() { ctr --address "$CTRD_SOCK" -n "$CTRD_NS" "$@"; }
# The pids hierarchy: v1's pids controller, else the v2 root.
pids_root() {
    if [ -d /sys/fs/cgroup/pids ]; then echo /sys/fs/cgroup/pids; else echo /sys/fs/cgroup; fi
}
# run_container ID [RUNTIME-BINARY]: a long-running container of the pod.
run_container() {
    local id=$1 bin=${2:-runc}
    ctr_ run -d --rootfs --runc-binary "$(command -v "$bin")" \
        --env PATH=/bin --cgroup "/$POD_CGROUP/$id" "$ROOTFS" "$id" /bin/sleep 3600 >>"$CTRD_DIR/ctr.log" 2>&1
}

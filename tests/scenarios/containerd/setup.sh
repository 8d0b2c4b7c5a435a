#!/usr/bin/env bash
# Starts Debian's containerd (CRI plugin disabled) in its own cgroup
# (system.slice/containerd.service), and two containers of one pod through
# the real shim: one on runc, one on crun (ctr --runc-binary), each in a
# kubepods/burstable/pod<uid>/<id> cgroup. Works on cgroup v1 and v2.
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../lib/common.sh"
. "$here/env.sh"
need containerd ctr containerd-shim-runc-v2 runc crun busybox
"$here/teardown.sh" >/dev/null 2>&1 || true
if ! grep -q cgroup /proc/mounts; then
    mount -t cgroup2 none /sys/fs/cgroup
fi
mkdir -p "$CTRD_DIR" "$ROOTFS/bin" "$ROOTFS/proc" "$ROOTFS/dev" "$ROOTFS/sys" "$ROOTFS/tmp"
cp "$(command -v busybox)" "$ROOTFS/bin/busybox"
for applet in sh sleep true false cat; do ln -sf busybox "$ROOTFS/bin/$applet"; done

pr=$(pids_root)
if [ "$pr" = /sys/fs/cgroup ]; then
    # v2: the pids controller must be enabled down to the pod's cgroup.
    for d in "" system.slice kubepods kubepods/burstable "$POD_CGROUP"; do
        mkdir -p "$pr/$d"
        echo +pids >"$pr/$d/cgroup.subtree_control" 2>/dev/null || true
    done
fi
mkdir -p "$pr/$RUNTIME_CGROUP" "$pr/$POD_CGROUP"

cat >"$CTRD_DIR/config.toml" <<TOML
version = 2
root = "$CTRD_DIR/root"
state = "/run/containerd"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$CTRD_SOCK"
[ttrpc]
  address = "$CTRD_SOCK.ttrpc"
TOML
# containerd in its own cgroup from its first instruction: its shims are
# its children and stay there.
(
    echo $BASHPID >"$pr/$RUNTIME_CGROUP/cgroup.procs"
    exec containerd --config "$CTRD_DIR/config.toml" </dev/null >>"$CTRD_DIR/containerd.log" 2>&1
) &
echo $! >"$CTRD_DIR/containerd.pid"
for _ in $(seq 100); do ctr_ version >/dev/null 2>&1 && break; sleep 0.1; done
ctr_ version >/dev/null || { cat "$CTRD_DIR/containerd.log" >&2; exit 1; }

# run_container ID [RUNTIME-BINARY]: a long-running container of the pod.
run_container() {
    local id=$1 bin=${2:-runc}
    ctr_ run -d --rootfs --runc-binary "$(command -v "$bin")" \
        --env PATH=/bin --cgroup "/$POD_CGROUP/$id" "$ROOTFS" "$id" /bin/sleep 3600 >>"$CTRD_DIR/ctr.log" 2>&1
}
run_container "$PROBE_ID" runc
# crun refuses cgroup v1 hybrid hosts whose v2 tree holds a controller
# (this machine's hugetlb): then there is no crun container.
run_container "$CRUN_ID" crun || log "crun container not started: $(tail -1 "$CTRD_DIR/ctr.log")"
log "containerd $(cat "$CTRD_DIR/containerd.pid") in $RUNTIME_CGROUP: containers in $POD_CGROUP: $(ctr_ task ls -q | tr "\n" " ")"

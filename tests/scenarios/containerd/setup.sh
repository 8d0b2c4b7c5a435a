#!/usr/bin/env bash
# Starts Debian's containerd (CRI plugin disabled) in a cgroup of its own
# (RUNTIME_CGROUP, .../containerd.service), and a container of a pod through
# the real shim, on runc, in a kubepods/burstable/pod<uid>/<id> cgroup
# (trigger.sh starts the others). Works on cgroup v1 and v2.
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
    for d in "" "${RUNTIME_CGROUP%/*}" kubepods kubepods/burstable "$POD_CGROUP"; do
        mkdir -p "$pr/$d"
        echo +pids >"$pr/$d/cgroup.subtree_control" 2>/dev/null || true
    done
fi
mkdir -p "$pr/$RUNTIME_CGROUP" "$pr/$POD_CGROUP"

cat >"$CTRD_DIR/config.toml" <<TOML
version = 2
root = "$CTRD_DIR/root"
state = "$CTRD_STATE"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$CTRD_SOCK"
[ttrpc]
  address = "$CTRD_SOCK.ttrpc"
TOML
# containerd in its own cgroup from its first instruction: its shims are
# its children and stay there. It keeps none of the caller's descriptors
# but stdio: an inherited one (a test run's flock on its lock file) would
# stay held by containerd and its shims and block every other run.
(
    echo $BASHPID >"$pr/$RUNTIME_CGROUP/cgroup.procs"
    for f in /proc/$BASHPID/fd/*; do
        fd=${f##*/}
        if [ "$fd" -gt 2 ]; then eval "exec $fd>&-"; fi
    done
    exec containerd --config "$CTRD_DIR/config.toml" </dev/null >>"$CTRD_DIR/containerd.log" 2>&1
) &
echo $! >"$CTRD_DIR/containerd.pid"
# Its socket appears once it serves (each ctr call costs seconds under
# emulation: none is spent polling).
for _ in $(seq 600); do [ -S "$CTRD_SOCK" ] && break; sleep 0.1; done
run_container "$PROBE_ID" runc || { cat "$CTRD_DIR/containerd.log" "$CTRD_DIR/ctr.log" >&2; exit 1; }
log "containerd $(cat "$CTRD_DIR/containerd.pid") in $RUNTIME_CGROUP: container $PROBE_ID in $POD_CGROUP"

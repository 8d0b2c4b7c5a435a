#!/usr/bin/env bash
# Ends the scenario without asking containerd: every ctr call (and the
# runc delete the shim runs for it) costs seconds under emulation. It kills
# the containers, containerd and its shims, and removes what they leave for
# this pod's IDs only: runc's state, the bundles, the shims' sockets and
# the cgroups.
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../lib/common.sh"
. "$here/env.sh"
set +e
pr=$(pids_root)
ids="$PROBE_ID $STOPPED_ID $EARLY_STOPPED_ID $CRUN_ID $HOSTPID_ID $HELD_ID"
for id in $ids; do
    for p in $(cat "$pr/$POD_CGROUP/$id/cgroup.procs" 2>/dev/null); do kill -KILL "$p" 2>/dev/null; done
done
if [ -f "$CTRD_DIR/containerd.pid" ]; then
    pid=$(cat "$CTRD_DIR/containerd.pid")
    kill "$pid" 2>/dev/null
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null
fi
# Shims outlive containerd: end the ones in the runtime's cgroup.
for p in $(cat "$pr/$RUNTIME_CGROUP/cgroup.procs" 2>/dev/null); do kill -KILL "$p" 2>/dev/null; done
for _ in $(seq 50); do [ -s "$pr/$RUNTIME_CGROUP/cgroup.procs" ] || break; sleep 0.1; done
for id in $ids; do
    bundle=$CTRD_STATE/io.containerd.runtime.v2.task/$CTRD_NS/$id
    if [ -d "$bundle" ]; then
        sock=$(sed -n 's|^unix://||p' "$bundle/address" 2>/dev/null)
        case $sock in "$CTRD_STATE"/s/*) rm -f "$sock" ;; esac
        umount "$bundle/rootfs" 2>/dev/null
        rm -rf "$bundle"
    fi
    rm -rf "${CTRD_STATE:?}/runc/$CTRD_NS/$id"
done
echo max >"$pr/$RUNTIME_CGROUP/pids.max" 2>/dev/null
# runc made the containers' cgroups in every hierarchy (v1) or the one (v2).
for h in /sys/fs/cgroup /sys/fs/cgroup/*; do
    [ -d "$h/$POD_CGROUP" ] || continue
    find "$h/$POD_CGROUP" -depth -type d -exec rmdir {} \; 2>/dev/null
    rmdir "$h/kubepods/burstable" "$h/kubepods" 2>/dev/null
done
rmdir "$pr/$RUNTIME_CGROUP" "$pr/${RUNTIME_CGROUP%/*}" 2>/dev/null
umount "$CTRD_DIR/root"/* 2>/dev/null
rm -rf "$CTRD_DIR"
exit 0

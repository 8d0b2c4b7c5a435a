#!/usr/bin/env bash
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../lib/common.sh"
. "$here/env.sh"
set +e
pr=$(pids_root)
if [ -S "$CTRD_SOCK" ]; then
    for id in $(ctr_ task ls -q 2>/dev/null); do ctr_ task kill -s KILL "$id" >/dev/null 2>&1; done
    sleep 0.3
    for id in $(ctr_ task ls -q 2>/dev/null); do ctr_ task delete -f "$id" >/dev/null 2>&1; done
    for id in $(ctr_ containers ls -q 2>/dev/null); do ctr_ containers delete "$id" >/dev/null 2>&1; done
fi
if [ -f "$CTRD_DIR/containerd.pid" ]; then
    pid=$(cat "$CTRD_DIR/containerd.pid")
    kill "$pid" 2>/dev/null
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
fi
# Shims outlive containerd: end the ones in the runtime's cgroup.
[ -n "$pr" ] && for p in $(cat "$pr/$RUNTIME_CGROUP/cgroup.procs" 2>/dev/null); do kill -KILL "$p" 2>/dev/null; done
sleep 0.2
echo max >"$pr/$RUNTIME_CGROUP/pids.max" 2>/dev/null
for d in $(find "$pr/kubepods" -depth -type d 2>/dev/null) "$pr/$RUNTIME_CGROUP" "$pr/system.slice"; do rmdir "$d" 2>/dev/null; done
umount "$CTRD_DIR/root"/* 2>/dev/null
rm -rf "$CTRD_DIR"
exit 0

#!/usr/bin/env bash
# A memory-limited cgroup (a container's memory.max) to OOM-kill a process in.
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../lib/common.sh"
. "$here/env.sh"
"$here/teardown.sh" >/dev/null 2>&1 || true
[ -x "$MEMHOG" ] || { echo "memhog missing at $MEMHOG (cargo build --release -p tests --bins)" >&2; exit 2; }
if ! grep -q cgroup /proc/mounts; then
    mount -t cgroup2 none /sys/fs/cgroup
    . "$here/env.sh"
fi
if [ -e /sys/fs/cgroup/cgroup.subtree_control ]; then
    # cgroup v2: children get memory.max only with the controller enabled.
    grep -qw memory /sys/fs/cgroup/cgroup.subtree_control || echo +memory >/sys/fs/cgroup/cgroup.subtree_control
fi
mkdir -p "$OOM_CGROUP"
set_limit "$LIMIT_MIB"
log "cgroup $OOM_CGROUP limited to $LIMIT_MIB MiB"

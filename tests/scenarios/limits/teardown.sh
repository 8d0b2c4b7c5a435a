#!/usr/bin/env bash
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../lib/common.sh"
. "$here/env.sh"
netns_down "$LIMIT_NS" veth-ptlim
for root in "$CG_CPU_ROOT" $CG_UNIFIED_ROOT; do
    for id in "$THROTTLED_ID" "$FREE_ID"; do
        d="$root/$POD_CGROUP/$id"
        [ -d "$d" ] || continue
        xargs -r kill -9 <"$d/cgroup.procs" 2>/dev/null || true
        for _ in $(seq 50); do rmdir "$d" 2>/dev/null && break; sleep 0.1; done
    done
    rmdir "$root/$POD_CGROUP" "$root/kubepods/burstable" "$root/kubepods" 2>/dev/null || true
done

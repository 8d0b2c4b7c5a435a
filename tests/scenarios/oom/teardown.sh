#!/usr/bin/env bash
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../lib/common.sh"
. "$here/env.sh"
set +e
if [ -d "$OOM_CGROUP" ]; then
    xargs -r kill -9 <"$OOM_CGROUP/cgroup.procs" 2>/dev/null
    sleep 0.2
    rmdir "$OOM_CGROUP"
fi
rm -f "$SCENARIO_WORK/containerd-shim"
exit 0

#!/usr/bin/env bash
# A pod with two containers in the kubelet's cgroup layout: one at a CPU
# limit of 0.01 with busy loops beside its server, one without a limit.
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../lib/common.sh"
. "$here/env.sh"
need ip python3
"$here/teardown.sh" >/dev/null 2>&1 || true
if ! grep -q cgroup /proc/mounts; then
    mount -t cgroup2 none /sys/fs/cgroup
    . "$here/env.sh"
fi

# mkcg ID: the container's cgroup (and its unified twin on a v1 hybrid).
mkcg() {
    if [ "$CG_V2" = 1 ]; then
        local d=$CG_CPU_ROOT
        for part in kubepods burstable "pod$LIMIT_POD_UID"; do
            grep -qw cpu "$d/cgroup.subtree_control" || echo +cpu >"$d/cgroup.subtree_control"
            d=$d/$part
            mkdir -p "$d"
        done
        grep -qw cpu "$d/cgroup.subtree_control" || echo +cpu >"$d/cgroup.subtree_control"
    fi
    mkdir -p "$CG_CPU_ROOT/$POD_CGROUP/$1"
    [ -z "$CG_UNIFIED_ROOT" ] || mkdir -p "$CG_UNIFIED_ROOT/$POD_CGROUP/$1"
}

# enter ID CMD...: runs CMD in the pod's namespace and the container's cgroup.
enter() {
    local id=$1
    shift
    local procs="$CG_CPU_ROOT/$POD_CGROUP/$id/cgroup.procs"
    local unified=
    [ -z "$CG_UNIFIED_ROOT" ] || unified="$CG_UNIFIED_ROOT/$POD_CGROUP/$id/cgroup.procs"
    # The cgroup first: `ip netns exec` remounts /sys, cgroups and all.
    setsid sh -c 'echo $$ >"$1"; [ -z "$2" ] || echo $$ >"$2"; shift 2; exec ip netns exec "$@"' \
        sh "$procs" "$unified" "$LIMIT_NS" "$@" </dev/null &
}

wait_ready() {
    for _ in $(seq 100); do
        grep -q ready "$1" 2>/dev/null && return 0
        sleep 0.1
    done
    cat "$1" >&2
    exit 1
}

netns_up "$LIMIT_NS" veth-ptlim "$LIMIT_NODE_IP" "$LIMIT_POD_IP"
mkcg "$THROTTLED_ID"
mkcg "$FREE_ID"
log_t="$SCENARIO_WORK/limits-throttled.log"
log_f="$SCENARIO_WORK/limits-free.log"
log_s="$SCENARIO_WORK/limits-stalled.log"
log_d="$SCENARIO_WORK/limits-slow.log"
enter "$THROTTLED_ID" python3 "$here/server.py" "$LIMIT_POD_IP" "$PORT_THROTTLED" >"$log_t" 2>&1
enter "$FREE_ID" python3 "$here/server.py" "$LIMIT_POD_IP" "$PORT_FREE" >"$log_f" 2>&1
enter "$FREE_ID" python3 "$here/server.py" "$LIMIT_POD_IP" "$PORT_FREE_STALLED" --stall >"$log_s" 2>&1
enter "$FREE_ID" python3 "$here/server.py" "$LIMIT_POD_IP" "$PORT_FREE_SLOW" --delay 0.85 >"$log_d" 2>&1
wait_ready "$log_t"
wait_ready "$log_d"
wait_ready "$log_f"
wait_ready "$log_s"
# The limit once the server is up (Python's start would take seconds at it).
cg="$CG_CPU_ROOT/$POD_CGROUP/$THROTTLED_ID"
if [ "$CG_V2" = 1 ]; then
    echo "$CPU_QUOTA_US $CPU_PERIOD_US" >"$cg/cpu.max"
else
    echo "$CPU_PERIOD_US" >"$cg/cpu.cfs_period_us"
    echo "$CPU_QUOTA_US" >"$cg/cpu.cfs_quota_us"
fi
for _ in $(seq "$BUSY_LOOPS"); do
    enter "$THROTTLED_ID" sh -c 'while :; do :; done' >/dev/null 2>&1
done
log "limits pod up: $LIMIT_POD_IP:$PORT_THROTTLED at $((CPU_QUOTA_US * 100 / CPU_PERIOD_US))% of a CPU, :$PORT_FREE, :$PORT_FREE_STALLED and :$PORT_FREE_SLOW unlimited"

# Shared helpers for scenario scripts. Source it; do not run it.
# Scenarios build their own little cluster out of network namespaces and veth
# pairs on this machine only (10.200.0.0/16), never touching other addresses.
set -euo pipefail

SCENARIO_WORK=${SCENARIO_WORK:-/tmp/probe-tracer-scenarios}
# Another runc for the scenarios (a directory holding a `runc`, e.g. the
# newer one `cargo xtask setup` unpacks under ~/.cache/probe-tracer/runc/bin).
if [ -n "${PROBE_TRACER_RUNC_DIR:-}" ]; then
    PATH="$PROBE_TRACER_RUNC_DIR:$PATH"
fi
mkdir -p "$SCENARIO_WORK"

log() { printf '[scenario] %s\n' "$*" >&2; }

need() {
    for cmd in "$@"; do
        command -v "$cmd" >/dev/null 2>&1 || { echo "scenario needs '$cmd' (run: cargo xtask setup)" >&2; exit 2; }
    done
}

# A prober binary whose comm is "kubelet", so probe-tracer's default
# --prober-comm filter matches it as it would match the real kubelet.
kubelet_prober() {
    local bin="$SCENARIO_WORK/kubelet"
    [ -x "$bin" ] || cp "$(command -v curl)" "$bin"
    echo "$bin"
}

# netns_up NAME HOST_IF HOST_ADDR NS_ADDR: a "pod" namespace behind a veth pair.
netns_up() {
    local ns=$1 hif=$2 haddr=$3 nsaddr=$4
    ip netns add "$ns"
    ip link add "$hif" type veth peer name eth0 netns "$ns"
    ip addr add "$haddr/24" dev "$hif"
    ip link set "$hif" up
    ip -n "$ns" addr add "$nsaddr/24" dev eth0
    ip -n "$ns" link set eth0 up
    ip -n "$ns" link set lo up
    ip -n "$ns" route add default via "$haddr"
}

netns_down() {
    local ns=$1 hif=$2
    ip link del "$hif" 2>/dev/null || true
    ip netns pids "$ns" 2>/dev/null | xargs -r kill 2>/dev/null || true
    ip netns del "$ns" 2>/dev/null || true
}

# runc helpers (runc scenario; RUNC_ROOT and BUNDLE come from its env.sh).
start_container() {
    runc --root "$RUNC_ROOT" run -d --bundle "$BUNDLE" "$1" </dev/null >/dev/null 2>>"$SCENARIO_WORK/runc-exec.log"
}

container_pid() {
    runc --root "$RUNC_ROOT" state "$1" | jq -r .pid
}

# crun helpers (same bundle). crun 1.8 refuses to create a container on a
# cgroup v1 hybrid host whose v2 tree holds a controller; its create then
# runs in a mount namespace without the v2 tree (v1 only, as such a host
# has it). Its execs need no such help: they run as a node runs them.
start_crun_container() {
    if ! crun --root="$CRUN_ROOT" run -d --bundle "$BUNDLE" "$1" </dev/null >/dev/null 2>>"$SCENARIO_WORK/runc-exec.log"; then
        unshare -m sh -c 'umount /sys/fs/cgroup/unified && exec crun --root="$1" run -d --bundle "$2" "$3"' \
            - "$CRUN_ROOT" "$BUNDLE" "$1" </dev/null >/dev/null 2>>"$SCENARIO_WORK/runc-exec.log"
    fi
}

crun_pid() {
    crun --root="$CRUN_ROOT" state "$1" | jq -r .pid
}

# set_limit MIB: the OOM scenario cgroup's memory limit, without swap.
set_limit() {
    local bytes=$(($1 * 1024 * 1024))
    if [ -e "$OOM_CGROUP/memory.max" ]; then
        echo "$bytes" >"$OOM_CGROUP/memory.max"
        [ -e "$OOM_CGROUP/memory.swap.max" ] && echo 0 >"$OOM_CGROUP/memory.swap.max"
    else
        # v1: memsw must stay >= the limit; raise it first, lower it last.
        if [ -e "$OOM_CGROUP/memory.memsw.limit_in_bytes" ]; then
            echo -1 >"$OOM_CGROUP/memory.memsw.limit_in_bytes" 2>/dev/null
        fi
        echo "$bytes" >"$OOM_CGROUP/memory.limit_in_bytes"
        [ -e "$OOM_CGROUP/memory.memsw.limit_in_bytes" ] && echo "$bytes" >"$OOM_CGROUP/memory.memsw.limit_in_bytes"
    fi
    return 0
}

#!/usr/bin/env bash
# Runs what an exec probe runs (`runc exec`), in one of four situations, and
# prints runc's exit status for each attempt (0 = the probe command ran):
#   healthy   runc exec into a running container
#   pids      the container's pids limit is exhausted (incident 2:
#             "read init-p: connection reset by peer"); retries until one
#             attempt fails, at most 30
#   setns     runc run into a pod network namespace that was torn down
#             (setns returns EINVAL)
#   stopped   the container's init was killed behind runc's back, then
#             runc exec (incident 3: "cannot exec in a stopped container")
#   pids-fixed, setns-fixed, stopped-fixed   the same with the fix applied
#             (pids limit raised; the pod's netns mounted; the container
#             restarted): each must succeed and produce no verdict
#   hostpid [N]  runc run of a container in the host's pid namespace
#             (hostPID) whose command forks and execs N (300) times
#   slow [SECS] [N]  N `runc state` calls through a runtime that stalls SECS
#             seconds first (incident 5: the calls kubelet's relist waits on)
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../lib/common.sh"
. "$here/env.sh"
set +e

runc_exec() {
    runc --root "$RUNC_ROOT" exec "$1" true >>"$SCENARIO_WORK/runc-exec.log" 2>&1
    echo $?
}

case ${1:-} in
healthy)
    runc_exec "$CONTAINER"
    ;;
pids)
    # Only the container's init fits: runc init's own threads cannot be
    # created once it has joined the container's cgroup. Whether the Go
    # runtime starts its threads before or after runc moves it into the
    # cgroup is a race, so retry until an attempt fails (ten attempts all
    # won the race once, on a fresh machine's first run: hence thirty).
    runc --root "$RUNC_ROOT" update --pids-limit 1 "$CONTAINER"
    statuses=()
    for _ in $(seq 30); do
        status=$(runc_exec "$CONTAINER")
        statuses+=("$status")
        [ "$status" != 0 ] && break
    done
    runc --root "$RUNC_ROOT" update --pids-limit 1000 "$CONTAINER"
    echo "${statuses[*]}"
    ;;
setns)
    # Kubernetes containers join their pod sandbox's network namespace by
    # path. Unmount it (as a sandbox teardown does) and leave the file.
    ip netns add "$GONE_NETNS"
    umount "/run/netns/$GONE_NETNS"
    rm -rf "$BUNDLE-netns"
    cp -a "$BUNDLE" "$BUNDLE-netns"
    jq --arg p "/run/netns/$GONE_NETNS" '.process.args = ["true"]
        | .linux.namespaces |= map(if .type == "network" then .path = $p else . end)' \
        "$BUNDLE/config.json" >"$BUNDLE-netns/config.json"
    runc --root "$RUNC_ROOT" run --bundle "$BUNDLE-netns" "$NETNS_CONTAINER" \
        </dev/null >>"$SCENARIO_WORK/runc-exec.log" 2>&1
    echo $?
    runc --root "$RUNC_ROOT" delete -f "$NETNS_CONTAINER" >/dev/null 2>&1
    rm -f "/run/netns/$GONE_NETNS"
    ;;
stopped)
    start_container "$STOPPED_CONTAINER"
    kill -KILL "$(container_pid "$STOPPED_CONTAINER")"
    # Wait until runc sees it stopped, as the kubelet's next probe would.
    for _ in $(seq 50); do
        runc --root "$RUNC_ROOT" state "$STOPPED_CONTAINER" 2>/dev/null | grep -q '"stopped"' && break
        sleep 0.1
    done
    runc_exec "$STOPPED_CONTAINER"
    runc --root "$RUNC_ROOT" delete -f "$STOPPED_CONTAINER" >/dev/null 2>&1
    ;;
pids-fixed)
    runc --root "$RUNC_ROOT" update --pids-limit 1000 "$CONTAINER"
    runc_exec "$CONTAINER"
    ;;
setns-fixed)
    ip netns add "$GONE_NETNS"
    rm -rf "$BUNDLE-netns"
    cp -a "$BUNDLE" "$BUNDLE-netns"
    jq --arg p "/run/netns/$GONE_NETNS" '.process.args = ["true"]
        | .linux.namespaces |= map(if .type == "network" then .path = $p else . end)' \
        "$BUNDLE/config.json" >"$BUNDLE-netns/config.json"
    runc --root "$RUNC_ROOT" run --bundle "$BUNDLE-netns" "$NETNS_CONTAINER" \
        </dev/null >>"$SCENARIO_WORK/runc-exec.log" 2>&1
    echo $?
    runc --root "$RUNC_ROOT" delete -f "$NETNS_CONTAINER" >/dev/null 2>&1
    ip netns del "$GONE_NETNS"
    ;;
stopped-fixed)
    # What restarting the pod does: a fresh container with a live init.
    start_container "$STOPPED_CONTAINER"
    runc_exec "$STOPPED_CONTAINER"
    runc --root "$RUNC_ROOT" delete -f "$STOPPED_CONTAINER" >/dev/null 2>&1
    ;;
hostpid)
    rm -rf "$BUNDLE-hostpid"
    cp -a "$BUNDLE" "$BUNDLE-hostpid"
    jq --arg n "${2:-300}" '.process.args = ["sh", "-c", "i=0; while [ $i -lt \($n) ]; do /bin/true; i=$((i+1)); done"]
        | .linux.namespaces |= map(select(.type != "pid"))' \
        "$BUNDLE/config.json" >"$BUNDLE-hostpid/config.json"
    runc --root "$RUNC_ROOT" run --bundle "$BUNDLE-hostpid" pt-hostpid \
        </dev/null >>"$SCENARIO_WORK/runc-exec.log" 2>&1
    echo $?
    runc --root "$RUNC_ROOT" delete -f pt-hostpid >/dev/null 2>&1
    rm -rf "$BUNDLE-hostpid"
    ;;
slow)
    # A wrapper named runc, like a runtime stuck on I/O or a lock: it sleeps,
    # then execs the real runc (same process, so one invocation).
    wrapper="$SCENARIO_WORK/slow-runtime"
    mkdir -p "$wrapper"
    printf '#!/bin/sh\nsleep %s\nexec %s "$@"\n' "${2:-1.5}" "$(command -v runc)" >"$wrapper/runc"
    chmod +x "$wrapper/runc"
    statuses=()
    for _ in $(seq "${3:-2}"); do
        "$wrapper/runc" --root "$RUNC_ROOT" state "$CONTAINER" >/dev/null 2>&1
        statuses+=("$?")
    done
    echo "${statuses[*]}"
    ;;
*)
    echo "usage: $0 healthy|pids|setns|stopped|pids-fixed|setns-fixed|stopped-fixed|hostpid [N]|slow [SECS] [N]" >&2
    exit 2
    ;;
esac

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
#   crun-up   start the crun container (crun run directly, no shim)
#   crun-healthy, crun-missing   an exec of true, of a missing binary, into
#             it the way CRI-O's conmon runs one (no --log)
#   crun-pids the container at its pids limit; the exec's command forks
#             (prints crun's status and the command's "can't fork" count)
#   crun-stop  start a second crun container and kill its init (prints
#             STOPPED and the init's pid once crun sees it); crun-stopped:
#             exec into it, then delete it
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

# crun exec as conmon runs it: the process from a file, detached, its pid
# in a file. Waits for the command to end; prints crun's exit status.
crun_exec() {
    local out="$SCENARIO_WORK/crun-exec.out" pidfile="$SCENARIO_WORK/crun-exec.pid"
    jq --argjson a "$2" '.process | .args = $a' "$BUNDLE/config.json" >"$SCENARIO_WORK/crun-process.json"
    rm -f "$pidfile"
    crun --root="$CRUN_ROOT" exec --pid-file "$pidfile" --process "$SCENARIO_WORK/crun-process.json" \
        --detach "$1" </dev/null >"$out" 2>&1
    local status=$?
    local pid
    pid=$(cat "$pidfile" 2>/dev/null)
    for _ in $(seq 100); do
        [ -n "$pid" ] && [ -e "/proc/$pid" ] && [ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" != Z ] || break
        sleep 0.1
    done
    cat "$out" >>"$SCENARIO_WORK/runc-exec.log"
    echo "$status"
}

# `run -d` returns once the init was told to start: under load it may not
# have exec'd its command yet, and a kill then would hit the runtime's init.
wait_for_command() {
    for _ in $(seq 50); do
        [ "$(cat "/proc/$1/comm" 2>/dev/null)" = sleep ] && return
        sleep 0.1
    done
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
    init=$(container_pid "$STOPPED_CONTAINER")
    wait_for_command "$init"
    kill -KILL "$init"
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
crun-up)
    start_crun_container "$CRUN_CONTAINER"
    echo $?
    ;;
crun-healthy)
    crun_exec "$CRUN_CONTAINER" '["true"]'
    ;;
crun-missing)
    crun_exec "$CRUN_CONTAINER" '["/bin/nonexistent"]'
    ;;
crun-pids)
    # crun forks outside the container and moves the command in (the move
    # is not held to pids.max): the command's own fork is what fails.
    crun --root="$CRUN_ROOT" update --pids-limit 1 "$CRUN_CONTAINER"
    status=$(crun_exec "$CRUN_CONTAINER" '["sh", "-c", "/bin/true; /bin/true"]')
    crun --root="$CRUN_ROOT" update --pids-limit 1000 "$CRUN_CONTAINER"
    echo "$status $(grep -c "can't fork" "$SCENARIO_WORK/crun-exec.out")"
    ;;
crun-stop)
    start_crun_container "$CRUN_STOPPED"
    init=$(crun_pid "$CRUN_STOPPED")
    wait_for_command "$init"
    kill -KILL "$init"
    for _ in $(seq 50); do
        crun --root="$CRUN_ROOT" state "$CRUN_STOPPED" 2>/dev/null | grep -q '"stopped"' && { echo "STOPPED $init"; break; }
        sleep 0.1
    done
    ;;
crun-stopped)
    crun_exec "$CRUN_STOPPED" '["true"]'
    crun --root="$CRUN_ROOT" delete -f "$CRUN_STOPPED" >/dev/null 2>&1
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
    echo "usage: $0 healthy|pids|setns|stopped|pids-fixed|setns-fixed|stopped-fixed|hostpid [N]|crun-up|crun-healthy|crun-missing|crun-pids|crun-stop|crun-stopped|slow [SECS] [N]" >&2
    exit 2
    ;;
esac

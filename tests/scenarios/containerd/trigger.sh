#!/usr/bin/env bash
# What a kubelet's exec probe runs, through containerd's real shim
# (ctr task exec -> containerd-shim-runc-v2 -> runc exec with containerd's
# own ~500-byte command line), in one situation; prints ctr's exit status
# for each attempt (0 = the probe command ran):
#   healthy        exec /bin/true into the runc container
#   missing        exec a binary the container does not have (runc reports
#                  "exec: ... no such file or directory" and its init exits 1)
#   stop           start container STOPPED_ID and SIGKILL its init behind
#                  containerd's back; wait until the shim reaped it
#   stopped        exec into STOPPED_ID (the shim refuses by itself:
#                  "cannot exec in a stopped state"; no runc runs)
#   runtime-pids   containerd's cgroup (the shims') at its pids limit
#   healthy-crun, missing-crun   the same into the crun container (none
#                  where crun refuses the host's cgroups: v1 hybrid)
#   remove-stopped delete STOPPED_ID (what restarting the pod does)
#   hostpid [N]    a hostPID container (the host's pid namespace) whose
#                  command forks and execs N (300) times, then exits 0
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../lib/common.sh"
. "$here/env.sh"
set +e
pr=$(pids_root)

probe() {
    local id=$1
    shift
    ctr_ task exec --exec-id "probe-$RANDOM$RANDOM" "$id" "$@" </dev/null >>"$CTRD_DIR/exec.log" 2>&1
    echo $?
}

case ${1:-} in
healthy) probe "$PROBE_ID" /bin/true ;;
missing) probe "$PROBE_ID" /bin/nonexistent ;;
healthy-crun) probe "$CRUN_ID" /bin/true ;;
missing-crun) probe "$CRUN_ID" /bin/nonexistent ;;
stop)
    ctr_ run -d --rootfs --env PATH=/bin --cgroup "/$POD_CGROUP/$STOPPED_ID" \
        "$ROOTFS" "$STOPPED_ID" /bin/sleep 3600 >>"$CTRD_DIR/ctr.log" 2>&1
    pid=$(ctr_ task ls | awk -v id="$STOPPED_ID" '$1 == id {print $2}')
    kill -KILL "$pid"
    for _ in $(seq 50); do
        ctr_ task ls | awk -v id="$STOPPED_ID" '$1 == id {print $3}' | grep -q STOPPED && break
        sleep 0.1
    done
    ctr_ task ls | awk -v id="$STOPPED_ID" '$1 == id {print $3}'
    ;;
stopped) probe "$STOPPED_ID" /bin/true ;;
remove-stopped)
    ctr_ task delete -f "$STOPPED_ID" >/dev/null 2>&1
    ctr_ containers delete "$STOPPED_ID" >/dev/null 2>&1
    echo 0
    ;;
runtime-pids)
    # Every shim runs in containerd's cgroup: at its limit, the shim's own
    # fork of runc (or runc's of runc init) fails before the container is
    # touched (seed 001's "fork/exec ...: resource temporarily unavailable").
    cat "$pr/$RUNTIME_CGROUP/pids.current" >"$pr/$RUNTIME_CGROUP/pids.max"
    probe "$PROBE_ID" /bin/true
    echo max >"$pr/$RUNTIME_CGROUP/pids.max"
    ;;
hostpid)
    ctr_ run --rm --rootfs --env PATH=/bin --with-ns pid:/proc/1/ns/pid --cgroup "/$POD_CGROUP/$HOSTPID_ID" \
        "$ROOTFS" "$HOSTPID_ID" /bin/sh -c "i=0; while [ \$i -lt ${2:-300} ]; do /bin/true; i=\$((i+1)); done" \
        </dev/null >>"$CTRD_DIR/ctr.log" 2>&1
    echo $?
    ;;
*)
    echo "usage: $0 healthy|missing|healthy-crun|missing-crun|stop|stopped|remove-stopped|runtime-pids|hostpid [N]" >&2
    exit 2
    ;;
esac

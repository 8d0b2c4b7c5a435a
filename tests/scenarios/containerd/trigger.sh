#!/usr/bin/env bash
# What a kubelet's exec probe runs, through containerd's real shim
# (ctr task exec -> containerd-shim-runc-v2 -> runc exec with containerd's
# own ~500-byte command line), in one situation; prints ctr's exit status
# for each attempt (0 = the probe command ran):
#   healthy        exec /bin/true into the runc container
#   missing        exec a binary the container does not have (runc reports
#                  "exec: ... no such file or directory" and its init exits 1)
#   stop [early]   start container STOPPED_ID (EARLY_STOPPED_ID) and SIGKILL
#                  its init behind containerd's back; wait until the shim
#                  reaped it
#   stopped [early]  exec into it (the shim refuses by itself: "cannot exec
#                  in a stopped state"; no runc runs)
#   command-pids   an exec whose command starts, then finds the pod at its
#                  pids limit: "sh: can't fork" (the runtime succeeded);
#                  prints how many such lines it wrote (1) and the pod's
#                  pids.max it set (its pids.current). The command stays,
#                  the pod at its limit, until command-pids-end, which prints
#                  the exec's exit code (2)
#   exec-timeout [S]  an exec of sleep 30 SIGKILLed through the shim after
#                  S (1) seconds, as containerd does at an exec's timeout
#   exec-timeout-throttled  the same, the container at a CPU limit of 0.01
#                  and a busy loop of its own eating it while the command
#                  runs (applied once the command runs: runc init under
#                  that limit takes seconds); the limit and the loop go after
#   exec-slow      exec `sleep 0.9` into the runc container: a command
#                  that ends by itself near a 1 s probe timeout
#   exec-output-held  start container HELD_ID and exec a command into it
#                  (sh) that exits 0 leaving a sleep 30 that holds its
#                  output; the sleep is killed from here once the shell is
#                  gone; prints ctr's status
#   runtime-pids   containerd's cgroup (the shims') at its pids limit
#   crun-up        start the crun container (ctr --runc-binary crun); crun
#                  refuses cgroup v1 hybrid hosts whose v2 tree holds a
#                  controller (the bare machine's hugetlb): prints ctr's status
#   healthy-crun, missing-crun   the same into the crun container
#   remove-stopped delete STOPPED_ID (what restarting the pod does)
#   hostpid [N]    a hostPID container (the host's pid namespace) whose
#                  command forks and execs N (300) times, then exits 0
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../lib/common.sh"
. "$here/env.sh"
set +e
pr=$(pids_root)

# comms DIR: the comm of each process of cgroup DIR, a line each.
comms() {
    cat $(sed 's|.*|/proc/&/comm|' "$1/cgroup.procs") 2>/dev/null
}

probe() {
    local id=$1
    shift
    ctr_ task exec --exec-id "probe-$RANDOM$RANDOM" "$id" "$@" </dev/null >>"$CTRD_DIR/exec.log" 2>&1
    echo $?
}

case ${1:-} in
healthy) probe "$PROBE_ID" /bin/true ;;
exec-slow) probe "$PROBE_ID" /bin/sleep 0.9 ;;
missing) probe "$PROBE_ID" /bin/nonexistent ;;
crun-up)
    run_container "$CRUN_ID" crun
    echo $?
    ;;
healthy-crun) probe "$CRUN_ID" /bin/true ;;
missing-crun) probe "$CRUN_ID" /bin/nonexistent ;;
stop)
    id=$STOPPED_ID
    [ "${2:-}" = early ] && id=$EARLY_STOPPED_ID
    run_container "$id"
    pid=$(head -1 "$pr/$POD_CGROUP/$id/cgroup.procs")
    kill -KILL "$pid"
    # Gone from /proc once the shim (its subreaper) has reaped it.
    for _ in $(seq 600); do [ -e "/proc/$pid" ] || break; sleep 0.1; done
    ctr_ task ls | awk -v id="$id" '$1 == id {print $3}'
    ;;
stopped)
    id=$STOPPED_ID
    [ "${2:-}" = early ] && id=$EARLY_STOPPED_ID
    probe "$id" /bin/true
    ;;
remove-stopped)
    ctr_ task delete -f "$STOPPED_ID" >/dev/null 2>&1
    ctr_ containers delete "$STOPPED_ID" >/dev/null 2>&1
    echo 0
    ;;
command-pids)
    # The probe's command starts, then the pod is at its pids limit (as
    # when its app fills it): the command's own fork fails ("sh: can't
    # fork"), the runtime's exec itself succeeded. The shell then waits in
    # its EXIT trap (a builtin read, no fork) until command-pids-end, so
    # the pod stays at its limit while the tracer reads the numbers.
    rm -f "$ROOTFS/tmp/go" "$ROOTFS/tmp/hold" "$CTRD_DIR/command-pids.log" "$CTRD_DIR/command-pids.rc"
    mkfifo "$ROOTFS/tmp/go" "$ROOTFS/tmp/hold"
    (
        ctr_ task exec --exec-id "probe-$RANDOM$RANDOM" "$PROBE_ID" \
            /bin/sh -c 'trap "read y </tmp/hold" EXIT; read x </tmp/go; /bin/true; echo forked'
        echo $? >"$CTRD_DIR/command-pids.rc"
    ) </dev/null >"$CTRD_DIR/command-pids.log" 2>&1 &
    # Until the command is blocked on the fifo and runc's stages are gone:
    # the container holds its init and the command.
    c="$pr/$POD_CGROUP/$PROBE_ID"
    for _ in $(seq 600); do
        [ "$(cat "$c/pids.current")" = 2 ] && comms "$c" | grep -qx sh && break
        sleep 0.1
    done
    cat "$pr/$POD_CGROUP/pids.current" >"$pr/$POD_CGROUP/pids.max"
    echo go >"$ROOTFS/tmp/go"
    for _ in $(seq 600); do grep -q "can't fork" "$CTRD_DIR/command-pids.log" && break; sleep 0.1; done
    echo "$(grep -c "can't fork" "$CTRD_DIR/command-pids.log") $(cat "$pr/$POD_CGROUP/pids.max")"
    ;;
command-pids-end)
    # Lets the held command exit (its pod's limit lifted); prints the
    # exec's exit code (2: the shell's failed fork).
    echo max >"$pr/$POD_CGROUP/pids.max"
    # Opened read-write: never blocks, and is written again until the
    # shell has read it.
    for _ in $(seq 600); do
        [ -s "$CTRD_DIR/command-pids.rc" ] && break
        echo go 1<>"$ROOTFS/tmp/hold"
        sleep 0.1
    done
    cat "$CTRD_DIR/command-pids.rc"
    rm -f "$ROOTFS/tmp/go" "$ROOTFS/tmp/hold"
    ;;
exec-timeout)
    # An exec probe that times out: its command outlives the timeout (1 s,
    # or $2) and is SIGKILLed through the shim, as containerd's CRI plugin
    # has it done when ExecSync's timeout expires. Prints the exec's exit
    # status (137).
    eid="probe-$RANDOM$RANDOM"
    ctr_ task exec --exec-id "$eid" "$PROBE_ID" /bin/sleep 30 </dev/null >>"$CTRD_DIR/exec.log" 2>&1 &
    ctr=$!
    # Until runc init has become the command: the container holds its
    # init (sleep 3600) and the command, both named sleep.
    c="$pr/$POD_CGROUP/$PROBE_ID"
    for _ in $(seq 600); do
        [ "$(cat "$c/pids.current")" = 2 ] && [ "$(comms "$c" | grep -cx sleep)" = 2 ] && break
        sleep 0.1
    done
    sleep "${2:-1}"
    ctr_ task kill --exec-id "$eid" -s SIGKILL "$PROBE_ID" >>"$CTRD_DIR/exec.log" 2>&1
    wait "$ctr"
    echo $?
    ;;
exec-timeout-throttled)
    if [ -e /sys/fs/cgroup/cgroup.controllers ]; then
        quota="/sys/fs/cgroup/$POD_CGROUP/$PROBE_ID/cpu.max" limited="1000 100000" unlimited="max 100000"
    else
        cpu=/sys/fs/cgroup/cpu,cpuacct
        [ -d "$cpu/$POD_CGROUP" ] || cpu=/sys/fs/cgroup/cpu
        quota="$cpu/$POD_CGROUP/$PROBE_ID/cpu.cfs_quota_us" limited=1000 unlimited=-1
    fi
    [ -e "$quota" ] || { echo "no CPU quota file $quota" >&2; exit 1; }
    bid="busy-$RANDOM$RANDOM" eid="probe-$RANDOM$RANDOM"
    ctr_ task exec --exec-id "$bid" "$PROBE_ID" /bin/sh -c 'while :; do :; done' </dev/null >>"$CTRD_DIR/exec.log" 2>&1 &
    busy=$!
    ctr_ task exec --exec-id "$eid" "$PROBE_ID" /bin/sleep 30 </dev/null >>"$CTRD_DIR/exec.log" 2>&1 &
    ctr=$!
    # Until both run: init and command named sleep, and the loop's shell.
    c="$pr/$POD_CGROUP/$PROBE_ID"
    for _ in $(seq 600); do
        now=$(comms "$c")
        [ "$(cat "$c/pids.current")" = 3 ] && [ "$(grep -cx sleep <<<"$now")" = 2 ] && grep -qx sh <<<"$now" && break
        sleep 0.1
    done
    echo "$limited" >"$quota"
    sleep "${2:-2}"
    ctr_ task kill --exec-id "$eid" -s SIGKILL "$PROBE_ID" >>"$CTRD_DIR/exec.log" 2>&1
    wait "$ctr"
    rc=$?
    # The limit stays until the tracer has read it for the verdict.
    sleep 2
    echo "$unlimited" >"$quota"
    # From here, not by the shim: the loop is no probe the runtime killed.
    for p in $(cat "$c/cgroup.procs"); do
        [ "$(cat "/proc/$p/comm" 2>/dev/null)" = sh ] && kill -KILL "$p"
    done
    wait "$busy"
    echo $rc
    ;;
exec-output-held)
    # In a container of its own (HELD_ID): the killed orphan stays a
    # zombie of its init, and the other cases count their container's pids.
    run_container "$HELD_ID" || { cat "$CTRD_DIR/ctr.log" >&2; exit 1; }
    eid="probe-$RANDOM$RANDOM"
    ctr_ task exec --exec-id "$eid" "$HELD_ID" /bin/sh -c 'sleep 30 & echo started' </dev/null >>"$CTRD_DIR/exec.log" 2>&1 &
    ctr=$!
    # Until the shell is gone and its sleep stays: the init and the child,
    # both sleep, and no runc stage or shell left.
    c="$pr/$POD_CGROUP/$HELD_ID"
    for _ in $(seq 600); do
        now=$(comms "$c")
        [ "$(cat "$c/pids.current")" = 2 ] && [ "$(grep -cx sleep <<<"$now")" = 2 ] && break
        sleep 0.1
    done
    # The tracer names the holder at the shell's exit; then the child goes
    # (from here: no probe the runtime killed).
    sleep 2
    for p in $(cat "$c/cgroup.procs"); do
        [ "$(tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null)" = "sleep 30 " ] && kill -KILL "$p"
    done
    wait "$ctr"
    echo $?
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
    echo "usage: $0 healthy|missing|crun-up|healthy-crun|missing-crun|stop [early]|stopped [early]|remove-stopped|command-pids|command-pids-end|exec-timeout [S]|exec-timeout-throttled [S]|exec-output-held|runtime-pids|hostpid [N]" >&2
    exit 2
    ;;
esac

#!/usr/bin/env bash
# Demonstration: reproduce incidents 2, 3 and 5 with the real runc and show
# probe-tracer's one-line diagnosis of each failed exec, then the same with
# each fix applied (no verdict). demo.sh [VARIANT...] runs only those
# variants of trigger.sh (default: all of them).
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../lib/common.sh"
. "$here/env.sh"
bin=${PROBE_TRACER_BIN:-$here/../../../target/release/probe-tracer}
trap '"$here/teardown.sh"' EXIT

variants=("$@")
[ ${#variants[@]} -eq 0 ] && variants=(healthy pids pids-fixed setns setns-fixed stopped stopped-fixed slow)
describe() {
    case $1 in
    healthy) echo "exec probe into a healthy container" ;;
    pids) echo "exec probe with the container's pids limit exhausted" ;;
    pids-fixed) echo "the same with the pids limit raised (the fix)" ;;
    setns) echo "container joining a pod netns that was torn down" ;;
    setns-fixed) echo "the same with the pod netns in place (the fix)" ;;
    stopped) echo "exec probe after the container's init was killed" ;;
    stopped-fixed) echo "the same after the container restarted (the fix)" ;;
    slow) echo "runc state calls through a runtime stalling 1.5 s" ;;
    *) echo "$1" ;;
    esac
}

echo "== Reproducing incidents 2, 3 and 5: exec probes failing inside runc, a slow runtime"
"$here/setup.sh"
ready="$SCENARIO_WORK/demo-runc.ready"
rm -f "$ready"
"$bin" run --groups exec --format text --ready-file "$ready" --duration 120 --verdicts-only &
tracer=$!
for _ in $(seq 300); do [ -e "$ready" ] && break; sleep 0.1; done
for v in "${variants[@]}"; do
    printf '== %-52s runc exit %s\n' "$(describe "$v"):" "$("$here/trigger.sh" "$v")"
done
# runtime_slow is judged on the tracer's 1 s housekeeping tick.
sleep 1.5
kill -INT "$tracer"
wait "$tracer"

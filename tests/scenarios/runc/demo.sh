#!/usr/bin/env bash
# Demonstration: reproduce incidents 2 and 3 with the real runc and show
# probe-tracer's one-line diagnosis of each failed exec.
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../lib/common.sh"
. "$here/env.sh"
bin=${PROBE_TRACER_BIN:-$here/../../../target/release/probe-tracer}
trap '"$here/teardown.sh"' EXIT

echo "== Reproducing incidents 2 and 3: exec probes failing inside runc"
"$here/setup.sh"
ready="$SCENARIO_WORK/demo-runc.ready"
rm -f "$ready"
"$bin" run --groups exec --format text --ready-file "$ready" --duration 60 --verdicts-only &
tracer=$!
for _ in $(seq 300); do [ -e "$ready" ] && break; sleep 0.1; done
echo "== exec probe into a healthy container:                        runc exit $("$here/trigger.sh" healthy)"
echo "== exec probe with the container's pids limit exhausted:       runc exit $("$here/trigger.sh" pids)"
echo "== container joining a pod network namespace that was torn down: runc exit $("$here/trigger.sh" setns)"
echo "== exec probe after the container's init was killed:           runc exit $("$here/trigger.sh" stopped)"
sleep 0.5
kill -INT "$tracer"
wait "$tracer"

#!/usr/bin/env bash
# Demonstration: OOM kills in a memory-limited cgroup, one of them of a
# process named like a runtime component (incident 4).
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../lib/common.sh"
. "$here/env.sh"
bin=${PROBE_TRACER_BIN:-$here/../../../target/release/probe-tracer}
trap '"$here/teardown.sh"' EXIT

echo "== Reproducing incident 4: OOM kills in a cgroup limited to $LIMIT_MIB MiB"
"$here/setup.sh"
ready="$SCENARIO_WORK/demo-oom.ready"
rm -f "$ready"
"$bin" run --groups node --format text --ready-file "$ready" --duration 60 --verdicts-only &
tracer=$!
for _ in $(seq 300); do [ -e "$ready" ] && break; sleep 0.1; done
echo "== a container process needs $HOG_MIB MiB:           exit $("$here/trigger.sh" hog)"
echo "== the runtime's shim needs $HOG_MIB MiB:            exit $("$here/trigger.sh" shim)"
echo "== the same with the limit raised (the fix):   exit $("$here/trigger.sh" fixed)"
sleep 0.5
kill -INT "$tracer"
wait "$tracer"

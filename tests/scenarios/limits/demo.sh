#!/usr/bin/env bash
# Reproduce a probe starved by its container's CPU limit (kubernetes#70585):
# the kubelet says only "Client.Timeout exceeded"; probe-tracer measures the
# container's throttling over the probe's window, and rules it out for a
# stall that no limit explains.
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../lib/common.sh"
. "$here/env.sh"
bin=${PROBE_TRACER_BIN:-$here/../../../target/release/probe-tracer}
trap '"$here/teardown.sh"' EXIT

echo "== Reproducing a probe starved by its container's CPU limit"
"$here/setup.sh"
ready="$SCENARIO_WORK/demo.ready"
rm -f "$ready"
"$bin" run --format text --ready-file "$ready" --duration 60 --verdicts-only --groups probe &
tracer=$!
for _ in $(seq 300); do [ -e "$ready" ] && break; sleep 0.1; done
# A kubelet probes every periodSeconds: the first probe to a container
# starts its sampling, the next is measured.
for case in throttled stalled throttled stalled; do
    echo "== kubelet probes the $case container: $("$here/trigger.sh" "$case")"
    sleep 0.5
done
kill -INT "$tracer"
wait "$tracer"

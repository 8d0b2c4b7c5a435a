#!/usr/bin/env bash
# Reproduce probes that connect and then fail (INCIDENTS.md section 6): the
# kubelet prints the same "Client.Timeout exceeded" whatever the cause;
# probe-tracer says which phase failed, on whose side.
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../lib/common.sh"
. "$here/env.sh"
bin=${PROBE_TRACER_BIN:-$here/../../../target/release/probe-tracer}
trap '"$here/teardown.sh"' EXIT

echo "== Reproducing probes that connect and then fail"
"$here/setup.sh"
ready="$SCENARIO_WORK/demo.ready"
rm -f "$ready"
"$bin" run --format text --ready-file "$ready" --duration 60 --verdicts-only &
tracer=$!
for _ in $(seq 300); do [ -e "$ready" ] && break; sleep 0.1; done
for case in healthy silent error reset close loopback; do
    echo "== kubelet probes the pod's $case port: $("$here/trigger.sh" "$case")"
done
kill -INT "$tracer"
wait "$tracer"

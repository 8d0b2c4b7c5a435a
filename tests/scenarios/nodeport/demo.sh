#!/usr/bin/env bash
# The README's demonstration: reproduce incident 1 and show the diagnosis.
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../lib/common.sh"
. "$here/env.sh"
bin=${PROBE_TRACER_BIN:-$here/../../../target/release/probe-tracer}
trap '"$here/teardown.sh"' EXIT

echo "== Reproducing incident 1: a probe's SYN-ACK taken by an IPVS NodePort service"
"$here/setup.sh"
ready="$SCENARIO_WORK/demo.ready"
rm -f "$ready"
"$bin" run --format text --ready-file "$ready" --duration 30 --verdicts-only &
tracer=$!
for _ in $(seq 300); do [ -e "$ready" ] && break; sleep 0.1; done
echo "== kubelet probes http://$POD_IP:$POD_PORT/ from an ordinary port: HTTP $("$here/trigger.sh" healthy)"
echo "== kubelet's ephemeral port lands on NodePort $NODEPORT:      HTTP $("$here/trigger.sh" hijack)"
echo "== the same with net.ipv4.ip_local_reserved_ports=30000-32767: HTTP $("$here/trigger.sh" fixed)"
kill -INT "$tracer"
wait "$tracer"

#!/usr/bin/env bash
# Builds the probe-phase topology: a pod whose server fails probes after
# the handshake, one way per port (env.sh).
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../lib/common.sh"
. "$here/env.sh"
need ip python3 iptables
"$here/teardown.sh" >/dev/null 2>&1 || true

rm -f "$SCENARIO_WORK/phases-server.log"
netns_up "$PHASE_NS" veth-ptph "$PHASE_NODE_IP" "$PHASE_POD_IP"
ip netns exec "$PHASE_NS" setsid python3 "$here/server.py" "$PHASE_POD_IP" \
    "$PORT_HEALTHY" "$PORT_SILENT" "$PORT_ERROR" "$PORT_LATE" "$PORT_RESET" "$PORT_CLOSE" "$PORT_LOOPBACK" \
    >"$SCENARIO_WORK/phases-server.log" 2>&1 </dev/null &
for _ in $(seq 100); do
    grep -q ready "$SCENARIO_WORK/phases-server.log" 2>/dev/null && break
    sleep 0.1
done
grep -q ready "$SCENARIO_WORK/phases-server.log" || { cat "$SCENARIO_WORK/phases-server.log" >&2; exit 1; }
ip netns exec "$PHASE_NS" iptables -A INPUT -p tcp --dport "$PORT_FW_POD" -j DROP
iptables -A OUTPUT -d "$PHASE_POD_IP" -p tcp --dport "$PORT_FW_HOST" -j DROP
log "probe-phase pod up: $PHASE_POD_IP, ports $PORT_HEALTHY-$PORT_LOOPBACK"

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
    "$PORT_RPFILTER" "$PORT_BACKLOG" "$PORT_GRPC" "$PORT_GRPC_SILENT" \
    >"$SCENARIO_WORK/phases-server.log" 2>&1 </dev/null &
for _ in $(seq 100); do
    grep -q ready "$SCENARIO_WORK/phases-server.log" 2>/dev/null && break
    sleep 0.1
done
grep -q ready "$SCENARIO_WORK/phases-server.log" || { cat "$SCENARIO_WORK/phases-server.log" >&2; exit 1; }
ip netns exec "$PHASE_NS" iptables -A INPUT -p tcp --dport "$PORT_FW_POD" -j DROP
iptables -A OUTPUT -d "$PHASE_POD_IP" -p tcp --dport "$PORT_FW_HOST" -j DROP
# An asymmetric route: the pod sends what it answers from PORT_RPFILTER by
# eth1, so it reaches the node on veth-ptrp, while the node's route back
# to the pod is veth-ptph; strict reverse-path filtering on veth-ptrp
# drops it. A fixed neighbour: the node answers no ARP there for a sender
# it filters.
ip link add veth-ptrp type veth peer name eth1 netns "$PHASE_NS"
ip link set veth-ptrp up
ip -n "$PHASE_NS" link set eth1 up
ip -n "$PHASE_NS" route add "$PHASE_NODE_IP/32" dev eth1 table 100
ip -n "$PHASE_NS" rule add ipproto tcp sport "$PORT_RPFILTER" lookup 100
ip -n "$PHASE_NS" neigh replace "$PHASE_NODE_IP" lladdr "$(cat /sys/class/net/veth-ptrp/address)" dev eth1 nud permanent
sysctl -qw net.ipv4.conf.veth-ptrp.rp_filter=1
log "probe-phase pod up: $PHASE_POD_IP, ports $PORT_HEALTHY-$PORT_BACKLOG"

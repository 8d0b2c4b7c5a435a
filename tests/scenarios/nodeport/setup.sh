#!/usr/bin/env bash
# Builds the incident-1 topology: a pod, a backend, and an IPVS NodePort
# service on the node address the prober connects from.
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../lib/common.sh"
. "$here/env.sh"
need ip ipvsadm curl busybox modprobe
"$here/teardown.sh" >/dev/null 2>&1 || true

modprobe ip_vs
modprobe ip_vs_rr
sysctl -qw net.ipv4.ip_forward=1
# Save what triggers change, so teardown restores it.
{
    echo "PORT_RANGE='$(sysctl -n net.ipv4.ip_local_port_range | tr '\t' ' ')'"
    echo "RESERVED='$(sysctl -n net.ipv4.ip_local_reserved_ports)'"
} >"$STATE"

netns_up "$POD_NS" veth-ptpod "$NODE_IP" "$POD_IP"
netns_up "$BACKEND_NS" veth-ptbe "$BACKEND_GW" "$BACKEND_IP"
# The blackholed pod: a neighbour nobody owns, so SYNs to it leave the node
# and vanish (and are retransmitted) instead of waiting for ARP.
ip neigh replace "$SILENT_POD_IP" lladdr 02:00:00:00:01:99 dev veth-ptpod nud permanent

mkdir -p "$SCENARIO_WORK/www"
echo ok >"$SCENARIO_WORK/www/index.html"
ip netns exec "$POD_NS" busybox httpd -p "$POD_PORT" -h "$SCENARIO_WORK/www"
ip netns exec "$BACKEND_NS" busybox httpd -p "$BACKEND_PORT" -h "$SCENARIO_WORK/www"

ipvsadm -A -t "$NODE_IP:$NODEPORT" -s rr
ipvsadm -a -t "$NODE_IP:$NODEPORT" -r "$BACKEND_IP:$BACKEND_PORT" -m

# Wait for the pod's server.
for _ in $(seq 50); do
    curl -s -m 1 -o /dev/null "http://$POD_IP:$POD_PORT/" && break
    sleep 0.1
done
log "nodeport topology up: pod $POD_IP:$POD_PORT, IPVS $NODE_IP:$NODEPORT -> $BACKEND_IP:$BACKEND_PORT"

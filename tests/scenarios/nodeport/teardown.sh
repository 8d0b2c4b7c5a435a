#!/usr/bin/env bash
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../lib/common.sh"
. "$here/env.sh"
set +e
ipvsadm -D -t "$NODE_IP:$NODEPORT" 2>/dev/null
netns_down "$POD_NS" veth-ptpod
netns_down "$BACKEND_NS" veth-ptbe
if [ -f "$STATE" ]; then
    . "$STATE"
    sysctl -qw net.ipv4.ip_local_port_range="$PORT_RANGE"
    sysctl -qw net.ipv4.ip_local_reserved_ports="$RESERVED"
    rm -f "$STATE"
fi
exit 0

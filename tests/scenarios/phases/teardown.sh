#!/usr/bin/env bash
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../lib/common.sh"
. "$here/env.sh"
while iptables -D OUTPUT -d "$PHASE_POD_IP" -p tcp --dport "$PORT_FW_HOST" -j DROP 2>/dev/null; do :; done
ip link del veth-ptrp 2>/dev/null || true
netns_down "$PHASE_NS" veth-ptph

#!/usr/bin/env bash
# Runs one probe, as kubelet would, and prints curl's HTTP code (000 = failed).
#   healthy  ordinary ephemeral port: must succeed
#   hijack   the kernel's ephemeral port choice lands on NodePort 31055
#            (ip_local_port_range narrowed to it): the SYN-ACK is diverted
#   fixed    the same with the fix (ip_local_reserved_ports=30000-32767):
#            the kernel skips the NodePort range and the probe succeeds
#   refused  a closed port on the pod
#   timeout  a pod that never answers
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../lib/common.sh"
. "$here/env.sh"
. "$STATE"
kubelet=$(kubelet_prober)
variant=${1:?usage: trigger.sh healthy|hijack|fixed|refused|timeout}

probe() { "$kubelet" -s -o /dev/null -w '%{http_code}\n' -m "${TIMEOUT:-3}" "$@" || true; }
restore() {
    sysctl -qw net.ipv4.ip_local_port_range="$PORT_RANGE"
    sysctl -qw net.ipv4.ip_local_reserved_ports="$RESERVED"
}

case $variant in
    healthy) probe "http://$POD_IP:$POD_PORT/" ;;
    hijack)
        trap restore EXIT
        sysctl -qw net.ipv4.ip_local_port_range="$NODEPORT $NODEPORT"
        probe "http://$POD_IP:$POD_PORT/"
        ;;
    fixed)
        trap restore EXIT
        # Same narrow range reaching just past the NodePort range, plus the fix.
        sysctl -qw net.ipv4.ip_local_port_range="$NODEPORT 32768"
        sysctl -qw net.ipv4.ip_local_reserved_ports=30000-32767
        probe "http://$POD_IP:$POD_PORT/"
        ;;
    refused) probe "http://$POD_IP:$CLOSED_PORT/" ;;
    timeout) probe "http://$SILENT_POD_IP:$POD_PORT/" ;;
    *) echo "unknown variant $variant" >&2; exit 2 ;;
esac

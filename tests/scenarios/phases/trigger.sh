#!/usr/bin/env bash
# trigger.sh CASE [TIMEOUT]: one kubelet-like probe (tests/prober, built by
# xtask as target/kube-prober/kubelet) to the port of CASE, with the
# probe's timeoutSeconds (default 1s).
# Prints the prober's line (success or the kubelet's failure message).
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../lib/common.sh"
. "$here/env.sh"
prober=${KUBE_PROBER:-$here/../../../target/kube-prober/kubelet}
[ -x "$prober" ] || { echo "no kubelet-like prober at $prober (cargo xtask test builds it)" >&2; exit 2; }
case "$1" in
    healthy) port=$PORT_HEALTHY ;; silent) port=$PORT_SILENT ;; error) port=$PORT_ERROR ;;
    late) port=$PORT_LATE ;; reset) port=$PORT_RESET ;; close) port=$PORT_CLOSE ;;
    loopback) port=$PORT_LOOPBACK ;;
    fw-pod) port=$PORT_FW_POD ;; fw-host) port=$PORT_FW_HOST ;;
    rpfilter) port=$PORT_RPFILTER ;; backlog) port=$PORT_BACKLOG ;;
    tcp) "$prober" tcp "$PHASE_POD_IP:$PORT_HEALTHY" "${2:-1s}" || true; exit 0 ;;
    grpc) "$prober" grpc "$PHASE_POD_IP:$PORT_GRPC" "${2:-1s}" || true; exit 0 ;;
    grpc-silent) "$prober" grpc "$PHASE_POD_IP:$PORT_GRPC_SILENT" "${2:-1s}" || true; exit 0 ;;
    *) echo "unknown case $1" >&2; exit 2 ;;
esac
"$prober" http "http://$PHASE_POD_IP:$port/healthz" "${2:-1s}" || true

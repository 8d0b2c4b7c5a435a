#!/usr/bin/env bash
# trigger.sh CASE [TIMEOUT]: one kubelet-like probe (tests/prober) to the
# container of CASE (throttled, free, stalled, slow); prints the prober's line.
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../lib/common.sh"
. "$here/env.sh"
prober=${KUBE_PROBER:-$here/../../../target/kube-prober/kubelet}
[ -x "$prober" ] || { echo "no kubelet-like prober at $prober (cargo xtask test builds it)" >&2; exit 2; }
case "$1" in
    throttled) port=$PORT_THROTTLED ;; free) port=$PORT_FREE ;; stalled) port=$PORT_FREE_STALLED ;; slow) port=$PORT_FREE_SLOW ;;
    *) echo "unknown case $1" >&2; exit 2 ;;
esac
"$prober" http "http://$LIMIT_POD_IP:$port/healthz" "${2:-1s}" || true

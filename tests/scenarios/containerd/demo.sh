#!/usr/bin/env bash
# Demonstration: exec probes through containerd's real shim (what a
# kubelet's ExecSync runs), with probe-tracer's one-line diagnosis of each:
# a healthy exec (nothing), a missing binary (runc's own error), a
# container whose init was killed behind the runtime's back (the shim
# refuses every exec by itself). demo.sh [VARIANT...] runs only those.
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../lib/common.sh"
. "$here/env.sh"
bin=${PROBE_TRACER_BIN:-$here/../../../target/release/probe-tracer}
trap '"$here/teardown.sh"' EXIT

variants=("$@")
[ ${#variants[@]} -eq 0 ] && variants=(healthy missing stop stopped)
describe() {
    case $1 in
    healthy) echo "exec probe into a healthy container" ;;
    missing) echo "exec probe of a binary the image lacks" ;;
    stop) echo "the container's init killed behind containerd's back" ;;
    stopped) echo "exec probe into the stopped container" ;;
    *) echo "$1" ;;
    esac
}

echo "== Exec probes through containerd-shim-runc-v2 (namespace $CTRD_NS, pod $POD_UID)"
"$here/setup.sh"
ready="$SCENARIO_WORK/demo-containerd.ready"
rm -f "$ready"
"$bin" run --groups exec --format text --ready-file "$ready" --duration 120 --verdicts-only &
tracer=$!
for _ in $(seq 300); do [ -e "$ready" ] && break; sleep 0.1; done
for v in "${variants[@]}"; do
    printf '== %-52s ctr says %s\n' "$(describe "$v"):" "$("$here/trigger.sh" "$v")"
done
# A stopped container the runtime still holds is judged 5 s after its
# init died, on the tracer's housekeeping tick.
sleep 7
kill -INT "$tracer"
wait "$tracer"

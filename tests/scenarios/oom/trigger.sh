#!/usr/bin/env bash
# Runs a process that needs more memory than its cgroup allows and prints
# its exit status (137 = killed by SIGKILL):
#   hog     memhog, an ordinary container process
#   shim    the same binary named containerd-shim (a runtime component)
#   fixed   memhog with the limit raised above what it needs (exit 0)
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../lib/common.sh"
. "$here/env.sh"
set +e
run_in_cgroup() {
    bash -c 'echo $$ >"$1/cgroup.procs" && exec "$2" "$3"' _ "$OOM_CGROUP" "$1" "$HOG_MIB" >/dev/null 2>&1
    echo $?
}
case ${1:-} in
hog) run_in_cgroup "$MEMHOG" ;;
shim)
    cp "$MEMHOG" "$SCENARIO_WORK/containerd-shim"
    run_in_cgroup "$SCENARIO_WORK/containerd-shim"
    ;;
fixed)
    set_limit $((HOG_MIB * 4))
    run_in_cgroup "$MEMHOG"
    set_limit "$LIMIT_MIB"
    ;;
*) echo "usage: $0 hog|shim|fixed" >&2; exit 2 ;;
esac

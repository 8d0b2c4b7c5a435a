#!/usr/bin/env bash
# Builds a busybox OCI bundle and starts the container exec probes target,
# with Debian's real runc. Works on cgroup v1 and v2.
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../lib/common.sh"
. "$here/env.sh"
need runc crun busybox jq
"$here/teardown.sh" >/dev/null 2>&1 || true

# cgroupfs must be there for runc's pids limit (minimal VMs may lack it).
if ! grep -q cgroup /proc/mounts; then
    mount -t cgroup2 none /sys/fs/cgroup
fi

mkdir -p "$BUNDLE/rootfs/bin" "$RUNC_ROOT"
cp "$(command -v busybox)" "$BUNDLE/rootfs/bin/busybox"
for applet in sh sleep true false cat; do
    ln -sf busybox "$BUNDLE/rootfs/bin/$applet"
done
(cd "$BUNDLE" && rm -f config.json && runc spec)
# crun 1.8 refuses the spec version newer runcs (1.2+) write; the bundle
# uses nothing newer than 1.0.
jq '.ociVersion = "1.0.2" | .process.args = ["sleep", "3600"] | .process.terminal = false
    | .linux.resources.pids = {"limit": 1000}' \
    "$BUNDLE/config.json" >"$BUNDLE/config.json.new"
mv "$BUNDLE/config.json.new" "$BUNDLE/config.json"

start_container "$CONTAINER"
log "container $CONTAINER running (init pid $(container_pid "$CONTAINER")), $(runc --version | head -1), runc root $RUNC_ROOT"

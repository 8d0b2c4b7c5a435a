#!/usr/bin/env bash
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../lib/common.sh"
. "$here/env.sh"
set +e
for c in "$CONTAINER" "$NETNS_CONTAINER" "$STOPPED_CONTAINER" pt-hostpid; do
    runc --root "$RUNC_ROOT" delete -f "$c" >/dev/null 2>&1
done
for c in "$CRUN_CONTAINER" "$CRUN_STOPPED"; do
    crun --root="$CRUN_ROOT" delete -f "$c" >/dev/null 2>&1
done
umount "/run/netns/$GONE_NETNS" 2>/dev/null
rm -f "/run/netns/$GONE_NETNS"
rm -rf "$BUNDLE" "$BUNDLE-netns" "$BUNDLE-hostpid" "$RUNC_ROOT"
exit 0

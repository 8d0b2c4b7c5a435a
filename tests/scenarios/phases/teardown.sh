#!/usr/bin/env bash
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../lib/common.sh"
. "$here/env.sh"
netns_down "$PHASE_NS" veth-ptph

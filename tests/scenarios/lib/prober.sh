#!/usr/bin/env bash
# Prints the path of the "kubelet" prober binary (a copy of curl).
here=$(cd "$(dirname "$0")" && pwd)
. "$here/common.sh"
kubelet_prober

# Names shared by the OOM scenario's scripts (incident 4).
OOM_CGROUP_NAME=pt-oom
LIMIT_MIB=32
HOG_MIB=96
MEMHOG=${MEMHOG:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)/target/release/memhog}
# cgroup v2 (unified root) or the v1 memory controller.
if [ -e /sys/fs/cgroup/cgroup.controllers ]; then
    OOM_CGROUP=/sys/fs/cgroup/$OOM_CGROUP_NAME
else
    OOM_CGROUP=/sys/fs/cgroup/memory/$OOM_CGROUP_NAME
fi

# The container-limits scenario (issue: why the pod could not answer in time).
#   node (root namespace)  10.200.6.1 on veth-ptlim
#   pod  (netns ptlimit)   10.200.6.2, two containers, each its own cgroup
#     under kubepods/burstable/pod<uid>/ (the kubelet's cgroupfs layout):
#     "throttled": a server at a CPU limit of 0.01 with busy loops beside it;
#     "free": the same server without a limit.
LIMIT_NODE_IP=10.200.6.1
LIMIT_POD_IP=10.200.6.2
LIMIT_NS=ptlimit
PORT_THROTTLED=8090   # 200 after ~20 ms of CPU work; starved at the limit
PORT_FREE=8091        # the same, unlimited
PORT_FREE_STALLED=8092  # unlimited, never answers: a stall no limit explains
PORT_FREE_SLOW=8093   # unlimited, answers after 850 ms (85 % of a 1 s timeout)
LIMIT_POD_UID=7e5e1a2b-0c3d-4e5f-8a9b-0c1d2e3f4a5b
THROTTLED_ID=$(printf 'a1%.0s' $(seq 32))
FREE_ID=$(printf 'f2%.0s' $(seq 32))
# The limit: quota over period, in microseconds (0.01 CPU).
CPU_QUOTA_US=1000
CPU_PERIOD_US=100000
BUSY_LOOPS=3
# The cgroup v2 root, or the v1 cpu controller's (and, on a v1 hybrid,
# the unified hierarchy's, where pressure is).
if [ -e /sys/fs/cgroup/cgroup.controllers ]; then
    CG_V2=1
    CG_CPU_ROOT=/sys/fs/cgroup
    CG_UNIFIED_ROOT=
else
    CG_V2=0
    CG_CPU_ROOT=/sys/fs/cgroup/cpu
    [ -d "$CG_CPU_ROOT" ] || CG_CPU_ROOT=/sys/fs/cgroup/cpu,cpuacct
    CG_UNIFIED_ROOT=/sys/fs/cgroup/unified
    [ -e "$CG_UNIFIED_ROOT/cgroup.procs" ] || CG_UNIFIED_ROOT=
fi
POD_CGROUP=kubepods/burstable/pod$LIMIT_POD_UID

# Names shared by the runc scenario's scripts (incidents 2 and 3).
RUNC_ROOT="$SCENARIO_WORK/runc-state"
BUNDLE="$SCENARIO_WORK/runc-bundle"
# The container the exec probes target.
CONTAINER=pt-probe
# A container that joins a pod network namespace which was torn down.
NETNS_CONTAINER=pt-netns
GONE_NETNS=pt-gone
# A container whose init gets killed behind the runtime's back.
STOPPED_CONTAINER=pt-stopped
# crun run directly, as CRI-O's conmon runs it (no shim): its state root,
# the container its execs target and one whose init gets killed.
CRUN_ROOT=/run/crun
CRUN_CONTAINER=pt-crun
CRUN_STOPPED=pt-crun-stopped

# Addresses of the probe-phase scenario (INCIDENTS.md section 6).
#   node (root namespace)  10.200.3.1 on veth-ptph
#   pod  (netns ptphase)   10.200.3.2, one server, a behaviour per port:
PHASE_NODE_IP=10.200.3.1
PHASE_POD_IP=10.200.3.2
PHASE_NS=ptphase
PORT_HEALTHY=8080   # 200 at once
PORT_SILENT=8081    # accepts, reads the request, never answers
PORT_ERROR=8082     # 500
PORT_LATE=8083      # 200 after 600 ms (within a 1 s timeout)
PORT_RESET=8084     # reads the request, then resets (SO_LINGER 0)
PORT_CLOSE=8085     # reads the request, then closes without answering
PORT_LOOPBACK=8086  # listens on 127.0.0.1 only: the probe is refused
# Probes whose packets die (issue: drop reasons):
PORT_FW_POD=8087    # an iptables DROP in the pod's INPUT chain
PORT_FW_HOST=8088   # an iptables DROP in the node's OUTPUT chain
PORT_RPFILTER=8089  # replies leave by a second veth pair (pod eth1 -> node veth-ptrp),
                    # whose strict rp_filter drops them: the route to the pod is veth-ptph
PORT_BACKLOG=8090   # listens with backlog 1 and never accepts; one connection already
                    # waits, so one probe more fits and the next overflows
# gRPC probes (HTTP/2 with prior knowledge):
PORT_GRPC=8091         # grpc.health.v1.Health/Check answers SERVING
PORT_GRPC_SILENT=8092  # accepts, reads the client's preface, never answers

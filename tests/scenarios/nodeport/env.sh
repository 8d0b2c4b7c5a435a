# Addresses of the NodePort scenario (incident 1 in INCIDENTS.md).
#   node  (root namespace)  10.200.1.1 on veth-ptpod, 10.200.2.1 on veth-ptbe
#   pod   (netns ptpod)     10.200.1.2, serves HTTP on :8080 (the probe target)
#   backend (netns ptbe)    10.200.2.2, serves HTTP on :80 (a NodePort backend)
#   IPVS: virtual service 10.200.1.1:31055 -> 10.200.2.2:80, masquerade,
#   as kube-proxy creates one on every node address for every NodePort.
NODE_IP=10.200.1.1
POD_IP=10.200.1.2
BACKEND_IP=10.200.2.2
BACKEND_GW=10.200.2.1
SILENT_POD_IP=10.200.1.99   # an address nobody answers: a blackholed pod
POD_PORT=8080
CLOSED_PORT=8081
BACKEND_PORT=80
NODEPORT=31055
POD_NS=ptpod
BACKEND_NS=ptbe
STATE=${SCENARIO_WORK:-/tmp/probe-tracer-scenarios}/nodeport.state

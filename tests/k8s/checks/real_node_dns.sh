#!/usr/bin/env bash
# Cluster DNS on the real node: CoreDNS (a host process, tests/k8s/lib/node.sh)
# behind the Service kube-system/kube-dns. A pod with the default dnsPolicy
# (ClusterFirst) resolves a Service by its short name (the search path) and
# its full name to the Service's ClusterIP, a headless Service's name to its
# pod's address, and reaches the Service by name over HTTP. From the host,
# the same names resolve by asking the kube-dns ClusterIP directly (the
# host's own resolver is not changed).
. "$(dirname "$0")/lib.sh"
require_real_node
new_namespace check-real-dns

kubectl apply -n "$NS" -f - <<YAML
apiVersion: v1
kind: Pod
metadata:
  name: echo
  labels: {app: echo}
spec:
$(real_node_pod_spec | sed 's/^/  /')
  containers:
$(echo_container | sed 's/^/  /')
---
apiVersion: v1
kind: Service
metadata:
  name: echo
spec:
  selector: {app: echo}
  ports: [{port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Service
metadata:
  name: echo-headless
spec:
  clusterIP: None
  selector: {app: echo}
  ports: [{port: 8080}]
YAML
kubectl wait -n "$NS" --for=condition=Ready pod/echo --timeout="${WAIT}s" >/dev/null
expect "echo's node" "$(jp pod/echo '{.spec.nodeName}')" "$REAL_NODE"
ip=$(jp service/echo '{.spec.clusterIP}')
pod_ip=$(jp pod/echo '{.status.podIP}')
info "Service echo: ClusterIP $ip; pod echo: $pod_ip"

# The client prints what it resolved and what it read, one fact a line.
client="
import socket, sys, time, urllib.request
def addr(name):
    return sorted({a[4][0] for a in socket.getaddrinfo(name, 80, socket.AF_INET, socket.SOCK_STREAM)})
servers = [l.split()[1] for l in open('/etc/resolv.conf') if l.startswith('nameserver')]
search = [l.split()[1:] for l in open('/etc/resolv.conf') if l.startswith('search')][0][:3]
print('nameservers', *servers)
print('search', *search)
print('echo', *addr('echo'))
print('echo.$NS.svc.cluster.local', *addr('echo.$NS.svc.cluster.local'))
print('echo-headless', *addr('echo-headless'))
print('kubernetes.default', *addr('kubernetes.default'))
# kube-proxy may not yet route the new Service's ClusterIP (it refuses the
# connection until its rules name the endpoint): retry that, for up to 60 s.
def get(url):
    deadline = time.monotonic() + 60
    while True:
        try:
            return urllib.request.urlopen(url, timeout=10).read().decode()
        except OSError as e:
            if time.monotonic() > deadline or 'refused' not in str(e):
                raise
            time.sleep(0.5)
print('GET', get('http://echo/by-name'), end='')
print('GET', get('http://echo.$NS.svc.cluster.local/by-fqdn'), end='')
"
real_node_python_pod client "$client" | kubectl apply -n "$NS" -f -
if ! kubectl wait -n "$NS" --for=jsonpath='{.status.phase}'=Succeeded pod/client --timeout="${WAIT}s"; then
  kubectl logs -n "$NS" client >&2 || true
  fail "pod client did not succeed"
fi
expect "client's node" "$(jp pod/client '{.spec.nodeName}')" "$REAL_NODE"
expect "what the client resolved and read by name" "$(kubectl logs -n "$NS" client)" "nameservers 10.96.0.10
search $NS.svc.cluster.local svc.cluster.local cluster.local
echo $ip
echo.$NS.svc.cluster.local $ip
echo-headless $pod_ip
kubernetes.default 10.96.0.1
GET hello from echo at /by-name
GET hello from echo at /by-fqdn"

# From the host: an A query sent to the kube-dns ClusterIP (kube-proxy routes
# it to CoreDNS), without touching the host's resolver.
host_query() {
  python3 - "$1" <<'PY'
import random, socket, struct, sys
name = sys.argv[1]
qid = random.randrange(1 << 16)
query = struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0)
query += b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0"
query += struct.pack(">HH", 1, 1)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(5)
s.sendto(query, ("10.96.0.10", 53))
reply = s.recv(4096)
rid, flags, qd, an = struct.unpack(">HHHH", reply[:8])
assert rid == qid, "reply to another query"
i = len(query)
addrs = []
for _ in range(an):
    while reply[i] != 0 and reply[i] < 0xC0:  # the answer's name
        i += reply[i] + 1
    i += 2 if reply[i] >= 0xC0 else 1
    rtype, _, _, length = struct.unpack(">HHIH", reply[i:i + 10])
    i += 10
    if rtype == 1:
        addrs.append(socket.inet_ntoa(reply[i:i + length]))
    i += length
print(f"rcode {flags & 0xF}", *sorted(addrs))
PY
}
expect "host: echo.$NS.svc.cluster.local via 10.96.0.10" "$(host_query "echo.$NS.svc.cluster.local")" "rcode 0 $ip"
expect "host: a name that does not exist" "$(host_query "nothing.$NS.svc.cluster.local")" "rcode 3"
info "PASS"

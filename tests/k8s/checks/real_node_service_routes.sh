#!/usr/bin/env bash
# A Deployment on the real node answers HTTP through its Service's ClusterIP:
# from the host (kube-proxy's iptables rules, the CNI bridge), every replica in
# turn, and from another pod on the node (pod to Service to pod).
. "$(dirname "$0")/lib.sh"
require_real_node
new_namespace check-real-svc

# Each replica answers with its own pod name (ECHO_SERVER).
kubectl apply -n "$NS" -f - <<YAML
apiVersion: apps/v1
kind: Deployment
metadata:
  name: echo
spec:
  replicas: 2
  selector:
    matchLabels: {app: echo}
  template:
    metadata:
      labels: {app: echo}
    spec:
$(real_node_pod_spec | sed 's/^/      /')
      containers:
$(echo_container | sed 's/^/      /')
---
apiVersion: v1
kind: Service
metadata:
  name: echo
spec:
  selector: {app: echo}
  ports: [{port: 80, targetPort: 8080}]
YAML

kubectl rollout status -n "$NS" deployment/echo --timeout="${WAIT}s"
pods=$(kubectl get pods -n "$NS" -l app=echo -o jsonpath='{range .items[*]}{.metadata.name} {.spec.nodeName}{"\n"}{end}')
echo "$pods" | while read -r pod node; do expect "$pod node" "$node" "$REAL_NODE"; done
ip=$(jp service/echo '{.spec.clusterIP}')
info "Service echo has ClusterIP $ip"

# kube-proxy writes its rules a moment after the endpoints appear: the first
# answer is waited for, with a bound.
deadline=$((SECONDS + WAIT))
until body=$(curl -fsS --max-time 2 "http://$ip/first"); do
  ((SECONDS < deadline)) || fail "no answer from http://$ip/ within ${WAIT}s"
  sleep 0.5
done
info "first answer: $body"

# Every replica answers, each with its own name (kube-proxy picks one at
# random per connection: 2 replicas, 40 connections).
seen=""
for _ in $(seq 40); do
  body=$(curl -fsS --max-time 5 "http://$ip/x") || fail "http://$ip/x failed after the Service answered once"
  seen+="$body"$'\n'
done
want=$(echo "$pods" | awk '{ print "hello from " $1 " at /x" }' | sort)
expect "distinct answers through the ClusterIP" "$(echo -n "$seen" | sort -u)" "$want"

# From a pod on the node, by the Service's ClusterIP.
real_node_python_pod client \
  "import urllib.request; print(urllib.request.urlopen('http://$ip/from-pod', timeout=10).read().decode(), end='')" |
  kubectl apply -n "$NS" -f -
kubectl wait -n "$NS" --for=jsonpath='{.status.phase}'=Succeeded pod/client --timeout="${WAIT}s"
got=$(kubectl logs -n "$NS" client)
case "$got" in
  "hello from echo-"*" at /from-pod") info "ok: from a pod: $got" ;;
  *) fail "pod client read '$got', want 'hello from echo-... at /from-pod'" ;;
esac
info "PASS"

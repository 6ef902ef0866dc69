#!/usr/bin/env bash
# A Deployment becomes Available: Deployment -> ReplicaSet -> pods, pods owned
# by a ReplicaSet go Running + Ready and stay so (they never complete).
. "$(dirname "$0")/lib.sh"
new_namespace check-deploy

kubectl apply -n "$NS" -f - <<YAML
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: main
        image: nginx:1.27
        ports: [{containerPort: 80}]
YAML

kubectl wait -n "$NS" --for=condition=Available deployment/web --timeout="${WAIT}s"
kubectl rollout status -n "$NS" deployment/web --timeout="${WAIT}s"
expect "deployment readyReplicas" "$(jp deployment/web '{.status.readyReplicas}')" 2
rs=$(kubectl get rs -n "$NS" -l app=web -o name)
expect "ReplicaSets created by the Deployment controller" "$(echo "$rs" | grep -c .)" 1
pods=$(kubectl get pods -n "$NS" -l app=web -o name)
expect "pods created by the ReplicaSet controller" "$(echo "$pods" | grep -c .)" 2
for pod in $pods; do
  expect "$pod phase" "$(jp "$pod" '{.status.phase}')" Running
  expect "$pod Ready" "$(jp "$pod" '{.status.conditions[?(@.type=="Ready")].status}')" True
done
# Scaling is reconciled too.
kubectl scale -n "$NS" deployment/web --replicas=3 >/dev/null
kubectl wait -n "$NS" --for=jsonpath='{.status.readyReplicas}'=3 deployment/web --timeout="${WAIT}s"
info "PASS"

#!/usr/bin/env bash
# The real scheduler places pods: a pod that requests nvidia.com/gpu and
# tolerates the GPU taint lands on kwok-gpu-0; one without the toleration stays
# Pending as Unschedulable.
. "$(dirname "$0")/lib.sh"
new_namespace check-gpu

kubectl apply -n "$NS" -f - <<YAML
apiVersion: v1
kind: Pod
metadata:
  name: gpu-ok
  annotations: {sluice.dev/kwok-hold: "true"}
spec:
  nodeSelector: {sluice.dev/accelerator: nvidia-gpu}
  tolerations:
  - {key: nvidia.com/gpu, operator: Exists, effect: NoSchedule}
  containers:
  - name: main
    image: cuda:12
    resources:
      limits: {nvidia.com/gpu: "1"}
---
apiVersion: v1
kind: Pod
metadata:
  name: gpu-no-toleration
spec:
  containers:
  - name: main
    image: cuda:12
    resources:
      limits: {nvidia.com/gpu: "1"}
YAML

kubectl wait -n "$NS" --for=condition=Ready pod/gpu-ok --timeout="${WAIT}s"
expect "gpu-ok node" "$(jp pod/gpu-ok '{.spec.nodeName}')" kwok-gpu-0
kubectl wait -n "$NS" --for=jsonpath='{.status.conditions[?(@.type=="PodScheduled")].reason}'=Unschedulable \
  pod/gpu-no-toleration --timeout="${WAIT}s"
expect "gpu-no-toleration node" "$(jp pod/gpu-no-toleration '{.spec.nodeName}')" ""
info "PASS"

#!/usr/bin/env bash
# A kubeflow.org/v1 PyTorchJob (1 Master + 2 Workers) reaches Succeeded.
. "$(dirname "$0")/lib.sh"
new_namespace check-pytorchjob

kubectl apply -n "$NS" -f - <<YAML
apiVersion: kubeflow.org/v1
kind: PyTorchJob
metadata:
  name: resnet
spec:
  runPolicy:
    cleanPodPolicy: None
  pytorchReplicaSpecs:
    Master:
      replicas: 1
      restartPolicy: Never
      template:
        spec:
          containers:
          - name: pytorch
            image: pytorch/pytorch:2.3.1-cuda12.1-cudnn8-runtime
            command: ["python", "-c", "print('master')"]
    Worker:
      replicas: 2
      restartPolicy: Never
      template:
        spec:
          containers:
          - name: pytorch
            image: pytorch/pytorch:2.3.1-cuda12.1-cudnn8-runtime
            command: ["python", "-c", "print('worker')"]
YAML

kubectl wait -n "$NS" --for=condition=Succeeded pytorchjob/resnet --timeout="${WAIT}s"
sel=training.kubeflow.org/job-name=resnet
expect "Master pods created by the operator" \
  "$(kubectl get pods -n "$NS" -l "$sel,training.kubeflow.org/replica-type=master" -o name | grep -c .)" 1
expect "Worker pods created by the operator" \
  "$(kubectl get pods -n "$NS" -l "$sel,training.kubeflow.org/replica-type=worker" -o name | grep -c .)" 2
for pod in $(kubectl get pods -n "$NS" -l "$sel" -o name); do
  expect "$pod phase" "$(jp "$pod" '{.status.phase}')" Succeeded
  expect "$pod owner" "$(jp "$pod" '{.metadata.ownerReferences[0].kind}')" PyTorchJob
  # The operator injects the torch.distributed rendezvous environment.
  [ -n "$(jp "$pod" '{.spec.containers[0].env[?(@.name=="MASTER_ADDR")].value}')" ] ||
    fail "$pod has no MASTER_ADDR"
done
expect "WORLD_SIZE" "$(jp pod/resnet-master-0 '{.spec.containers[0].env[?(@.name=="WORLD_SIZE")].value}')" 3
info "PASS"

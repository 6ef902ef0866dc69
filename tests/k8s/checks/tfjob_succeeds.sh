#!/usr/bin/env bash
# A kubeflow.org/v1 TFJob (1 PS + 2 Workers) reaches Succeeded: the
# training-operator creates the replica pods and services, kwok completes the pods.
. "$(dirname "$0")/lib.sh"
new_namespace check-tfjob

kubectl apply -n "$NS" -f - <<YAML
apiVersion: kubeflow.org/v1
kind: TFJob
metadata:
  name: mnist
spec:
  runPolicy:
    cleanPodPolicy: None
  tfReplicaSpecs:
    PS:
      replicas: 1
      restartPolicy: Never
      template:
        spec:
          containers:
          - name: tensorflow
            image: tensorflow/tensorflow:2.16.1
            command: ["python", "-c", "print('ps')"]
    Worker:
      replicas: 2
      restartPolicy: Never
      template:
        spec:
          containers:
          - name: tensorflow
            image: tensorflow/tensorflow:2.16.1
            command: ["python", "-c", "print('worker')"]
YAML

kubectl wait -n "$NS" --for=condition=Succeeded tfjob/mnist --timeout="${WAIT}s"
sel=training.kubeflow.org/job-name=mnist
expect "PS pods created by the operator" \
  "$(kubectl get pods -n "$NS" -l "$sel,training.kubeflow.org/replica-type=ps" -o name | grep -c .)" 1
expect "Worker pods created by the operator" \
  "$(kubectl get pods -n "$NS" -l "$sel,training.kubeflow.org/replica-type=worker" -o name | grep -c .)" 2
expect "services created by the operator" "$(kubectl get services -n "$NS" -l "$sel" -o name | grep -c .)" 3
for pod in $(kubectl get pods -n "$NS" -l "$sel,training.kubeflow.org/replica-type=worker" -o name); do
  expect "$pod phase" "$(jp "$pod" '{.status.phase}')" Succeeded
  expect "$pod owner" "$(jp "$pod" '{.metadata.ownerReferences[0].kind}')" TFJob
  # The operator injects TF_CONFIG describing the cluster.
  jp "$pod" '{.spec.containers[0].env[?(@.name=="TF_CONFIG")].value}' | grep -q '"ps"' ||
    fail "$pod has no TF_CONFIG naming the ps replicas"
done
expect "tfjob succeeded workers" "$(jp tfjob/mnist '{.status.replicaStatuses.Worker.succeeded}')" 2
info "PASS"

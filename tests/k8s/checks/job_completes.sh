#!/usr/bin/env bash
# A batch/v1 Job runs to completion: the Job controller creates its pod, the
# scheduler binds it to a kwok node, kwok moves it Pending -> Running -> Succeeded.
. "$(dirname "$0")/lib.sh"
new_namespace check-job

kubectl apply -n "$NS" -f - <<YAML
apiVersion: batch/v1
kind: Job
metadata:
  name: hello
spec:
  completions: 2
  parallelism: 2
  backoffLimit: 0
  template:
    spec:
      restartPolicy: Never
      containers:
      - name: main
        image: busybox:1.36
        command: ["sh", "-c", "echo hello"]
        resources:
          requests: {cpu: 100m, memory: 64Mi}
YAML

kubectl wait -n "$NS" --for=condition=Complete job/hello --timeout="${WAIT}s"
expect "job.status.succeeded" "$(jp job/hello '{.status.succeeded}')" 2

pods=$(kubectl get pods -n "$NS" -l batch.kubernetes.io/job-name=hello -o name)
expect "pods created by the Job controller" "$(echo "$pods" | grep -c .)" 2
for pod in $pods; do
  expect "$pod phase" "$(jp "$pod" '{.status.phase}')" Succeeded
  expect "$pod exit code" "$(jp "$pod" '{.status.containerStatuses[0].state.terminated.exitCode}')" 0
  node=$(jp "$pod" '{.spec.nodeName}')
  case "$node" in kwok-cpu-*) info "ok: $pod ran on $node" ;; *) fail "$pod bound to '$node', want a kwok-cpu-* node" ;; esac
done
info "PASS"

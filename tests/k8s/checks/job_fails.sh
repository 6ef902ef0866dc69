#!/usr/bin/env bash
# A Job whose pod is told to fail (annotation sluice.dev/kwok-fail) ends Failed,
# and the pod's container reports the requested non-zero exit code.
. "$(dirname "$0")/lib.sh"
new_namespace check-jobfail

kubectl apply -n "$NS" -f - <<YAML
apiVersion: batch/v1
kind: Job
metadata:
  name: doomed
spec:
  backoffLimit: 0
  template:
    metadata:
      annotations:
        sluice.dev/kwok-fail: "true"
        sluice.dev/kwok-exit-code: "3"
    spec:
      restartPolicy: Never
      containers:
      - name: main
        image: busybox:1.36
        command: ["sh", "-c", "exit 3"]
YAML

kubectl wait -n "$NS" --for=condition=Failed job/doomed --timeout="${WAIT}s"
expect "job Failed reason" "$(jp job/doomed '{.status.conditions[?(@.type=="Failed")].reason}')" BackoffLimitExceeded
expect "job.status.failed" "$(jp job/doomed '{.status.failed}')" 1
pod=$(kubectl get pods -n "$NS" -l batch.kubernetes.io/job-name=doomed -o name)
[ -n "$pod" ] || fail "no pod created for job/doomed"
expect "$pod phase" "$(jp "$pod" '{.status.phase}')" Failed
expect "$pod exit code" "$(jp "$pod" '{.status.containerStatuses[0].state.terminated.exitCode}')" 3
expect "$pod termination reason" "$(jp "$pod" '{.status.containerStatuses[0].state.terminated.reason}')" Error
info "PASS"

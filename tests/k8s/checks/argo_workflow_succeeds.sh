#!/usr/bin/env bash
# An argoproj.io/v1alpha1 Workflow (a two-step DAG) reaches Succeeded: Argo's
# workflow-controller creates one pod per step, kwok completes them. Runs only
# on a cluster started with `cluster up --with-argo` (SLUICE_K8S_WITH_ARGO=1
# for CTest); reports Skipped otherwise.
. "$(dirname "$0")/lib.sh"
require_argo_controller
new_namespace check-argo

kubectl apply -n "$NS" -f - <<YAML
apiVersion: argoproj.io/v1alpha1
kind: Workflow
metadata:
  name: diamond
spec:
  entrypoint: main
  serviceAccountName: default
  templates:
  - name: main
    dag:
      tasks:
      - {name: a, template: step}
      - {name: b, template: step, dependencies: [a]}
  - name: step
    container:
      image: busybox:1.36
      command: [echo, hi]
YAML

kubectl wait -n "$NS" --for=jsonpath='{.status.phase}'=Succeeded workflow/diamond --timeout="${WAIT}s"
expect "succeeded step nodes" \
  "$(kubectl get workflow -n "$NS" diamond -o jsonpath='{range .status.nodes.*}{.type}={.phase}{"\n"}{end}' | grep -c '^Pod=Succeeded$')" 2
info "PASS"

#!/usr/bin/env bash
# The install manifests (examples/kubernetes/install) against the live test
# cluster (fixture k8s):
#
#   install_manifests_test.sh dry-run SLUICE
#       `kubectl apply --dry-run=server -k` accepts every object; then the
#       ServiceAccount, Role and RoleBinding are applied for real and the
#       ServiceAccount may do exactly what sluice needs (kubectl auth can-i),
#       and nothing else that was checked (secrets, configmaps, nodes).
#   install_manifests_test.sh in-cluster SLUICE [PG_STATE]
#       `sluice run` with no kubeconfig and KUBERNETES_SERVICE_HOST/PORT set
#       reads the service account's files as a pod would (token from a
#       TokenRequest for the installed ServiceAccount, the cluster CA, the
#       namespace) from SLUICE_SERVICE_ACCOUNT_DIR, and runs a step as that
#       ServiceAccount in its namespace; with PG_STATE (the postgres
#       fixture's state directory), `sluice serve --leader-election
#       kubernetes` as that ServiceAccount takes and releases the Lease.
. "$(dirname "$0")/../../k8s/checks/lib.sh"
mode=$1
sluice=$2
install=$(cd "$(dirname "$0")/../../../examples/kubernetes/install" && pwd)
new_namespace install
sa=system:serviceaccount:$NS:sluice

rbac() {
  kubectl apply -n "$NS" -f "$install/serviceaccount.yaml" -f "$install/role.yaml" \
    -f "$install/rolebinding.yaml" >/dev/null
}

case $mode in
dry-run)
  out=$(kubectl apply --dry-run=server -k "$install" -n "$NS")
  echo "$out"
  for object in serviceaccount/sluice role.rbac.authorization.k8s.io/sluice \
    rolebinding.rbac.authorization.k8s.io/sluice secret/sluice deployment.apps/sluice service/sluice; do
    echo "$out" | grep -q "^$object .*(server dry run)$" || fail "$object not accepted by the server dry run"
  done
  echo "$out" | grep -q '^configmap/sluice-pipelines-[a-z0-9]* .*(server dry run)$' || fail "pipelines ConfigMap missing"
  rbac
  for want in "create jobs.batch" "watch jobs.batch" "delete jobs.batch" "create pods" "deletecollection pods" \
    "get pods/log" "create tfjobs.kubeflow.org" "watch pytorchjobs.kubeflow.org" "get leases.coordination.k8s.io" \
    "create leases.coordination.k8s.io" \
    "patch leases.coordination.k8s.io" "patch deployments.apps" "create services"; do
    # shellcheck disable=SC2086
    expect "can-i $want" "$(kubectl auth can-i $want -n "$NS" --as "$sa" || true)" yes
  done
  for refused in "get secrets" "list configmaps" "update leases.coordination.k8s.io"; do
    # shellcheck disable=SC2086
    expect "can-i $refused" "$(kubectl auth can-i $refused -n "$NS" --as "$sa" 2>/dev/null || true)" no
  done
  # A Role: nothing in other namespaces.
  expect "can-i create jobs.batch in default" "$(kubectl auth can-i create jobs.batch -n default --as "$sa" || true)" no
  ;;
in-cluster)
  rbac
  work=$(mktemp -d)
  trap 'rm -rf "$work"; cleanup_namespace' EXIT
  mkdir -p "$work/serviceaccount" "$work/home"
  kubectl create token sluice -n "$NS" --duration=10m >"$work/serviceaccount/token"
  cp "$(kubectl config view -o jsonpath='{.clusters[0].cluster.certificate-authority}')" "$work/serviceaccount/ca.crt"
  printf %s "$NS" >"$work/serviceaccount/namespace"
  server=$(kubectl config view -o jsonpath='{.clusters[0].cluster.server}')
  hostport=${server#https://}
  cat >"$work/pipeline.yaml" <<'YAML'
apiVersion: sluice.dev/v1
kind: Pipeline
metadata:
  name: in-cluster
executor: kubernetes
defaults:
  image: busybox:1.36
  resources: {cpu: 100m, memory: 64Mi}
steps:
  - name: hello
    command: [echo, hello]
YAML
  # No kubeconfig anywhere: only the service account's files.
  (cd "$work" && env -u KUBECONFIG HOME="$work/home" KUBERNETES_SERVICE_HOST="${hostport%:*}" \
    KUBERNETES_SERVICE_PORT="${hostport##*:}" SLUICE_SERVICE_ACCOUNT_DIR="$work/serviceaccount" \
    "$sluice" run pipeline.yaml --run-id in-cluster-run -q) || fail "sluice run as the ServiceAccount failed"
  expect "the step's pod, in the service account's namespace" \
    "$(kubectl get pods -n "$NS" -l sluice.dev/run=in-cluster-run -o jsonpath='{.items[*].metadata.labels.sluice\.dev/step}')" hello
  expect "the run" "$(cd "$work" && "$sluice" runs -o name)" in-cluster-run
  # `sluice serve --leader-election kubernetes` as the ServiceAccount takes
  # the Lease in its namespace and gives it up when stopped (needs the
  # PostgreSQL fixture's server: PG_STATE/env).
  pg_env=${3:-}/env
  if [ -f "$pg_env" ]; then
    pg=$(sed -n 's/^SLUICE_TEST_POSTGRES_URL=//p' "$pg_env")
    db=lease_install_$RANDOM
    psql -q "$pg" -c "CREATE DATABASE $db" || fail "cannot create database $db"
    mkdir -p "$work/pipelines"
    (cd "$work" && exec env -u KUBECONFIG HOME="$work/home" KUBERNETES_SERVICE_HOST="${hostport%:*}" \
      KUBERNETES_SERVICE_PORT="${hostport##*:}" SLUICE_SERVICE_ACCOUNT_DIR="$work/serviceaccount" POD_NAME=sluice-0 \
      "$sluice" serve --pipelines pipelines --store "${pg%/*}/$db" --listen 127.0.0.1:0 \
      --leader-election kubernetes 2>"$work/serve.err") &
    serve_pid=$!
    deadline=$((SECONDS + WAIT))
    until grep -q "leading: this replica (sluice-0) holds the Lease $NS/sluice-leader" "$work/serve.err"; do
      ((SECONDS < deadline)) || { cat "$work/serve.err" >&2; kill "$serve_pid"; fail "serve did not lead"; }
      sleep 0.2
    done
    expect "the Lease's holder" "$(jp lease/sluice-leader '{.spec.holderIdentity}')" sluice-0
    kill -TERM "$serve_pid"
    wait "$serve_pid" || fail "serve exited $? after SIGTERM: $(cat "$work/serve.err")"
    expect "the Lease's holder after a clean stop" "$(jp lease/sluice-leader '{.spec.holderIdentity}')" ""
    psql -q "$pg" -c "DROP DATABASE $db WITH (FORCE)" || true
  else
    info "no PostgreSQL fixture ($pg_env): serve --leader-election kubernetes not checked"
  fi
  ;;
*)
  fail "usage: install_manifests_test.sh dry-run|in-cluster SLUICE"
  ;;
esac
info "PASS"

# shellcheck shell=bash
# Helpers for the tests/k8s/checks/*.sh scripts. Each check runs kubectl against
# the live cluster started by `tests/k8s/cluster up` (CTest fixture "k8s"),
# in a namespace of its own that it deletes on exit.
set -euo pipefail

# CTest's SKIP_RETURN_CODE for these tests.
SKIP=77
if [ "${SLUICE_SKIP_K8S:-0}" = 1 ]; then
  echo "SLUICE_SKIP_K8S=1: skipping $(basename "$0")"
  exit $SKIP
fi

STATE=${SLUICE_K8S_STATE:-/tmp/sluice-k8s}
export KUBECONFIG=$STATE/kubeconfig
[ -f "$KUBECONFIG" ] || { echo "FAIL: no kubeconfig at $KUBECONFIG; run tests/k8s/cluster up" >&2; exit 1; }

# Bound for each wait, in seconds; pods spend SLUICE_KWOK_POD_DELAY in each phase.
WAIT=${SLUICE_K8S_CHECK_TIMEOUT:-120}

fail() { echo "FAIL: $*" >&2; exit 1; }
info() { echo "[$(date -u +%H:%M:%S)] $*"; }

# new_namespace PREFIX: creates a fresh namespace, sets NS, deletes it on exit
# (and dumps its objects and events when the check fails).
new_namespace() {
  NS="$1-$(date +%s)-$RANDOM"
  kubectl create namespace "$NS" >/dev/null
  # Pods are rejected until the namespace's default ServiceAccount exists.
  wait_for_default_sa
  trap cleanup_namespace EXIT
  info "namespace $NS"
}

wait_for_default_sa() {
  local deadline=$((SECONDS + WAIT))
  until kubectl get serviceaccount default -n "$NS" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || fail "ServiceAccount $NS/default not created within ${WAIT}s (is kube-controller-manager running?)"
    sleep 0.25
  done
}

cleanup_namespace() {
  local rc=$?
  if [ $rc -ne 0 ] && [ $rc -ne $SKIP ]; then
    echo "----- state of namespace $NS at failure -----" >&2
    kubectl get all,events -n "$NS" -o wide >&2 || true
    kubectl get pods -n "$NS" -o yaml >&2 || true
    echo "----- component logs (tests/k8s/cluster logs 40) -----" >&2
    "$(dirname "${BASH_SOURCE[0]}")/../cluster" logs 40 >&2 || true
  fi
  kubectl delete namespace "$NS" --wait=true --timeout=60s >/dev/null 2>&1 ||
    echo "warning: namespace $NS not deleted within 60s" >&2
  exit $rc
}

# jp KIND/NAME JSONPATH: one field of an object in $NS.
jp() { kubectl get -n "$NS" "$1" -o "jsonpath=$2"; }

# expect WHAT GOT WANT
expect() {
  [ "$2" = "$3" ] || fail "$1: got '$2', want '$3'"
  info "ok: $1 = $3"
}

# Skips the check unless the cluster runs Argo's workflow-controller (`cluster
# up --with-argo`, SLUICE_K8S_WITH_ARGO=1 for CTest). Argo's CRDs alone are
# always installed, so they say nothing about the controller.
require_argo_controller() {
  if [ ! -f "$STATE/with-argo" ]; then
    echo "Argo's workflow-controller is not running in this cluster (SLUICE_K8S_WITH_ARGO=1 / cluster up --with-argo): skipping"
    exit $SKIP
  fi
}

# stop_host_runner RC: stops tests/k8s/host_runner.py ($runner_pid, when
# started) and, when the check failed (RC), shows the end of its log
# ($work/runner.log); the pods' output stays in $work/logs.
stop_host_runner() {
  [ -n "${runner_pid:-}" ] && kill "$runner_pid" 2>/dev/null
  if [ "$1" -ne 0 ] && [ "$1" -ne $SKIP ]; then
    echo "----- host runner log -----" >&2
    tail -n 40 "$work/runner.log" >&2 || true
    echo "(pod outputs in $work/logs; kept)" >&2
  fi
  return 0
}

# The real node (`cluster up --with-node`): its name, the taint only the pods
# meant for it tolerate, and the images it has (versions.env).
# shellcheck source=../versions.env
. "$(dirname "${BASH_SOURCE[0]}")/../versions.env"
REAL_NODE=sluice-node

# Skips the check unless the cluster has the real node (`cluster up
# --with-node`, SLUICE_K8S_WITH_NODE=1 for CTest).
require_real_node() {
  if [ ! -f "$STATE/with-node" ]; then
    echo "the cluster has no real node (SLUICE_K8S_WITH_NODE=1 / cluster up --with-node): skipping"
    exit $SKIP
  fi
}

# real_node_pod_spec: the lines of a pod spec that put it on the real node.
real_node_pod_spec() {
  cat <<YAML
nodeSelector: {sluice.dev/real-node: "true"}
tolerations:
- {key: sluice.dev/real-node, operator: Equal, value: "true", effect: NoSchedule}
YAML
}

# yaml_str TEXT: TEXT as one JSON string, which YAML reads as the same text
# (Python source as an element of a container's command).
yaml_str() { printf '%s' "$1" | python3 -c 'import json, sys; print(json.dumps(sys.stdin.read()))'; }

# real_node_python_pod NAME CODE: the manifest of a Pod NAME on the real node
# that runs the Python CODE once, from the node's image.
real_node_python_pod() {
  cat <<YAML
apiVersion: v1
kind: Pod
metadata:
  name: $1
spec:
  restartPolicy: Never
$(real_node_pod_spec | sed 's/^/  /')
  containers:
  - name: main
    image: $NODE_PYTHON_IMAGE
    imagePullPolicy: Never
    command: [python3, -c, $(yaml_str "$2")]
YAML
}

# ECHO_SERVER: Python source of an HTTP server on port 8080 that answers
# every GET with "hello from <its hostname> at <path>" (in a pod, its name).
ECHO_SERVER='
import socket
from http.server import BaseHTTPRequestHandler, HTTPServer
class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        body = f"hello from {socket.gethostname()} at {self.path}\n".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
HTTPServer(("", 8080), Handler).serve_forever()
'

# echo_container: a pod spec's containers list running ECHO_SERVER from the
# node's image, ready once it answers.
echo_container() {
  cat <<YAML
- name: main
  image: $NODE_PYTHON_IMAGE
  imagePullPolicy: Never
  command: [python3, -c, $(yaml_str "$ECHO_SERVER")]
  ports: [{containerPort: 8080}]
  readinessProbe:
    httpGet: {path: /ready, port: 8080}
    periodSeconds: 1
YAML
}

# host_dir_claim PV CLAIM DIR: a ReadWriteMany PersistentVolume PV on this
# host's directory DIR, bound to the claim CLAIM in $NS (made here); returns
# once it is Bound. The caller deletes PV (it outlives the namespace).
host_dir_claim() {
  kubectl apply -f - >/dev/null <<YAML
apiVersion: v1
kind: PersistentVolume
metadata: {name: $1}
spec:
  capacity: {storage: 1Gi}
  accessModes: [ReadWriteMany]
  persistentVolumeReclaimPolicy: Retain
  storageClassName: ""
  hostPath: {path: $3}
  claimRef: {namespace: $NS, name: $2}
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: $2, namespace: $NS}
spec:
  accessModes: [ReadWriteMany]
  storageClassName: ""
  volumeName: $1
  resources: {requests: {storage: 1Gi}}
YAML
  kubectl wait -n "$NS" --for=jsonpath='{.status.phase}'=Bound "pvc/$2" --timeout="${WAIT}s" >/dev/null
}

# host_workspace NAME: a run directory $work (kept when the check fails,
# removed when it passes) with the workspace $H inside it, and the name $PV
# for the PersistentVolume on $H (see host_dir_claim), deleted on exit with
# the namespace.
host_workspace() {
  work=$(mktemp -d "/tmp/sluice-$1.XXXXXX")
  H=$work/workspace
  PV=sluice-$1-$$
  trap host_workspace_exit EXIT
}
host_workspace_exit() {
  local rc=$?
  kubectl delete pv "$PV" --wait=false >/dev/null 2>&1 || true
  if [ $rc -eq 0 ]; then rm -rf "$work"; else echo "(run directory kept: $work)" >&2; fi
  (exit $rc)
  cleanup_namespace
}

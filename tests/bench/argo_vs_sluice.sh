#!/usr/bin/env bash
# Side by side (issue 8): the same N-step fan-out, run once through sluice's
# Kubernetes executor (`sluice run --executor kubernetes`) and once compiled
# with `sluice compile --target argo` and run by Argo's real
# workflow-controller, on the same test cluster (tests/k8s, kwok nodes), with
# the same client rate limit (sluice's defaults, qps 50 / burst 100; the
# cluster starts the controller with --qps 50 --burst 100) and the same cap on
# steps in flight (the foreach's parallelism). Each side runs RUNS times,
# alternating, each run in a fresh namespace (deleted, and waited for, before
# the next run starts).
#
# Reported per run: wall time (sluice: the `sluice run` process; Argo: from
# the Workflow's create request until its status.phase reads Succeeded), and
# the API server's own request count, the delta of apiserver_request_total
# over the run (all clients: the engine, kube-controller-manager, the
# scheduler, kwok), by verb and resource.
#
# Usage (cluster up --with-argo first):
#   tests/bench/argo_vs_sluice.sh SLUICE_BINARY [OUT_DIR]
# Environment: STEPS (1000), IN_FLIGHT (200), RUNS (2),
#   OBJECT (pod: sluice creates each step's Pod itself, as Argo does; job: a
#   batch/v1 Job per step, through kube-controller-manager's Job controller),
#   LOGS (all: sluice copies every step's log, one more request per step;
#   failed: only failures' logs, as Argo, which copies none),
#   SLUICE_K8S_STATE (/tmp/sluice-k8s).
set -euo pipefail
SLUICE=$(realpath "${1:?usage: $0 SLUICE_BINARY [OUT_DIR]}")
OUT=${2:-$(mktemp -d /tmp/sluice-argo-bench.XXXXXX)}
STEPS=${STEPS:-1000}
IN_FLIGHT=${IN_FLIGHT:-200}
RUNS=${RUNS:-2}
OBJECT=${OBJECT:-pod}
LOGS=${LOGS:-all}
STATE=${SLUICE_K8S_STATE:-/tmp/sluice-k8s}
export KUBECONFIG=$STATE/kubeconfig
HERE=$(cd "$(dirname "$0")" && pwd)
[ -f "$KUBECONFIG" ] || { echo "no cluster at $STATE (tests/k8s/cluster up --with-argo)" >&2; exit 2; }
[ -f "$STATE/with-argo" ] || { echo "the cluster at $STATE runs no workflow-controller (cluster up --with-argo)" >&2; exit 2; }
mkdir -p "$OUT"
log() { echo "[bench $(date -u +%H:%M:%S)] $*" >&2; }

cat >"$OUT/pipeline.yaml" <<YAML
apiVersion: sluice.dev/v1
kind: Pipeline
metadata:
  name: fanout
defaults:
  image: busybox:1.36
  cache: {enabled: false}
  kubernetes: {object: $OBJECT, logs: $LOGS}
steps:
  - name: work
    foreach: {range: {start: 0, end: $STEPS}}
    parallelism: $IN_FLIGHT
    command: [sh, -c, "echo {{ item }}"]
YAML
"$SLUICE" compile "$OUT/pipeline.yaml" --target argo -o "$OUT/workflow.yaml" 2>/dev/null

# Both sides mount the claim into every pod; a sluice without --workspace-pvc
# (older builds) runs its pods without the volume, which costs the API server
# nothing more or less (the scheduler reads bound claims from its cache).
SLUICE_PVC_ARGS=(--workspace-pvc sluice-workspace)
if ! "$SLUICE" run --help 2>&1 | grep -q -- --workspace-pvc; then
  SLUICE_PVC_ARGS=()
  echo "note: $SLUICE has no --workspace-pvc; its pods mount no volume" | tee "$OUT/notes.txt" >&2
fi

snapshot() { kubectl get --raw /metrics | grep '^apiserver_request_total{' >"$1"; }

# namespace NS: a fresh namespace with a bound workspace claim (both sides
# mount the claim sluice-workspace into every pod).
namespace() {
  local ns=$1
  kubectl create namespace "$ns" >/dev/null
  until kubectl get serviceaccount default -n "$ns" >/dev/null 2>&1; do sleep 0.5; done
  kubectl apply -f - >/dev/null <<YAML
apiVersion: v1
kind: PersistentVolume
metadata: {name: $ns}
spec:
  capacity: {storage: 1Gi}
  accessModes: [ReadWriteMany]
  storageClassName: ""
  hostPath: {path: /tmp/$ns}
  claimRef: {namespace: $ns, name: sluice-workspace}
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: sluice-workspace, namespace: $ns}
spec:
  accessModes: [ReadWriteMany]
  storageClassName: ""
  volumeName: $ns
  resources: {requests: {storage: 1Gi}}
YAML
  kubectl wait -n "$ns" --for=jsonpath='{.status.phase}'=Bound pvc/sluice-workspace --timeout=120s >/dev/null
}

drop() {
  local ns=$1
  log "deleting namespace $ns"
  kubectl delete namespace "$ns" --wait=true --timeout=900s >/dev/null
  kubectl delete pv "$ns" >/dev/null
}

run_sluice() {
  local i=$1 ns=bench-sluice-$1-$$ t0 t1 rc=0
  namespace "$ns"
  snapshot "$OUT/sluice-$i.before"
  log "sluice run $i: $STEPS steps, $IN_FLIGHT in flight, namespace $ns"
  t0=$(date +%s.%N)
  "$SLUICE" run "$OUT/pipeline.yaml" --executor kubernetes --namespace "$ns" \
    "${SLUICE_PVC_ARGS[@]}" -j "$IN_FLIGHT" --no-cache -q \
    --store "$OUT/store-sluice-$i" >"$OUT/sluice-$i.log" 2>&1 || rc=$?
  t1=$(date +%s.%N)
  snapshot "$OUT/sluice-$i.after"
  [ $rc -eq 0 ] || { tail -20 "$OUT/sluice-$i.log" >&2; echo "sluice run failed ($rc)" >&2; exit 1; }
  echo "sluice $i $(echo "$t1 - $t0" | bc)" >>"$OUT/wall.txt"
  log "sluice run $i: $(echo "$t1 - $t0" | bc) s"
  drop "$ns"
}

run_argo() {
  local i=$1 ns=bench-argo-$1-$$ t0 t1 wf phase
  namespace "$ns"
  snapshot "$OUT/argo-$i.before"
  log "argo run $i: $STEPS steps, parallelism $IN_FLIGHT, namespace $ns"
  t0=$(date +%s.%N)
  wf=$(kubectl create -n "$ns" -f "$OUT/workflow.yaml" -o jsonpath='{.metadata.name}')
  while :; do
    phase=$(kubectl get workflow -n "$ns" "$wf" -o jsonpath='{.status.phase}')
    case "$phase" in
      Succeeded) break ;;
      Failed|Error) echo "workflow $wf: $phase" >&2; exit 1 ;;
    esac
    # Waits on a watch; returns at once when the phase changes.
    kubectl wait -n "$ns" --for=jsonpath='{.status.phase}'=Succeeded "workflow/$wf" --timeout=30s >/dev/null 2>&1 || true
  done
  t1=$(date +%s.%N)
  snapshot "$OUT/argo-$i.after"
  kubectl get workflow -n "$ns" "$wf" -o jsonpath='{.status.startedAt} {.status.finishedAt}' >"$OUT/argo-$i.times"
  echo "argo $i $(echo "$t1 - $t0" | bc)" >>"$OUT/wall.txt"
  log "argo run $i: $(echo "$t1 - $t0" | bc) s (workflow $wf, startedAt/finishedAt $(cat "$OUT/argo-$i.times"))"
  drop "$ns"
}

: >"$OUT/wall.txt"
for i in $(seq 1 "$RUNS"); do
  run_sluice "$i"
  run_argo "$i"
done
python3 "$HERE/argo_vs_sluice_report.py" "$OUT" "$STEPS" | tee "$OUT/report.md"

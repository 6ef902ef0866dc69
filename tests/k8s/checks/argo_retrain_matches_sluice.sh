#!/usr/bin/env bash
# examples/retrain, compiled with `sluice compile --target argo`, runs under
# Argo's real workflow-controller on the test cluster, and its node phases
# match sluice's own run of the same YAML on the Kubernetes executor; then
# `sluice import-run` reads the finished Workflow into the store, and
# `sluice show` / `lineage` work on it.
#
# kwok runs no code, so both runs happen in namespace sluice-host-run, where
# kwok holds pods Running and tests/k8s/host_runner.py runs each pod's command
# on this host (the real scikit-learn steps), with the workspace volume (a
# hostPath PersistentVolume) at a host directory, and ends the pod with the
# command's exit code; for Argo pods it also reports the output parameters as
# Argo's wait container does. The controller, the API server, the Job
# controller and sluice's executor are the real ones.
#
# Compared: the container steps (prepare, train[0..2], requests, evaluate[0..2],
# select, register, report). `deploy` (type deploy) and `validate` (type
# traffic-validation) compile to resource templates and `sluice-serving
# validate` pods (docs/compile.md), which need Argo's executor (argoexec) and a
# sluice image in the pods: host_runner.py runs neither, so here they are
# compiled out with --exclude-step (the Workflow records that in annotation
# sluice.dev/excluded-steps; k8s_compiled_dry_run checks their whole form); on
# sluice's side they run (the
# example's deploy serves a local command, which cannot run on Kubernetes, so
# it fails and validate is not run) under --keep-going, which leaves the
# container steps unaffected.
#
# Needs the workflow-controller (SLUICE_K8S_WITH_ARGO=1 / cluster up
# --with-argo) and python3 with scikit-learn (examples/requirements.txt);
# reports Skipped otherwise.
#
# Usage: argo_retrain_matches_sluice.sh SLUICE_BINARY
. "$(dirname "$0")/lib.sh"
SLUICE=${1:?usage: $0 SLUICE_BINARY}
SRC=$(cd "$(dirname "$0")/../../.." && pwd)
PIPELINE=$SRC/examples/retrain/pipeline.yaml
require_argo_controller
if ! python3 -c 'import sklearn' 2>/dev/null; then
  echo "python3 cannot import sklearn (pip install -r examples/requirements.txt): skipping"
  exit $SKIP
fi
WAIT_RUN=${SLUICE_K8S_RETRAIN_TIMEOUT:-600}

NS=sluice-host-run
if kubectl get namespace "$NS" >/dev/null 2>&1; then
  info "deleting namespace $NS left by an earlier run"
  kubectl delete namespace "$NS" --wait=true --timeout=120s >/dev/null
fi
work=$(mktemp -d /tmp/sluice-argo-retrain.XXXXXX)
H=$work/workspace
STORE=$H/.sluice
PV=sluice-host-run-$$
mkdir -p "$H"
runner_pid=
on_exit() {
  local rc=$?
  stop_host_runner $rc
  kubectl delete pv "$PV" --wait=false >/dev/null 2>&1 || true
  [ $rc -eq 0 ] && rm -rf "$work"
  (exit $rc)
  cleanup_namespace
}
kubectl create namespace "$NS" >/dev/null
wait_for_default_sa
trap on_exit EXIT

host_dir_claim "$PV" sluice-workspace "$H"

python3 "$SRC/tests/k8s/host_runner.py" --namespace "$NS" --workspace "$H" \
  --scratch "$work/scratch" --logs "$work/logs" >"$work/runner.log" 2>&1 &
runner_pid=$!

# 1. sluice's own run, on the Kubernetes executor.
info "sluice run --executor kubernetes"
rc=0
timeout "$WAIT_RUN" "$SLUICE" run "$PIPELINE" --executor kubernetes --namespace "$NS" \
  --workspace-pvc sluice-workspace --workspace-host-dir "$H" --store "$STORE" \
  --run-id sluice-retrain --keep-going -q >"$work/sluice-run.log" 2>&1 || rc=$?
# 1: a step failed (deploy, see above); anything else is a real failure.
if [ $rc -ne 0 ] && [ $rc -ne 1 ]; then
  cat "$work/sluice-run.log" >&2
  fail "sluice run exited $rc"
fi
"$SLUICE" status sluice-retrain --store "$STORE" --format json >"$work/sluice.json"

# 2. The compiled Workflow under Argo.
info "sluice compile --target argo, run by the workflow-controller"
"$SLUICE" compile "$PIPELINE" --target argo --namespace "$NS" --source-dir "$SRC/examples/retrain" \
  --exclude-step deploy --exclude-step validate -o "$work/workflow.yaml"
# Memoized entries of an earlier run name files in that run's workspace,
# which is gone: start without any.
kubectl delete configmap -n "$NS" sluice-memo-retrain --ignore-not-found >/dev/null
wf=$(kubectl create -f "$work/workflow.yaml" -o jsonpath='{.metadata.name}')
info "workflow $wf"
deadline=$((SECONDS + WAIT_RUN))
until phase=$(jp "workflow/$wf" '{.status.phase}') && [[ "$phase" =~ ^(Succeeded|Failed|Error)$ ]]; do
  ((SECONDS < deadline)) || fail "workflow $wf not finished within ${WAIT_RUN}s (phase '$phase')"
  kubectl wait -n "$NS" --for=jsonpath='{.status.phase}'=Succeeded "workflow/$wf" --timeout=10s >/dev/null 2>&1 || true
done
info "workflow $wf: $phase"
expect "excluded steps recorded" "$(jp "workflow/$wf" '{.metadata.annotations.sluice\.dev/excluded-steps}')" "deploy,validate"

# 3. Import it into the same store.
"$SLUICE" import-run "$wf" --namespace "$NS" --store "$STORE" --file "$PIPELINE" \
  --workspace-host-dir "$H" | tee "$work/import.log"
"$SLUICE" status "$wf" --store "$STORE" --format json >"$work/argo.json"

# 4. Same container steps, same phases.
python3 - "$work/sluice.json" "$work/argo.json" <<'PY'
import json, sys
sluice = {s["instance"]: s for s in json.load(open(sys.argv[1]))["steps"]}
argo = {s["instance"]: s for s in json.load(open(sys.argv[2]))["steps"]}
operator_steps = {"deploy", "validate"}
print(f"{'STEP':<12} {'SLUICE':<10} {'ARGO':<10}")
for name in sorted(set(sluice) | set(argo)):
    s, a = sluice.get(name, {}).get("phase", "-"), argo.get(name, {}).get("phase", "-")
    note = "  (operator step: not compiled, not compared)" if name in operator_steps else ""
    print(f"{name:<12} {s:<10} {a:<10}{note}")
container = sorted(set(sluice) - operator_steps)
mismatch = [n for n in container if sluice[n]["phase"] != argo.get(n, {}).get("phase")]
extra = sorted(set(argo) - set(sluice))
if mismatch or extra or len(container) != 11:
    sys.exit(f"FAIL: phases differ for {mismatch}, steps only under Argo {extra}, "
             f"{len(container)} container steps (want 11)")
if any(sluice[n]["phase"] != "Succeeded" for n in container):
    sys.exit("FAIL: a container step did not succeed on either side")
# The same data and models: output params and metrics agree.
for n in container:
    for key in ("output_params", "metrics"):
        if sluice[n][key] != argo[n][key]:
            sys.exit(f"FAIL: {n} {key}: sluice {sluice[n][key]} argo {argo[n][key]}")
print("ok: 11 container step instances, same phases, output params and metrics")
PY

# 5. The imported run in show and lineage: the registered model's lineage
# leads back through select and train to prepare's dataset.
"$SLUICE" show "$wf" --store "$STORE" >"$work/show.txt"
grep -q "^Status: *Succeeded\|Succeeded" "$work/show.txt" || fail "sluice show $wf: $(cat "$work/show.txt")"
"$SLUICE" lineage "$wf/register/registered_model" --store "$STORE" --format json >"$work/lineage.json"
python3 - "$work/lineage.json" <<'PY'
import json, sys
text = open(sys.argv[1]).read()
for step in ("select", "train", "prepare"):
    if f'"{step}' not in text and f'/{step}' not in text:
        sys.exit(f"FAIL: lineage of register/registered_model does not reach {step}: {text[:2000]}")
print("ok: lineage of the imported run's registered model reaches select, train and prepare")
PY
info "PASS"

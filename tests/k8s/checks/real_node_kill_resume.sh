#!/usr/bin/env bash
# kill -9 of `sluice run` while a step's pod runs on the real node, then
# `sluice resume`: the resumed run adopts the running pod (the same pod, by
# uid: the step is not run twice), takes its output when it ends, runs the
# steps after it, and re-runs none of the steps that had ended. The steps
# are Python with scikit-learn from the node's image; their files pass
# through a workspace volume on this host (a hostPath PersistentVolume), as
# in real_node_retrain_steps.sh.
#
# Usage: real_node_kill_resume.sh SLUICE_BINARY
. "$(dirname "$0")/lib.sh"
SLUICE=${1:?usage: $0 SLUICE_BINARY}
require_real_node
new_namespace check-real-resume
host_workspace real-resume
# The gated pipeline (train waits for a file the check writes once sluice is
# dead, so its pod surely runs across the kill and the resume), with the
# node's image and placement as its defaults.
mkdir -p "$H"
cp -r "$(dirname "$0")/../../support/gated_pipeline" "$H/pipeline"
python3 - "$H/pipeline/pipeline.yaml" "$NODE_PYTHON_IMAGE" <<'PY'
import sys, yaml
path, image = sys.argv[1:3]
spec = yaml.safe_load(open(path))
spec["defaults"] = {"image": image, "resources": {
    "nodeSelector": {"sluice.dev/real-node": "true"},
    "tolerations": [{"key": "sluice.dev/real-node", "operator": "Equal", "value": "true",
                     "effect": "NoSchedule"}]}}
yaml.safe_dump(spec, open(path, "w"), sort_keys=False)
PY

host_dir_claim "$PV" sluice-workspace "$H"
FLAGS=(--executor kubernetes --namespace "$NS" --workspace-pvc sluice-workspace --workspace-host-dir "$H"
       --store "$H/.sluice")

info "sluice run (killed with -9 while train's pod runs)"
"$SLUICE" run "$H/pipeline/pipeline.yaml" "${FLAGS[@]}" --run-id real-resume -q >"$work/run.log" 2>&1 &
pid=$!
train_pod() { kubectl get pods -n "$NS" -l sluice.dev/step=train -o jsonpath="$1"; }
deadline=$((SECONDS + WAIT))
until [ "$(train_pod '{.items[*].status.phase}')" = Running ]; do
  [ $SECONDS -lt $deadline ] || { cat "$work/run.log" >&2; fail "train's pod did not run within ${WAIT}s"; }
  kill -0 "$pid" 2>/dev/null || { cat "$work/run.log" >&2; fail "sluice run ended before train's pod ran"; }
  sleep 0.5
done
uid=$(train_pod '{.items[0].metadata.uid}')
kill -9 "$pid"
wait "$pid" 2>/dev/null || true
info "killed sluice run; train's pod $uid still runs"
expect "run phase after kill -9" \
  "$("$SLUICE" status real-resume --store "$H/.sluice" --format json | python3 -c 'import json, sys; print(json.load(sys.stdin)["run"]["phase"])')" \
  Running

touch "$H/pipeline/go"
info "sluice resume"
rc=0
timeout "$WAIT" "$SLUICE" resume real-resume "${FLAGS[@]}" -q >"$work/resume.log" 2>&1 || rc=$?
cat "$work/resume.log"
expect "sluice resume exit code" "$rc" 0

"$SLUICE" status real-resume --store "$H/.sluice" --format json >"$work/status.json"
expect "steps (phase, attempts)" "$(python3 - "$work/status.json" <<'PY'
import json, sys
steps = json.load(open(sys.argv[1]))["steps"]
print(" ".join(sorted(f'{s["instance"]}={s["phase"]}/{s["attempts"]}' for s in steps)))
PY
)" "evaluate=Succeeded/1 prepare=Succeeded/1 train=Succeeded/1"
expect "train's pods (the one that ran across the kill)" "$(train_pod '{.items[*].metadata.uid}')" "$uid"
expect "prepare's pods" "$(kubectl get pods -n "$NS" -l sluice.dev/step=prepare -o name | wc -l)" 1
expect "train's log (copied by the resumed run)" "$("$SLUICE" logs real-resume train --store "$H/.sluice")" \
  "train: waiting for go
train: done"
info "PASS"

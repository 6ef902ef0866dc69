#!/usr/bin/env bash
# examples/retrain's container steps run on the real node: sluice's
# Kubernetes executor creates each step's pod, the pod runs the example's own
# scripts with Python and scikit-learn from the node's image (no host
# runner), and the files pass between pods through a shared workspace volume
# (a hostPath PersistentVolume: the node is this host, so sluice sees the
# same directory). The pipeline is the example's, with the image, nodeSelector
# and toleration that put its steps on the node; its deploy and validate
# steps are left out (see docs/testing.md, "The real node").
#
# Usage: real_node_retrain_steps.sh SLUICE_BINARY
. "$(dirname "$0")/lib.sh"
SLUICE=${1:?usage: $0 SLUICE_BINARY}
SRC=$(cd "$(dirname "$0")/../../.." && pwd)
require_real_node
WAIT_RUN=${SLUICE_K8S_RETRAIN_TIMEOUT:-900}
new_namespace check-real-retrain

host_workspace real-retrain

# The example, on the volume (so that {{ pipeline.dir }} names the same files
# in the pods), with the node's image and placement as its defaults.
mkdir -p "$H"
cp -r "$SRC/examples/retrain" "$H/retrain"
cp -r "$SRC/examples/components" "$H/components"  # the components its steps use (../components/)
python3 - "$H/retrain/pipeline.yaml" "$NODE_PYTHON_IMAGE" <<'PY'
import sys, yaml
path, image = sys.argv[1], sys.argv[2]
spec = yaml.safe_load(open(path))
spec["defaults"]["image"] = image
resources = spec["defaults"].setdefault("resources", {})
resources["nodeSelector"] = {"sluice.dev/real-node": "true"}
resources["tolerations"] = [{"key": "sluice.dev/real-node", "operator": "Equal",
                             "value": "true", "effect": "NoSchedule"}]
spec["steps"] = [s for s in spec["steps"] if s["name"] not in ("deploy", "validate")]
yaml.safe_dump(spec, open(path, "w"), sort_keys=False)
PY

host_dir_claim "$PV" sluice-workspace "$H"

info "sluice run --executor kubernetes (real pods on $REAL_NODE)"
rc=0
timeout "$WAIT_RUN" "$SLUICE" run "$H/retrain/pipeline.yaml" --executor kubernetes --namespace "$NS" \
  --workspace-pvc sluice-workspace --workspace-host-dir "$H" --store "$H/.sluice" \
  --run-id real-retrain >"$work/run.log" 2>&1 || rc=$?
cat "$work/run.log"
expect "sluice run exit code" "$rc" 0

"$SLUICE" status real-retrain --store "$H/.sluice" --format json >"$work/status.json"
expect "step phases" "$(python3 - "$work/status.json" <<'PY'
import json, sys
steps = json.load(open(sys.argv[1]))["steps"]
print(" ".join(sorted(f'{s["instance"]}={s["phase"]}' for s in steps)))
PY
)" "evaluate[0]=Succeeded evaluate[1]=Succeeded evaluate[2]=Succeeded prepare=Succeeded register=Succeeded report=Succeeded requests=Succeeded select=Succeeded train[0]=Succeeded train[1]=Succeeded train[2]=Succeeded"

# The model was registered by the image's Python and scikit-learn (the
# host's are others), from a pod.
manifest=$(find "$H/.sluice/runs" -path '*register*' -name manifest.json | head -n 1)
[ -n "$manifest" ] || fail "no registry manifest.json under $H/.sluice/runs"
expect "versions that registered the model" \
  "$(python3 -c 'import json, sys; v = json.load(open(sys.argv[1]))["versions"]; print(v["python"], v["scikit-learn"], v["joblib"])' "$manifest")" \
  "3.11.2 1.2.1 1.2.0"

# Every step's pod ran on the real node.
nodes=$(kubectl get pods -n "$NS" -l sluice.dev/run -o jsonpath='{range .items[*]}{.spec.nodeName}{"\n"}{end}' | sort -u)
expect "nodes the steps' pods ran on" "$nodes" "$REAL_NODE"
info "PASS"

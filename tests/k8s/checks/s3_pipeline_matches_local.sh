#!/usr/bin/env bash
# A pipeline whose steps pass a directory artifact, a file artifact and an
# output parameter runs on the test cluster with its artifacts in S3
# (`--artifacts s3://...`) and NO shared volume, and records exactly the
# digests, params and metrics of a local run of the same YAML.
#
# Each pod runs as a kubelet would run it (tests/k8s/host_runner.py in
# namespace sluice-host-run, where kwok holds pods Running): the init
# container sluice-install runs the freshly built sluice-launcher (the
# image's /usr/local/bin mapped to the build) into the pod's emptyDir, then
# the main container runs the step through the bundled loader; the launcher
# fetches the inputs and the code from the bucket, runs the step and uploads
# its outputs. The S3 server is the fixture "s3" (SeaweedFS).
#
# Usage: s3_pipeline_matches_local.sh SLUICE_BINARY LAUNCHER_BINARY S3_STATE_DIR
. "$(dirname "$0")/lib.sh"
SLUICE=${1:?usage: $0 SLUICE_BINARY LAUNCHER_BINARY S3_STATE_DIR}
LAUNCHER=${2:?usage: $0 SLUICE_BINARY LAUNCHER_BINARY S3_STATE_DIR}
S3_STATE=${3:?usage: $0 SLUICE_BINARY LAUNCHER_BINARY S3_STATE_DIR}
SRC=$(cd "$(dirname "$0")/../../.." && pwd)
if [ ! -f "$S3_STATE/env" ]; then
  echo "no S3 server (the s3 fixture did not start SeaweedFS): skipping"
  exit $SKIP
fi
. "$S3_STATE/env"
export AWS_ACCESS_KEY_ID=$SLUICE_TEST_S3_ACCESS_KEY AWS_SECRET_ACCESS_KEY=$SLUICE_TEST_S3_SECRET_KEY
BUCKET=sluice-test
PREFIX=k8s-$(date +%s)-$RANDOM

NS=sluice-host-run
if kubectl get namespace "$NS" >/dev/null 2>&1; then
  info "deleting namespace $NS left by an earlier run"
  kubectl delete namespace "$NS" --wait=true --timeout=120s >/dev/null
fi
work=$(mktemp -d /tmp/sluice-s3-k8s.XXXXXX)
runner_pid=
on_exit() {
  local rc=$?
  stop_host_runner $rc
  [ $rc -eq 0 ] && rm -rf "$work"
  (exit $rc)
  cleanup_namespace
}
kubectl create namespace "$NS" >/dev/null
wait_for_default_sa
trap on_exit EXIT

# The launcher's credentials, as pods get them: a Secret.
kubectl create secret generic sluice-s3 -n "$NS" \
  --from-literal=AWS_ACCESS_KEY_ID="$AWS_ACCESS_KEY_ID" \
  --from-literal=AWS_SECRET_ACCESS_KEY="$AWS_SECRET_ACCESS_KEY" >/dev/null

python3 "$SRC/tests/k8s/host_runner.py" --namespace "$NS" --workspace "$work/no-shared-volume" \
  --scratch "$work/scratch" --logs "$work/logs" \
  --image-bin "/usr/local/bin=$(dirname "$LAUNCHER")" >"$work/runner.log" 2>&1 &
runner_pid=$!

# compare LOCAL_JSON CLUSTER_JSON CLUSTER_STORE STEP...: the steps' phases,
# outputs (but where their bytes are), params and metrics are the same, and
# no output of the cluster's steps was fetched to this host.
compare() {
  python3 - "$@" <<'PY'
import json, os, sys
def steps(path):
    out = {}
    for s in json.load(open(path))["steps"]:
        # Where the bytes are differs (file:// here, s3:// there); what they are must not.
        for o in s["outputs"]:
            o.pop("uri")
        out[s["instance"]] = s
    return out
local, cluster, store = steps(sys.argv[1]), steps(sys.argv[2]), sys.argv[3]
# The outputs of these steps (and the same bytes under other steps) are read
# by a step that runs on this host.
read_on_host = {o["digest"] for name in os.environ.get("FETCHED_BY_HOST_STEPS", "").split()
                for o in cluster[name]["outputs"]}
ok = True
for name in sys.argv[4:]:
    l, c = local[name], cluster[name]
    same = (l["phase"], l["outputs"], l["output_params"], l["metrics"]) == \
           (c["phase"], c["outputs"], c["output_params"], c["metrics"])
    print(f"{name:<12} {c['phase']:<10} {'same' if same else 'DIFFERENT'}")
    if not same:
        print("  local:  ", l["phase"], l["outputs"], l["output_params"], l["metrics"])
        print("  cluster:", c["phase"], c["outputs"], c["output_params"], c["metrics"])
        ok = False
    for o in c["outputs"]:
        if o["digest"] in read_on_host:
            continue  # a step on this host (deploy) reads these bytes
        hex = o["digest"].split(":")[1]
        if os.path.exists(f"{store}/cas/sha256/{hex[:2]}/{hex}"):
            print(f"  output {o['name']} of {name} was fetched to this host")
            ok = False
sys.exit(0 if ok else 1)
PY
}

# The pipeline: make -> train -> report, with the code in steps/.
P=$work/pipeline
mkdir -p "$P/steps"
cat >"$P/pipeline.yaml" <<'YAML'
apiVersion: sluice.dev/v1
kind: Pipeline
metadata:
  name: s3-handoff
defaults:
  image: python:3.11-slim
steps:
  - name: make
    command: [python3, "{{ pipeline.dir }}/steps/make.py", data]
    outputs:
      artifacts:
        - {name: dataset, path: data, type: dataset}
      params:
        - {name: rows, path: data/rows.txt}
  - name: train
    inputs:
      data: "{{ steps.make.outputs.artifacts.dataset }}"
    command: [python3, "{{ pipeline.dir }}/steps/train.py", "{{ inputs.data }}", "{{ steps.make.outputs.params.rows }}"]
    outputs:
      artifacts:
        - {name: model, path: model.txt, type: model}
      metrics: metrics.json
  - name: report
    inputs:
      model: "{{ steps.train.outputs.artifacts.model }}"
    command: [python3, "{{ pipeline.dir }}/steps/report.py", "{{ inputs.model }}"]
    outputs:
      artifacts:
        - {name: report, path: report.txt}
YAML
cat >"$P/steps/make.py" <<'PY'
import os, sys
out = sys.argv[1]
os.makedirs(os.path.join(out, "parts"), exist_ok=True)
rows = [f"{i},{i * i}" for i in range(10)]
open(os.path.join(out, "parts", "train.csv"), "w").write("\n".join(rows[:8]) + "\n")
open(os.path.join(out, "parts", "test.csv"), "w").write("\n".join(rows[8:]) + "\n")
open(os.path.join(out, "rows.txt"), "w").write(f"{len(rows)}\n")
PY
cat >"$P/steps/train.py" <<'PY'
import json, sys
data, rows = sys.argv[1], int(sys.argv[2])
train = open(f"{data}/parts/train.csv").read().split()
slope = sum(int(r.split(",")[1]) for r in train) / max(1, sum(int(r.split(",")[0]) for r in train))
open("model.txt", "w").write(f"slope={slope:.4f} rows={rows}\n")
json.dump({"slope": round(slope, 4), "rows": rows}, open("metrics.json", "w"))
print("trained", slope)
PY
cat >"$P/steps/report.py" <<'PY'
import sys
open("report.txt", "w").write("model: " + open(sys.argv[1]).read())
PY

info "sluice run (local)"
"$SLUICE" run "$P/pipeline.yaml" --store "$work/local-store" --run-id local -q >"$work/local.log" 2>&1 ||
  { cat "$work/local.log" >&2; fail "local run failed"; }

info "sluice run --executor kubernetes --artifacts s3://$BUCKET/$PREFIX (no workspace volume)"
rc=0
timeout 600 "$SLUICE" run "$P/pipeline.yaml" --executor kubernetes --namespace "$NS" \
  --artifacts "s3://$BUCKET/$PREFIX" --artifacts-endpoint "$SLUICE_TEST_S3_ENDPOINT" \
  --launcher-image sluice-test/sluice:dev --store "$work/cluster-store" --run-id cluster -q \
  >"$work/cluster.log" 2>&1 || rc=$?
if [ $rc -ne 0 ]; then
  cat "$work/cluster.log" >&2
  fail "cluster run exited $rc"
fi

# The same outputs, digest for digest, and the same params and metrics.
"$SLUICE" status local --store "$work/local-store" --format json >"$work/local.json"
"$SLUICE" status cluster --store "$work/cluster-store" --format json >"$work/cluster.json"
compare "$work/local.json" "$work/cluster.json" "$work/cluster-store" make train report || fail "the cluster run recorded other outputs"
# The pods ran through the launcher: its init container ran in every pod.
for step in make train report; do
  ls "$work"/logs/cluster-"$step"-a1*.sluice-install.log >/dev/null 2>&1 ||
    fail "the pod of $step ran no sluice-install init container"
done

info "all steps on the cluster recorded the local run's digests"

# A declared output the step did not write fails it with the words of a
# local run (the launcher's result says why).
cat >"$P/broken.yaml" <<'YAML'
apiVersion: sluice.dev/v1
kind: Pipeline
metadata:
  name: s3-broken
defaults:
  image: python:3.11-slim
steps:
  - name: forgets
    command: [python3, -c, "print('no model written')"]
    outputs:
      artifacts:
        - {name: model, path: model.pkl, type: model}
YAML
"$SLUICE" run "$P/broken.yaml" --store "$work/local-store" --run-id broken-local -q >/dev/null 2>&1 && fail "local broken run succeeded"
timeout 300 "$SLUICE" run "$P/broken.yaml" --executor kubernetes --namespace "$NS" \
  --artifacts "s3://$BUCKET/$PREFIX" --artifacts-endpoint "$SLUICE_TEST_S3_ENDPOINT" \
  --launcher-image sluice-test/sluice:dev --store "$work/cluster-store" --run-id broken-cluster -q \
  >"$work/broken.log" 2>&1 && fail "cluster broken run succeeded"
why() { "$SLUICE" status "$1" --store "$2" --format json | python3 -c 'import json, sys; print(json.load(sys.stdin)["steps"][0]["message"])'; }
expect "the missing output's message" "$(why broken-cluster "$work/cluster-store")" \
  "step 'forgets' declared output artifact 'model' at model.pkl, but the file does not exist after the step succeeded"
expect "the same message as locally" "$(why broken-cluster "$work/cluster-store")" "$(why broken-local "$work/local-store")"

# examples/retrain up to `register` (scikit-learn in the steps), the same
# way, and on the cluster also its `deploy`: the Deployment's init container
# fetches the selected model from the bucket by digest. Traffic validation
# needs a model server that answers, which no pod of this cluster runs, so it
# and the finally step are left out of a copy of the pipeline.
if ! python3 -c 'import sklearn' 2>/dev/null; then
  info "python3 cannot import sklearn (pip install -r examples/requirements.txt): examples/retrain not run"
  exit 0
fi
cp -r "$SRC/examples/retrain" "$work/retrain"
cp -r "$SRC/examples/components" "$work/components"  # the components its steps use (../components/)
python3 - "$work/retrain/pipeline.yaml" "$work/retrain/until-register.yaml" "$work/retrain/until-deploy.yaml" <<'PY'
import sys, yaml
p = yaml.safe_load(open(sys.argv[1]))
p.pop("finally", None)
steps = p["steps"]
p["steps"] = [s for s in steps if s.get("type", "container") == "container"]
yaml.safe_dump(p, open(sys.argv[2], "w"), sort_keys=False)
p["steps"] = [s for s in steps if s.get("type", "container") in ("container", "deploy")]
yaml.safe_dump(p, open(sys.argv[3], "w"), sort_keys=False)
PY
RETRAIN=$work/retrain/until-register.yaml
info "examples/retrain until register: local"
"$SLUICE" run "$RETRAIN" --store "$work/retrain-local" --run-id retrain-local -q >"$work/retrain-local.log" 2>&1 ||
  { cat "$work/retrain-local.log" >&2; fail "local retrain failed"; }
info "examples/retrain until register: --executor kubernetes --artifacts s3://$BUCKET/$PREFIX"
timeout 900 "$SLUICE" run "$work/retrain/until-deploy.yaml" --executor kubernetes --namespace "$NS" \
  --artifacts "s3://$BUCKET/$PREFIX" --artifacts-endpoint "$SLUICE_TEST_S3_ENDPOINT" \
  --launcher-image sluice-test/sluice:dev --store "$work/retrain-cluster" --run-id retrain-cluster -q \
  >"$work/retrain-cluster.log" 2>&1 || { cat "$work/retrain-cluster.log" >&2; fail "cluster retrain failed"; }
"$SLUICE" status retrain-local --store "$work/retrain-local" --format json >"$work/retrain-local.json"
"$SLUICE" status retrain-cluster --store "$work/retrain-cluster" --format json >"$work/retrain-cluster.json"
FETCHED_BY_HOST_STEPS=select compare "$work/retrain-local.json" "$work/retrain-cluster.json" "$work/retrain-cluster" \
  prepare 'train[0]' 'train[1]' 'train[2]' 'evaluate[0]' 'evaluate[1]' 'evaluate[2]' select register requests ||
  fail "the cluster run of examples/retrain recorded other outputs"
info "examples/retrain on the cluster recorded the local run's digests up to register"
model=$(python3 -c 'import json,sys
for s in json.load(open(sys.argv[1]))["steps"]:
    if s["instance"] == "select":
        print([o["digest"] for o in s["outputs"] if o["name"] == "best_model"][0])
    if s["instance"] == "deploy" and s["phase"] != "Succeeded":
        sys.exit("deploy: " + s["phase"] + ": " + s.get("message", ""))' "$work/retrain-cluster.json") ||
  fail "the deploy step did not succeed"
fetch=$(kubectl get deployment breast-cancer-stable -n "$NS" -o jsonpath='{.spec.template.spec.initContainers[0].command}')
expect "the model fetch of the deployed model" \
  "$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])[:3])' "$fetch")" \
  "['/usr/local/bin/sluice-launcher', 'fetch', '$model']"
expect "the model fetch's volumes (no shared volume)" \
  "$(kubectl get deployment breast-cancer-stable -n "$NS" -o jsonpath='{.spec.template.spec.volumes[*].name}')" "model code"
info "deploy on the cluster fetches the selected model from the bucket by digest"
# The server's code is the run's code archive, the one the steps' launchers
# fetched, and serve.command names the pod's copy of it.
code=$(kubectl get pods -n "$NS" -l sluice.dev/run=retrain-cluster -o json | python3 -c 'import json, sys
for pod in json.load(sys.stdin)["items"]:
    for env in pod["spec"]["containers"][0].get("env", []):
        if env["name"] == "SLUICE_LAUNCH":
            print(json.loads(env["value"])["code"]["digest"]); sys.exit()')
[ -n "$code" ] || fail "no step pod of run retrain-cluster has SLUICE_LAUNCH"
expect "the code fetch of the serving pods" \
  "$(kubectl get deployment breast-cancer-stable -n "$NS" -o jsonpath='{.spec.template.spec.initContainers[1].command}')" \
  "[\"/usr/local/bin/sluice-launcher\",\"fetch\",\"$code\",\"/sluice/code\"]"
expect "the serving command's script" \
  "$(kubectl get deployment breast-cancer-stable -n "$NS" -o jsonpath='{.spec.template.spec.containers[0].args[1]}')" \
  /sluice/code/serving/serve.py
info "deploy on the cluster ships the serving code from the bucket: the run's code archive"

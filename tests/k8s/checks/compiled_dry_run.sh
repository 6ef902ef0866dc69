#!/usr/bin/env bash
# Every example pipeline and every valid compile golden input, compiled with
# `sluice compile --target argo` and with `--target manifests`, passes a
# server-side dry-run (dryRun=All, fieldValidation=Strict) on the test
# cluster, whose Argo CRDs carry their full OpenAPI schema
# (SLUICE_K8S_ARGO_CRDS=full, the default of `cluster up`): the API server
# checks every field of the Workflows, WorkflowTemplates, CronWorkflows, Jobs,
# TFJobs, PyTorchJobs, and the deploy steps' Deployments and Services, and
# rejects unknown ones.
#
# Usage: compiled_dry_run.sh SLUICE_BINARY
. "$(dirname "$0")/lib.sh"
SLUICE=${1:?usage: $0 SLUICE_BINARY}
SRC=$(cd "$(dirname "$0")/../../.." && pwd)

kubectl get crd workflows.argoproj.io >/dev/null 2>&1 ||
  fail "the cluster has no Argo CRDs (tests/k8s/cluster up installs them)"
if [ -z "$(kubectl get crd workflows.argoproj.io -o jsonpath='{.spec.versions[0].schema.openAPIV3Schema.properties.spec.properties.templates}')" ]; then
  fail "the cluster's Argo CRDs have no schema (SLUICE_K8S_ARGO_CRDS=minimal?): a dry-run would check nothing; restart it with the full set"
fi
new_namespace check-compile

# Deploy steps compile to the serving operator's Deployments and Services in
# both targets; traffic-validation steps, controllers on the host, create no
# object with --target manifests and are named in annotation
# sluice.dev/host-steps (checked for retrain below).

# A pipeline with a `type: resource` step is left out: its objects are of
# kinds (MPIJob, ...) whose CRDs the test cluster does not install. So is one
# with `minSuccessRatio` (examples/subpipelines): it has no Argo form and
# `compile --target argo` refuses it (ArgoCompileTest.RejectsASubPipelineRunWithForeach);
# sub-pipelines that compile are in tests/compile/testdata (subpipe.yaml;
# subpipe_eval.yaml is the sub-pipeline it runs, not a pipeline run alone, and
# subpipe_foreach.yaml is the refused group fan-out; likewise the component
# graph compgraph_eval.yaml that compgraph.yaml uses, and the refused
# compgraph_foreach.yaml).
inputs=()
while IFS= read -r f; do
  grep -q -e '^ *type: resource$' -e '^ *minSuccessRatio:' "$SRC/$f" || inputs+=("$f")
done < <(
  cd "$SRC" && { find examples -name 'pipeline*.yaml'; ls tests/compile/testdata/*.yaml; } |
    grep -v -e '\.argo\.yaml$' -e '/bad\.yaml$' -e '/\(subpipe\|compgraph\)_\(eval\|foreach\)\.yaml$' | sort)
((${#inputs[@]} >= 4)) || fail "found only ${#inputs[@]} pipelines under examples/ and tests/compile/testdata"

# dry_run WHAT FILE: server-side dry-run of every object in FILE; counts them.
checked=0
dry_run() {
  local out n
  if ! out=$(kubectl create --dry-run=server --validate=strict -n "$NS" -f "$2" -o name 2>&1); then
    echo "$out" >&2
    fail "$1: server-side dry-run rejected the compiled objects ($2)"
  fi
  n=$(echo "$out" | grep -c /) || true
  ((n > 0)) || fail "$1: no objects in $2"
  checked=$((checked + n))
  info "ok: $1: $(echo "$out" | sed 's#/.*##' | sort | uniq -c | awk '{printf "%s %s ", $1, $2}')"
}

tmp=$(mktemp -d)
on_exit() {
  local rc=$?
  rm -rf "$tmp"
  (exit $rc)
  cleanup_namespace
}
trap on_exit EXIT
for f in "${inputs[@]}"; do
  base=$(echo "$f" | tr / _)
  # shellcheck disable=SC2046
  "$SLUICE" compile "$SRC/$f" --target argo --namespace "$NS" --sluice-image registry.example/sluice:test \
    -o "$tmp/$base.argo.yaml" 2>"$tmp/err" || { cat "$tmp/err" >&2; fail "compile --target argo $f"; }
  dry_run "$f (argo)" "$tmp/$base.argo.yaml"
  "$SLUICE" compile "$SRC/$f" --target manifests --namespace "$NS" \
    -o "$tmp/$base.manifests.yaml" 2>"$tmp/err" || { cat "$tmp/err" >&2; fail "compile --target manifests $f"; }
  dry_run "$f (manifests)" "$tmp/$base.manifests.yaml"
done

# The retrain example compiled whole: its deploy and validate steps are in
# the Workflow (that passed the dry-run above), none left out.
wf="$tmp/examples_retrain_pipeline.yaml.argo.yaml"
! grep -q 'sluice.dev/excluded-steps' "$wf" || fail "retrain compiled to Argo left steps out"
for t in deploy-canary deploy-stable deploy-service validate-validate-1 validate-promote validate-rollback; do
  grep -q "template: $t\$" "$wf" || fail "retrain compiled to Argo has no template $t"
done
info "ok: retrain's deploy and staged rollout compiled to Argo resource and container templates"
# Retrain compiled to manifests: its deploy's canary Deployment and two
# Services (which passed the dry-run above), the validation step named as a
# host-side step, nothing excluded.
mf="$tmp/examples_retrain_pipeline.yaml.manifests.yaml"
! grep -q 'sluice.dev/excluded-steps' "$mf" || fail "retrain compiled to manifests left steps out"
for o in "Deployment breast-cancer-canary" "Service breast-cancer" "Service breast-cancer-canary"; do
  python3 - "$mf" "$o" <<'PY' || fail "retrain compiled to manifests has no $o"
import sys, yaml
kind, name = sys.argv[2].split()
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
sys.exit(0 if any(d["kind"] == kind and d["metadata"]["name"] == name for d in docs) else 1)
PY
done
grep -q 'sluice.dev/host-steps: validate$' "$mf" || fail "retrain compiled to manifests does not name its host-side validate step"
info "ok: retrain's deploy compiled to manifests (canary Deployment, 2 Services), validate named as a host-side step"
# tests/compile/testdata/s3.yaml (artifacts: s3://...) compiled to Argo S3
# artifacts: no workspace claim, outputs with an s3 location, inputs from the
# upstream task (all of which passed the dry-run above).
s3wf="$tmp/tests_compile_testdata_s3.yaml.argo.yaml"
! grep -q persistentVolumeClaim "$s3wf" || fail "s3.yaml compiled to Argo still mounts the workspace claim"
grep -q 'from: "{{tasks.prep.outputs.artifacts.data}}"' "$s3wf" || fail "s3.yaml compiled to Argo has no input artifact from prep"
grep -q 'accessKeySecret:' "$s3wf" || fail "s3.yaml compiled to Argo has no S3 output artifact"
info "ok: s3.yaml compiled to Argo S3 artifacts, no workspace volume"
# The objects those resource templates apply (the serving operator's
# Deployment and Services), with run-time values filled in as Argo would,
# pass the same strict dry-run.
python3 - "$wf" "$NS" "$tmp/patches" >"$tmp/applied.yaml" <<'PY'
import re, sys, yaml
wf = yaml.safe_load(open(sys.argv[1]))
values = {"a1": "breast-cancer", "model-digest": "0" * 64, "model-path": "runs/r/select/p/best/model.pkl",
          "model-name": "model.pkl", "stable-before": "2"}
values.update({"deploy-" + k: v for k, v in list(values.items())})  # a validation's copy of the deploy's
def fill(text):
    text = re.sub(r"\{\{=asInt\(inputs\.parameters\['([-\w]+)'\]\)\}\}", lambda m: values[m.group(1)], text)
    text = re.sub(r"\{\{inputs\.parameters\.([-\w]+)\}\}", lambda m: values[m.group(1)], text)
    return text.replace("{{workflow.name}}", "retrain-x7k2p").replace("{{workflow.namespace}}", sys.argv[2])
import os
os.makedirs(sys.argv[3], exist_ok=True)
docs = []
for t in wf["spec"]["templates"]:
    r = t.get("resource")
    if r and r["action"] == "apply" and t["name"].startswith("deploy-"):
        docs.append(fill(r["manifest"]))
    if r and r["action"] == "patch":
        open(os.path.join(sys.argv[3], t["name"] + ".yaml"), "w").write(fill(r["manifest"]))
print("---\n".join(docs))
PY
dry_run "retrain's deploy objects" "$tmp/applied.yaml"
# Its merge patches (scale, shift, promote, rollback), on those objects made
# for real: the API server checks each patched object.
kubectl create -n "$NS" -f "$tmp/applied.yaml" >/dev/null || fail "cannot create retrain's deploy objects"
for p in "$tmp"/patches/*.yaml; do
  kubectl patch -n "$NS" -f "$p" --type merge --patch-file "$p" --dry-run=server -o name >/dev/null ||
    fail "retrain's merge patch $(basename "$p" .yaml) was rejected"
done
info "ok: retrain's $(ls "$tmp"/patches | wc -l) merge patches (scale, shifts, promote, rollback) pass dryRun=All"

# With SLUICE_ARGO_LINT (a binary from tests/compile/argo_lint/build.sh):
# Argo's own validation of every compiled Workflow, as the controller runs it
# at submission, and its parse of every resource condition.
if [ -n "${SLUICE_ARGO_LINT:-}" ]; then
  "$SLUICE_ARGO_LINT" "$tmp"/*.argo.yaml || fail "Argo's validation rejected a compiled Workflow"
fi

# The schema is really checked: a field Argo does not know is rejected.
sed 's/^  entrypoint: main$/  entrypoint: main\n  entryPoint: typo/' \
  "$tmp/examples_retrain_pipeline.yaml.argo.yaml" >"$tmp/typo.yaml"
grep -q entryPoint "$tmp/typo.yaml" || fail "could not plant the unknown field"
if err=$(kubectl create --dry-run=server --validate=strict -n "$NS" -f "$tmp/typo.yaml" 2>&1); then
  fail "a Workflow with unknown field spec.entryPoint passed the dry-run: the CRD schema is not enforced"
fi
case "$err" in
  *entryPoint*) info "ok: unknown field rejected: $err" ;;
  *) fail "unexpected error for the unknown field: $err" ;;
esac
info "PASS: $checked compiled objects from ${#inputs[@]} pipelines passed dryRun=All"

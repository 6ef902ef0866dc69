#!/usr/bin/env bash
# examples/retrain end to end on the real node: the container steps' pods
# run the example's scripts in the node's Python image, the deploy step
# rolls the model out as a Deployment whose pods serve it with the example's
# serving/serve.py, and the validate step sends the held-out requests through
# the Service (by its ClusterIP: validation runs on the host, whose resolver
# knows no cluster names, see docs/testing.md) and promotes it.
#
# What the example needs changed for this cluster, in a copy of it: the
# image (the node's), the model fetch's image (the node has no busybox), the
# serving code passed inline, base64-encoded (the server container sees no
# host path), the
# server listening on all addresses, and validation's endpoint. The
# namespace puts every pod on the real node (PodNodeSelector and
# PodTolerationRestriction annotations), the deploy's included.
#
# Usage: real_node_retrain_loop.sh SLUICE_BINARY
. "$(dirname "$0")/lib.sh"
SLUICE=${1:?usage: $0 SLUICE_BINARY}
SRC=$(cd "$(dirname "$0")/../../.." && pwd)
require_real_node
WAIT_RUN=${SLUICE_K8S_RETRAIN_TIMEOUT:-900}
new_namespace check-real-loop
kubectl annotate namespace "$NS" >/dev/null \
  scheduler.alpha.kubernetes.io/node-selector=sluice.dev/real-node=true \
  'scheduler.alpha.kubernetes.io/defaultTolerations=[{"key": "sluice.dev/real-node", "operator": "Equal", "value": "true", "effect": "NoSchedule"}]'

host_workspace real-loop

# A Service the deploy step will patch, made first so that its ClusterIP is
# known to the validate step: breast-cancer (both tracks, the first
# deployment's target) or breast-cancer-canary (the canary alone, what a
# canary's validation measures). Prints the ClusterIP.
service_ip() {
  local name=$1 selector="{sluice.dev/service: breast-cancer}"
  [ "$name" = breast-cancer-canary ] && selector="{sluice.dev/service: breast-cancer, sluice.dev/track: canary}"
  kubectl apply -n "$NS" -f - >/dev/null <<YAML
apiVersion: v1
kind: Service
metadata: {name: $name}
spec:
  selector: $selector
  ports: [{name: http, port: 80, targetPort: 8080}]
YAML
  jp "service/$name" '{.spec.clusterIP}'
}

# node_pipeline FILE ENDPOINT: the copy of the example's FILE for this
# cluster (see the top), as FILE-node.yaml beside it; prints its path.
node_pipeline() {
  python3 - "$H/retrain/$1" "$NODE_PYTHON_IMAGE" "$2" <<'PY'
import base64, sys, yaml
path, image, endpoint = sys.argv[1:4]
spec = yaml.safe_load(open(path))
spec["defaults"]["image"] = image
# (base64: the file's f-strings hold '{{', which would read as a template.)
serve_py = base64.b64encode(open(path.rsplit("/", 1)[0] + "/serving/serve.py", "rb").read()).decode()
for step in spec["steps"]:
    if step["name"] == "deploy":
        step["deploy"]["serve"]["command"] = [
            "python3", "-c", f"import base64; exec(base64.b64decode('{serve_py}'))",
            "--model", "${model}", "--port", "${port}", "--host", "0.0.0.0"]
        step["deploy"]["kubernetes"] = {"fetch_image": image}
    if step["name"] == "validate":
        step["validation"]["endpoint"] = endpoint
out = path[:-len(".yaml")] + "-node.yaml"
yaml.safe_dump(spec, open(out, "w"), sort_keys=False)
print(out)
PY
}

mkdir -p "$H"
cp -r "$SRC/examples/retrain" "$H/retrain"
cp -r "$SRC/examples/components" "$H/components"  # the components its steps use (../components/)
host_dir_claim "$PV" sluice-artifacts "$H"

# run_pipeline RUN_ID FILE [ARGS...]: sluice runs FILE on the cluster; sets rc.
run_pipeline() {
  local id=$1 file=$2; shift 2
  info "sluice run $(basename "$file") $* --executor kubernetes (run $id)"
  rc=0
  timeout "$WAIT_RUN" "$SLUICE" run "$file" "$@" --executor kubernetes --namespace "$NS" \
    --workspace-pvc sluice-artifacts --workspace-host-dir "$H" --store "$H/.sluice" \
    --run-id "$id" >"$work/$id.log" 2>&1 || rc=$?
  cat "$work/$id.log"
}

# validate_metrics RUN_ID KEY...: those metrics of the run's validate step.
validate_metrics() {
  local id=$1; shift
  "$SLUICE" status "$id" --store "$H/.sluice" --format json |
    python3 -c 'import json, sys
m = [s for s in json.load(sys.stdin)["steps"] if s["instance"] == "validate"][0]["metrics"]
print(" ".join(f"{k}={m[k]:g}" for k in sys.argv[1:]))' "$@"
}

# Where the steps' and the servers' pods ran.
pods_nodes() { kubectl get pods -n "$NS" -o jsonpath='{range .items[*]}{.spec.nodeName}{"\n"}{end}' | sort -u; }

# 1. The first deployment: every step in a pod, the model served as the
# stable track, validated at 100% through the Service.
run_pipeline real-a "$(node_pipeline pipeline.yaml "http://$(service_ip breast-cancer)")"
expect "run real-a exit code" "$rc" 0
expect "run real-a validation" "$(validate_metrics real-a requests errors stages_passed promoted rolled_back)" \
  "requests=143 errors=0 stages_passed=1 promoted=0 rolled_back=0"
digest_a=$(jp deployment/breast-cancer-stable '{.metadata.annotations.sluice\.dev/model-digest}')
expect "stable Deployment's version" "$(jp deployment/breast-cancer-stable '{.metadata.labels.sluice\.dev/version}')" real-a
expect "stable Deployment's available replicas" "$(jp deployment/breast-cancer-stable '{.status.availableReplicas}')" 2

# 2. A new model (another seed) as a canary: validated at 10%, 50% and 100%
# of the traffic on the canary's own Service, then promoted.
run_pipeline real-b "$(node_pipeline pipeline.yaml "http://$(service_ip breast-cancer-canary)")" -p seed=7
expect "run real-b exit code" "$rc" 0
expect "run real-b validation" "$(validate_metrics real-b stages stages_passed promoted rolled_back traffic_percent)" \
  "stages=3 stages_passed=3 promoted=1 rolled_back=0 traffic_percent=100"
digest_b=$(jp deployment/breast-cancer-stable '{.metadata.annotations.sluice\.dev/model-digest}')
[ "$digest_b" != "$digest_a" ] || fail "the promoted model has the first one's digest $digest_a"
expect "stable Deployment's version after the promotion" \
  "$(jp deployment/breast-cancer-stable '{.metadata.labels.sluice\.dev/version}')" real-b
expect "canary Deployment after the promotion" "$(kubectl get deployment -n "$NS" breast-cancer-canary -o name --ignore-not-found)" ""
before=$(kubectl get deployment -n "$NS" breast-cancer-stable -o jsonpath='{.spec}')
# The promoted canary's pods take up to their grace period (30 s: serve.py
# does not handle SIGTERM) to go. Until then they match the next canary's
# Service (sluice.dev/track=canary), and kube-proxy routes to terminating
# endpoints while the new canary's ready one is not yet in its rules: the
# next validation's first stages then measured this good model, not the
# candidate (seen once: stages 1 and 2 passed at accuracy 0.979, stage 3
# failed at 0.3706). So the next canary starts once they are gone.
kubectl wait -n "$NS" --for=delete pod -l sluice.dev/track=canary --timeout="${WAIT}s" >/dev/null

# 3. A worse candidate (pipeline-regression.yaml serves an always-0
# classifier): it fails min_accuracy at the first stage and is rolled back to
# exactly the Deployment that served before.
run_pipeline real-c "$(node_pipeline pipeline-regression.yaml "http://$(service_ip breast-cancer-canary)")" -p seed=7
expect "run real-c exit code" "$rc" 1
log=$("$SLUICE" logs real-c validate --store "$H/.sluice")
for want in "failed at stage 1/3 (10% traffic): accuracy 0.3706 (143 labelled) < min_accuracy 0.9" \
            "Rolled back: service breast-cancer serves version real-b ($digest_b) at 100% again"; do
  case "$log" in
    *"$want"*) info "ok: run real-c's validate log says: $want" ;;
    *) fail "run real-c's validate log does not say '$want': $log" ;;
  esac
done
expect "stable Deployment's spec after the rollback" \
  "$(kubectl get deployment -n "$NS" breast-cancer-stable -o jsonpath='{.spec}')" "$before"
expect "stable Deployment's model after the rollback" \
  "$(jp deployment/breast-cancer-stable '{.metadata.annotations.sluice\.dev/model-digest}')" "$digest_b"

# The lineage names the model that answered the traffic.
expect "lineage --deployed breast-cancer: model" \
  "$("$SLUICE" lineage --deployed breast-cancer --store "$H/.sluice" --format json |
     python3 -c 'import json, sys; d = json.load(sys.stdin)["deployment"]; print(d["model_digest"], d["executor"], d["namespace"])')" \
  "$digest_b kubernetes $NS"
expect "nodes every pod ran on" "$(pods_nodes)" "$REAL_NODE"
info "PASS"

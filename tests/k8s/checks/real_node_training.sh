#!/usr/bin/env bash
# A pytorchjob or a tfjob step whose replicas exchange data on the real node,
# run by `sluice run --executor kubernetes` through the training-operator.
# The replicas find each other by the names the operator gives them
# (MASTER_ADDR; TF_CONFIG's cluster spec): its headless Services, resolved by
# the cluster DNS (CoreDNS, tests/k8s/lib/node.sh). The scripts
# (checks/training/) use only Python's standard library, from the node's
# image: pytorchjob: every worker sends its rank and a number to rank 0 at
# MASTER_ADDR:MASTER_PORT, rank 0 sums WORLD_SIZE contributions and sends the
# total back; tfjob: the chief connects to every worker address in TF_CONFIG,
# gathers their numbers and sends the total back. Every replica exits 0 only
# if the total is right; rank 0 / the chief only when every other replica
# has logged the total and agreed (so their lines are in the copied log). The check reads rank 0's / the chief's lines in the
# step's log as sluice copied it into the store (`sluice logs`), and that
# every replica's pod ran on the node and succeeded.
#
# Usage: real_node_training.sh SLUICE_BINARY pytorchjob|tfjob
. "$(dirname "$0")/lib.sh"
SLUICE=${1:?usage: $0 SLUICE_BINARY pytorchjob|tfjob}
KIND=${2:?usage: $0 SLUICE_BINARY pytorchjob|tfjob}
require_real_node
case "$KIND" in
  pytorchjob) script=torch_exchange.py replicas='{Master: {replicas: 1}, Worker: {replicas: 2}}'
    leader=master-0 want="rank 0 of 3: listening on MASTER_PORT
rank 0: rank 1 sent 20
rank 0: rank 2 sent 30
rank 0: sum 60 = 10 + 20 + 30 over world size 3, as expected
rank 0: 2 of 2 ranks agree"
    others="worker-0:rank 1: sent 20, sum 60 from rank 0, as expected
worker-1:rank 2: sent 30, sum 60 from rank 0, as expected" ;;
  tfjob) script=tf_exchange.py replicas='{Chief: {replicas: 1}, Worker: {replicas: 2}}'
    leader=chief-0 want="chief: 2 workers in TF_CONFIG
chief: worker 0 (@JOB@-worker-0.@NS@.svc) sent 7
chief: worker 1 (@JOB@-worker-1.@NS@.svc) sent 14
chief: sum 21 = 7 + 14 over 2 workers, as expected
chief: 2 of 2 workers agree"
    others="worker-0:worker 0: sent 7, sum 21 from the chief, as expected
worker-1:worker 1: sent 14, sum 21 from the chief, as expected" ;;
  *) fail "unknown kind $KIND: expected pytorchjob or tfjob" ;;
esac
new_namespace "check-real-$KIND"
host_workspace "real-$KIND"

# The pipeline and the script on the workspace volume ({{ pipeline.dir }}
# names the same files in the pods).
mkdir -p "$H/pipeline"
cp "$(dirname "$0")/training/$script" "$(dirname "$0")/training/peer.py" "$H/pipeline/"
cat >"$H/pipeline/pipeline.yaml" <<YAML
apiVersion: sluice.dev/v1
kind: Pipeline
metadata:
  name: real-node-$KIND
defaults:
  image: $NODE_PYTHON_IMAGE
  timeout: 5m
  resources:
    nodeSelector: {sluice.dev/real-node: "true"}
    tolerations:
    - {key: sluice.dev/real-node, operator: Equal, value: "true", effect: NoSchedule}
steps:
  - name: exchange
    type: $KIND
    command: [python3, "{{ pipeline.dir }}/$script"]
    $KIND:
      replicas: $replicas
YAML
host_dir_claim "$PV" sluice-workspace "$H"

info "sluice run --executor kubernetes ($KIND, real pods on $REAL_NODE)"
rc=0
timeout 600 "$SLUICE" run "$H/pipeline/pipeline.yaml" --executor kubernetes --namespace "$NS" \
  --workspace-pvc sluice-workspace --workspace-host-dir "$H" --store "$H/.sluice" \
  --run-id "real-$KIND" >"$work/run.log" 2>&1 || rc=$?
cat "$work/run.log"
"$SLUICE" logs "real-$KIND" exchange --store "$H/.sluice" >"$work/exchange.log" 2>&1 || true
echo "----- sluice logs real-$KIND exchange -----"
cat "$work/exchange.log"
expect "sluice run exit code" "$rc" 0
expect "step phase" "$("$SLUICE" status "real-$KIND" --store "$H/.sluice" --format json |
  python3 -c 'import json, sys; print(" ".join(s["instance"] + "=" + s["phase"] for s in json.load(sys.stdin)["steps"]))')" \
  "exchange=Succeeded"

# The training-operator's job, and each replica's pod: on the node, Succeeded.
job=$(kubectl get "$KIND" -n "$NS" -o jsonpath='{.items[*].metadata.name}')
[ -n "$job" ] || fail "no $KIND in $NS"
sel=training.kubeflow.org/job-name=$job
pods() { kubectl get pods -n "$NS" -l "$sel" -o jsonpath="$1"; }
deadline=$((SECONDS + WAIT))
until [ "$(pods '{range .items[*]}{.status.phase}{"\n"}{end}' | sort -u)" = Succeeded ]; do
  ((SECONDS < deadline)) || fail "replica pods not all Succeeded within ${WAIT}s: $(pods '{.items[*].status.phase}')"
  sleep 0.5
done
expect "replica pods" "$(pods '{range .items[*]}{.metadata.name}{"\n"}{end}' | sed "s/^$job-//" | sort | tr '\n' ' ')" \
  "$leader worker-0 worker-1 "
expect "nodes the replica pods ran on" "$(pods '{range .items[*]}{.spec.nodeName}{"\n"}{end}' | sort -u)" "$REAL_NODE"

# The step's log in the store: each replica's pod under its own header.
section() { awk -v h="==> pod $job-$1 <==" '$0 == h { on = 1; next } /^==> pod / { on = 0 } on' "$work/exchange.log"; }
want=${want//@JOB@/$job}
expect "$leader's log in the store" "$(section "$leader")" "${want//@NS@/$NS}"
while IFS=: read -r pod line; do
  section "$pod" | grep -qxF "$line" || { cat "$work/exchange.log"; fail "$pod's log has no line '$line'"; }
  info "ok: $pod's log: $line"
done <<<"$others"
info "PASS"

# shellcheck shell=bash
# Kueue on the test cluster (`cluster up --with-kueue`): its manager runs as a
# host process like the other components, its webhooks are called by the API
# server at https://127.0.0.1:$KUEUE_WEBHOOK_PORT with a serving certificate
# signed by the cluster's CA (made here, no cert-manager and no Kueue
# internal certificate rotation), and the queues sluice's tests use are
# created once it is ready:
#
#   ResourceFlavor  default-flavor
#   ClusterQueue    gpu: cpu 32, memory 128Gi, nvidia.com/gpu 2 (default-flavor)
#   Namespaces      team-a, team-b (label sluice.dev/kueue=enabled), each with
#                   a LocalQueue of the same name pointing at gpu
#   WorkloadPriorityClasses sluice-priority-1, -10, -100 (value 1, 10, 100),
#                   the classes steps with `priority: N` ask for
#
# Only namespaces labelled sluice.dev/kueue=enabled are managed (Kueue's
# managedJobsNamespaceSelector, and the namespaceSelector of the Job and Pod
# webhooks), so the Jobs and pods of every other test never go through Kueue.
# Kueue's visibility API server is off (VisibilityOnDemand=false): it is an
# aggregated API the API server reaches through a Service, which this
# cluster has no way to route to a host process.
# Sourced by tests/k8s/cluster, which defines kc, start, wait_component,
# STATE, PKI, LOGS, PORT_BASE and ADMIN_KUBECONFIG.

KUEUE_WEBHOOK_PORT=$((PORT_BASE + 15))
KUEUE_PROBE_PORT=$((PORT_BASE + 16))
KUEUE_METRICS_PORT=$((PORT_BASE + 17))
KUEUE_BIN=$(component_dir kueue "$KUEUE_VERSION")/bin
KUEUE_CERT_DIR=$STATE/kueue-certs

kueue_ports() { echo "$KUEUE_WEBHOOK_PORT $KUEUE_PROBE_PORT $KUEUE_METRICS_PORT"; }

# The webhook serving certificate (tls.crt/tls.key, the names controller-
# runtime reads), for 127.0.0.1, signed by the cluster's CA.
make_kueue_cert() {
  [ -f "$KUEUE_CERT_DIR/tls.crt" ] && [ -f "$KUEUE_CERT_DIR/tls.key" ] && return 0
  mkdir -p "$KUEUE_CERT_DIR"
  openssl genrsa -out "$KUEUE_CERT_DIR/tls.key" 2048 2>/dev/null
  printf '%s\n' "basicConstraints=CA:FALSE" "keyUsage=critical,digitalSignature,keyEncipherment" \
    "extendedKeyUsage=serverAuth" "subjectAltName=IP:127.0.0.1,DNS:localhost" >"$KUEUE_CERT_DIR/ext"
  openssl req -new -key "$KUEUE_CERT_DIR/tls.key" -subj "/CN=kueue-webhook" \
    -out "$KUEUE_CERT_DIR/tls.csr" 2>/dev/null
  openssl x509 -req -in "$KUEUE_CERT_DIR/tls.csr" -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" \
    -CAcreateserial -days 3650 -sha256 -extfile "$KUEUE_CERT_DIR/ext" \
    -out "$KUEUE_CERT_DIR/tls.crt" 2>/dev/null
  chmod 600 "$KUEUE_CERT_DIR/tls.key"
}

# Without internal certificate management the manager reads its metrics
# server's certificate from a fixed directory (cmd/kueue/main.go), shared by
# every cluster on the machine: a copy of this cluster's webhook certificate
# is put there when none is, and files there are only ever replaced
# atomically, never removed (nothing scrapes the metrics over TLS here).
KUEUE_METRICS_CERT_DIR=/etc/kueue/metrics/certs
kueue_metrics_cert() {
  [ -f "$KUEUE_METRICS_CERT_DIR/tls.crt" ] && [ -f "$KUEUE_METRICS_CERT_DIR/tls.key" ] && return 0
  mkdir -p "$KUEUE_METRICS_CERT_DIR" ||
    die "cannot create $KUEUE_METRICS_CERT_DIR, where Kueue's manager reads its metrics certificate (run as root)"
  cp "$KUEUE_CERT_DIR/tls.key" "$KUEUE_METRICS_CERT_DIR/tls.key.$$"
  cp "$KUEUE_CERT_DIR/tls.crt" "$KUEUE_METRICS_CERT_DIR/tls.crt.$$"
  mv "$KUEUE_METRICS_CERT_DIR/tls.key.$$" "$KUEUE_METRICS_CERT_DIR/tls.key"
  mv "$KUEUE_METRICS_CERT_DIR/tls.crt.$$" "$KUEUE_METRICS_CERT_DIR/tls.crt"
}

kueue_crds_established() {
  local c
  for c in workloads clusterqueues localqueues resourceflavors workloadpriorityclasses; do
    kc wait --for condition=Established --timeout 5s "crd/$c.kueue.x-k8s.io" || return 1
  done
}

# Kueue's CRDs, applied in the background while the other components start
# (the Workload CRD's schema takes the API server a few seconds to take in);
# KUEUE_CRDS_PID is the apply's pid.
kueue_apply_crds() {
  local dir; dir=$(kueue_manifests)
  kubectl --kubeconfig "$ADMIN_KUBECONFIG" --request-timeout=120s apply --server-side --force-conflicts \
    $(printf -- '-f %s ' "$dir"/crds/*.yaml) >"$LOGS/kueue-crds.log" 2>&1 &
  KUEUE_CRDS_PID=$!
}

start_kueue() {
  local dir; dir=$(kueue_manifests)
  make_kueue_cert
  kueue_metrics_cert
  kc create namespace kueue-system --dry-run=client -o yaml | kc apply -f - >/dev/null
  wait_component 120 kube-apiserver "Kueue CRDs Established" kueue_crds_established
  cat >"$STATE/kueue-config.yaml" <<YAML
apiVersion: config.kueue.x-k8s.io/v1beta2
kind: Configuration
namespace: kueue-system
health:
  healthProbeBindAddress: 127.0.0.1:$KUEUE_PROBE_PORT
metrics:
  bindAddress: 127.0.0.1:$KUEUE_METRICS_PORT
webhook:
  host: 127.0.0.1
  port: $KUEUE_WEBHOOK_PORT
  certDir: $KUEUE_CERT_DIR
leaderElection:
  leaderElect: false
internalCertManagement:
  enable: false
managedJobsNamespaceSelector:
  matchLabels:
    sluice.dev/kueue: enabled
clientConnection:
  qps: 50
  burst: 100
integrations:
  frameworks:
  - batch/job
  - pod
YAML
  KUBECONFIG=$ADMIN_KUBECONFIG start kueue "$KUEUE_BIN/kueue" \
    --config "$STATE/kueue-config.yaml" --feature-gates VisibilityOnDemand=false
  wait_component 120 kueue "Kueue manager /readyz" \
    curl -fsS --max-time 2 "http://127.0.0.1:$KUEUE_PROBE_PORT/readyz"
  python3 "$K8S_DIR/lib/kueue_webhooks.py" "$dir/webhooks.yaml" "$KUEUE_WEBHOOK_PORT" "$PKI/ca.crt" |
    kc apply -f - >/dev/null
  # The webhooks on Kueue's own kinds must answer before the queues are made.
  wait_component 60 kueue "Kueue's webhooks and the queues" kueue_queues_apply
  wait_component 60 kube-controller-manager "ServiceAccount team-a/default" kc get serviceaccount default -n team-a
  touch "$STATE/with-kueue"
}

kueue_queues_apply() {
  kc apply -f - <<'YAML'
apiVersion: v1
kind: Namespace
metadata:
  name: team-a
  labels: {sluice.dev/kueue: enabled}
---
apiVersion: v1
kind: Namespace
metadata:
  name: team-b
  labels: {sluice.dev/kueue: enabled}
---
apiVersion: kueue.x-k8s.io/v1beta2
kind: ResourceFlavor
metadata:
  name: default-flavor
---
apiVersion: kueue.x-k8s.io/v1beta2
kind: ClusterQueue
metadata:
  name: gpu
spec:
  namespaceSelector: {}
  resourceGroups:
  - coveredResources: [cpu, memory, nvidia.com/gpu]
    flavors:
    - name: default-flavor
      resources:
      - {name: cpu, nominalQuota: 32}
      - {name: memory, nominalQuota: 128Gi}
      - {name: nvidia.com/gpu, nominalQuota: 2}
---
apiVersion: kueue.x-k8s.io/v1beta2
kind: LocalQueue
metadata:
  name: team-a
  namespace: team-a
spec:
  clusterQueue: gpu
---
apiVersion: kueue.x-k8s.io/v1beta2
kind: LocalQueue
metadata:
  name: team-b
  namespace: team-b
spec:
  clusterQueue: gpu
---
apiVersion: kueue.x-k8s.io/v1beta2
kind: WorkloadPriorityClass
metadata:
  name: sluice-priority-1
value: 1
---
apiVersion: kueue.x-k8s.io/v1beta2
kind: WorkloadPriorityClass
metadata:
  name: sluice-priority-10
value: 10
---
apiVersion: kueue.x-k8s.io/v1beta2
kind: WorkloadPriorityClass
metadata:
  name: sluice-priority-100
value: 100
YAML
}

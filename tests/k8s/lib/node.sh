# shellcheck shell=bash
# The test cluster's real node (`cluster up --with-node`): containerd and runc
# (Debian's), the CNI bridge/host-local/loopback plugins (Debian's
# containernetworking-plugins), and kubelet and kube-proxy built from
# k8s.io/kubernetes at K8S_VERSION beside the control plane. Pods that
# tolerate the taint sluice.dev/real-node=true:NoSchedule run on it for real;
# ClusterIP Services route to them through kube-proxy's iptables rules, and
# they resolve Services by name through CoreDNS (built from
# github.com/coredns/coredns at COREDNS_VERSION), a host process behind the
# Service kube-system/kube-dns (see write_coredns_config, apply_cluster_dns).
# Sourced by tests/k8s/cluster after its own variables and helpers.
#
# Everything the node makes lives under $NODE_DIR=$STATE/node (containerd's
# root and state, runc's state, the pods' network namespaces, kubelet's root
# directory, the CNI IP allocations), except what is machine-wide by nature:
# the bridge $NODE_BRIDGE, the cgroups /kubepods, the iptables rules of
# kube-proxy, kubelet and the CNI plugins, CNI's result cache in
# /var/lib/cni/results and the shims' sockets in /run/containerd/s.
# `cluster down` removes them all (the shims' sockets go with their shims).
# One real node per machine: its bridge, pod CIDR and kube-proxy's rules are
# global.

NODE_NAME=sluice-node
NODE_TAINT=sluice.dev/real-node=true:NoSchedule
NODE_DIR=$STATE/node
NODE_SOCK=$NODE_DIR/containerd/containerd.sock
# Outside 127.0.0.0/8, the host's addresses, kwok's fake pod IPs (10.244/16)
# and the Service range (10.96/16).
NODE_POD_CIDR=10.245.0.0/24
NODE_BRIDGE=sluice-node0
NODE_CNI_NETWORK=sluice-node
KUBELET_PORT=$((PORT_BASE + 10))
KUBELET_HEALTHZ_PORT=$((PORT_BASE + 11))
KUBE_PROXY_HEALTHZ_PORT=$((PORT_BASE + 12))
KUBE_PROXY_METRICS_PORT=$((PORT_BASE + 13))
CONTAINERD_STREAM_PORT=$((PORT_BASE + 14))
# CoreDNS, the pods' cluster DNS: a host process answering on the node's
# address at COREDNS_PORT (UDP and TCP) behind the Service kube-system/kube-dns
# at DNS_CLUSTER_IP, port 53; its readiness on loopback.
COREDNS_PORT=$((PORT_BASE + 18))
COREDNS_READY_PORT=$((PORT_BASE + 19))
DNS_CLUSTER_IP=10.96.0.10
COREDNS_BIN=$(component_dir coredns "$COREDNS_VERSION")/bin/coredns
CNI_BIN_DIR=${SLUICE_K8S_CNI_BIN:-/usr/lib/cni}

# The address kubelet registers and serves on: the host's address on its
# default route (kwok's nodes have made-up ones).
node_ip() {
  ip -4 route get 1.1.1.1 2>/dev/null | sed -n 's/.* src \([0-9.]*\).*/\1/p'
}

node_ports() { echo "$KUBELET_PORT $KUBELET_HEALTHZ_PORT $KUBE_PROXY_HEALTHZ_PORT $KUBE_PROXY_METRICS_PORT $CONTAINERD_STREAM_PORT $COREDNS_READY_PORT"; }

# The state dir of the cluster whose real node runs on this machine.
NODE_OWNER_FILE=/run/sluice-k8s-node.owner

# node_elsewhere: prints the state dir of another cluster whose real node is
# running on this machine (and returns 0), or returns 1.
node_elsewhere() {
  local owner pid
  [ -f "$NODE_OWNER_FILE" ] || return 1
  owner=$(cat "$NODE_OWNER_FILE")
  [ -n "$owner" ] && [ "$owner" != "$STATE" ] || return 1
  pid=$(cat "$owner/pids/containerd.pid" 2>/dev/null) || return 1
  kill -0 "$pid" 2>/dev/null || return 1
  echo "$owner"
}

# node_unmet: prints why the real node cannot start here (and returns 0), or
# returns 1 when it can.
node_unmet() {
  local c missing=() other
  for c in containerd runc ctr iptables ip umoci debootstrap; do
    command -v "$c" >/dev/null || missing+=("$c")
  done
  for c in bridge host-local loopback; do
    [ -x "$CNI_BIN_DIR/$c" ] || missing+=("$CNI_BIN_DIR/$c")
  done
  if ((${#missing[@]})); then
    echo "the real node needs ${missing[*]} (.ci/setup --tests installs them: containerd runc containernetworking-plugins iptables debootstrap umoci)"
  elif [ "$(id -u)" -ne 0 ]; then
    echo "the real node runs containers: it needs root"
  elif [ -z "$(node_ip)" ]; then
    echo "no IPv4 default route: the real node needs an address to register"
  elif other=$(node_elsewhere); then
    echo "one real node per machine: the cluster with state dir $other has it (its bridge, pod addresses and kube-proxy rules are machine-wide)"
  else
    return 1
  fi
}

# node_prerequisites: fails, saying why, unless the node can start.
node_prerequisites() {
  local why
  if why=$(node_unmet); then die "$why"; fi
}

# signed_cert NAME SUBJECT [EXTENSION...]: a certificate NAME.crt/.key in
# $PKI signed by the cluster's CA (made once); a client certificate unless
# the EXTENSIONs (openssl x509v3 lines) say otherwise.
signed_cert() {
  local name=$1 subj=$2; shift 2
  (($#)) || set -- extendedKeyUsage=clientAuth
  [ -f "$PKI/$name.crt" ] && return 0
  openssl genrsa -out "$PKI/$name.key" 2048 2>/dev/null
  openssl req -new -key "$PKI/$name.key" -subj "$subj" -out "$PKI/$name.csr" 2>/dev/null
  printf '%s\n' basicConstraints=CA:FALSE keyUsage=critical,digitalSignature,keyEncipherment "$@" \
    >"$PKI/$name.ext"
  openssl x509 -req -in "$PKI/$name.csr" -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" \
    -CAcreateserial -days 3650 -sha256 -extfile "$PKI/$name.ext" -out "$PKI/$name.crt" 2>/dev/null
  chmod 600 "$PKI/$name.key"
}

# make_node_pki: client certificates for kubelet (the Node authorizer's
# system:node:<name>), kube-proxy (bound to system:node-proxier by default)
# and the API server's calls to kubelet (logs, exec).
make_node_pki() {
  signed_cert kubelet "/O=system:nodes/CN=system:node:$NODE_NAME"
  signed_cert kube-proxy "/CN=system:kube-proxy"
  signed_cert apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client"
  signed_cert coredns "/CN=sluice:coredns"
}

# cert_kubeconfig FILE NAME: a kubeconfig that authenticates with $PKI/NAME.crt.
cert_kubeconfig() {
  cat >"$1" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: sluice-test
  cluster:
    server: $SERVER
    certificate-authority: $PKI/ca.crt
users:
- name: $2
  user:
    client-certificate: $PKI/$2.crt
    client-key: $PKI/$2.key
contexts:
- name: sluice-test
  context:
    cluster: sluice-test
    user: $2
current-context: sluice-test
EOF
  chmod 600 "$1"
}

write_containerd_config() {
  local d=$NODE_DIR/containerd
  mkdir -p "$d/root" "$d/state" "$NODE_DIR/cni/net.d"
  cat >"$d/config.toml" <<EOF
version = 2
root = "$d/root"
state = "$d/state"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
                    "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs",
                    "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]

[grpc]
  address = "$NODE_SOCK"

[ttrpc]
  address = "$d/containerd.ttrpc.sock"

[plugins."io.containerd.internal.v1.opt"]
  path = "$d/opt"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$NODE_PAUSE_IMAGE"
  stream_server_address = "127.0.0.1"
  stream_server_port = "$CONTAINERD_STREAM_PORT"
  netns_mounts_under_state_dir = true
  # Without CAP_SYS_RESOURCE (this machine's root lacks it) no process may
  # lower its oom_score_adj: runc failed every sandbox ("can't get final
  # child's PID from pipe: EOF") writing the -998 kubelet asks for. Restricted,
  # containerd uses its own score as the floor.
  restrict_oom_score_adj = true
  disable_apparmor = true
  tolerate_missing_hugetlb_controller = true
  disable_hugetlb_controller = true

  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"

    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"

      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        BinaryName = "$(command -v runc)"
        Root = "$d/runc"

  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "$CNI_BIN_DIR"
    conf_dir = "$NODE_DIR/cni/net.d"
    max_conf_num = 1
EOF
  # A bridge with the host as the pods' gateway; pods' traffic to the outside
  # is masqueraded. host-local keeps its allocations under the state dir.
  cat >"$NODE_DIR/cni/net.d/10-$NODE_CNI_NETWORK.conflist" <<EOF
{
  "cniVersion": "0.4.0",
  "name": "$NODE_CNI_NETWORK",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$NODE_BRIDGE",
      "isGateway": true,
      "ipMasq": true,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "dataDir": "$NODE_DIR/cni/ipam",
        "ranges": [[{"subnet": "$NODE_POD_CIDR"}]],
        "routes": [{"dst": "0.0.0.0/0"}]
      }
    },
    {"type": "loopback"}
  ]
}
EOF
}

write_kubelet_config() {
  local d=$NODE_DIR/kubelet
  mkdir -p "$d/root" "$d/manifests"
  cert_kubeconfig "$d/kubeconfig" kubelet
  # Its serving certificate, for the address it serves on: the API server
  # verifies it (--kubelet-certificate-authority).
  local serving=kubelet-serving-$(node_ip)
  signed_cert "$serving" "/CN=$NODE_NAME" extendedKeyUsage=serverAuth \
    "subjectAltName=IP:$(node_ip),DNS:$NODE_NAME"
  cat >"$d/config.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $(node_ip)
port: $KUBELET_PORT
readOnlyPort: 0
tlsCertFile: $PKI/$serving.crt
tlsPrivateKeyFile: $PKI/$serving.key
healthzBindAddress: 127.0.0.1
healthzPort: $KUBELET_HEALTHZ_PORT
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: false}
  x509: {clientCAFile: $PKI/ca.crt}
authorization:
  mode: AlwaysAllow
containerRuntimeEndpoint: unix://$NODE_SOCK
cgroupDriver: cgroupfs
# This machine mounts cgroup v1 (kubelet 1.34 refuses it unless told).
failCgroupV1: false
failSwapOn: false
registerWithTaints:
- {key: sluice.dev/real-node, value: "true", effect: NoSchedule}
# Pods with dnsPolicy ClusterFirst (the default) get CoreDNS behind kube-dns,
# the search path <ns>.svc.cluster.local svc.cluster.local cluster.local and
# ndots:5; the host's own /etc/resolv.conf is only read, for its search list.
clusterDNS: [$DNS_CLUSTER_IP]
clusterDomain: cluster.local
staticPodPath: $d/manifests
maxPods: 110
# The images are imported, never pulled: garbage collection must not remove
# them, and the shared disk's fill level must not evict the test pods.
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: 50Mi, nodefs.available: 1%, imagefs.available: 1%, nodefs.inodesFree: 1%}
serializeImagePulls: false
EOF
}

write_kube_proxy_config() {
  local d=$NODE_DIR/kube-proxy
  mkdir -p "$d"
  cert_kubeconfig "$d/kubeconfig" kube-proxy
  cat >"$d/config.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: iptables
hostnameOverride: $NODE_NAME
clientConnection:
  kubeconfig: $d/kubeconfig
clusterCIDR: $NODE_POD_CIDR
bindAddress: 127.0.0.1
healthzBindAddress: 127.0.0.1:$KUBE_PROXY_HEALTHZ_PORT
metricsBindAddress: 127.0.0.1:$KUBE_PROXY_METRICS_PORT
# NodePorts on the node's own address only: nothing on 127.0.0.0/8.
nodePortAddresses: ["$(node_ip)/32"]
conntrack:
  maxPerCore: 0
EOF
}

node_ready() {
  [ "$(kc get node "$NODE_NAME" -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}')" = True ]
}

containerd_serving() { ctr --address "$NODE_SOCK" version; }

# write_coredns_config: the Corefile, and the kubeconfig CoreDNS reads the
# API server with (the client certificate of the user sluice:coredns).
write_coredns_config() {
  local d=$NODE_DIR/coredns
  mkdir -p "$d"
  cert_kubeconfig "$d/kubeconfig" coredns
  # Only the node's address is bound (never port 53, never loopback: the
  # host's resolver is not touched). No cache: a name asked for before its
  # pod is ready must resolve as soon as the pod is (the training-operator's
  # replicas look each other up while they start); ttl 5 as upstream.
  # Names outside cluster.local go to the host's resolvers.
  cat >"$d/Corefile" <<EOF
.:$COREDNS_PORT {
    bind $(node_ip)
    errors
    ready 127.0.0.1:$COREDNS_READY_PORT
    kubernetes cluster.local in-addr.arpa ip6.arpa {
        kubeconfig $d/kubeconfig sluice-test
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
        ttl 5
    }
    forward . /etc/resolv.conf
    loadbalance
}
EOF
}

# apply_cluster_dns: what a cluster's DNS add-on installs, for a CoreDNS that
# runs on the host: upstream's ClusterRole system:coredns, bound to the user
# of CoreDNS's certificate, and the Service kube-system/kube-dns at
# DNS_CLUSTER_IP with no selector and an EndpointSlice naming the node's
# address and COREDNS_PORT, so that kube-proxy routes port 53 of the
# ClusterIP there (from pods and from the host).
apply_cluster_dns() {
  kc apply -f - >/dev/null <<EOF
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: system:coredns
rules:
- apiGroups: [""]
  resources: [endpoints, services, pods, namespaces]
  verbs: [list, watch]
- apiGroups: [discovery.k8s.io]
  resources: [endpointslices]
  verbs: [list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: system:coredns
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: system:coredns}
subjects:
- {apiGroup: rbac.authorization.k8s.io, kind: User, name: sluice:coredns}
---
apiVersion: v1
kind: Service
metadata:
  name: kube-dns
  namespace: kube-system
  labels: {k8s-app: kube-dns, kubernetes.io/name: CoreDNS}
spec:
  clusterIP: $DNS_CLUSTER_IP
  ports:
  - {name: dns, port: 53, protocol: UDP, targetPort: $COREDNS_PORT}
  - {name: dns-tcp, port: 53, protocol: TCP, targetPort: $COREDNS_PORT}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: kube-dns-host
  namespace: kube-system
  labels:
    kubernetes.io/service-name: kube-dns
    endpointslice.kubernetes.io/managed-by: sluice-test-cluster
addressType: IPv4
endpoints:
- addresses: ["$(node_ip)"]
  conditions: {ready: true}
  nodeName: $NODE_NAME
ports:
- {name: dns, port: $COREDNS_PORT, protocol: UDP}
- {name: dns-tcp, port: $COREDNS_PORT, protocol: TCP}
EOF
}

# training_operator_node_flags: the training-operator's flags for a cluster
# with the real node. The operator gives every PyTorchJob Worker an init
# container that waits until the Master's name resolves; upstream's runs
# `nslookup` in alpine:3.10, which the node has not (it pulls nothing). Here
# it is the node's Python image, resolving the name with Python's resolver
# (the pod's resolv.conf, as the main container will), as often and as long
# as upstream's (MaxTries times, 2 s apart). The template (Go's html/template,
# read by the operator at start) lives in the state dir.
training_operator_node_flags() {
  cat >"$STATE/pytorch-init-container.yaml" <<'EOF'
- name: init-pytorch
  image: {{.InitContainerImage}}
  imagePullPolicy: IfNotPresent
  resources:
    limits: {cpu: 100m, memory: 64Mi}
    requests: {cpu: 50m, memory: 10Mi}
  command:
  - python3
  - -c
  - |
    import socket, sys, time
    for _ in range({{.MaxTries}}):
        try:
            print("master {{.MasterAddr}} is", socket.gethostbyname("{{.MasterAddr}}"))
            sys.exit(0)
        except OSError:
            print("waiting for master", flush=True)
            time.sleep(2)
    sys.exit(1)
EOF
  echo --pytorch-init-container-image "$NODE_PYTHON_IMAGE" \
    --pytorch-init-container-template-file "$STATE/pytorch-init-container.yaml"
}

coredns_ready() { curl -fsS --max-time 2 "http://127.0.0.1:$COREDNS_READY_PORT/ready"; }

# node_up: starts containerd, imports the images, starts kubelet and
# kube-proxy, and waits until the node is Ready.
node_up() {
  local t0=$SECONDS
  mkdir -p "$NODE_DIR"
  echo "$STATE" >"$NODE_OWNER_FILE"
  write_containerd_config
  start containerd containerd --config "$NODE_DIR/containerd/config.toml"
  wait_component 60 containerd "containerd on $NODE_SOCK" containerd_serving
  "$K8S_DIR/images" import "$NODE_SOCK"

  write_kubelet_config
  start kubelet "$K8S_BIN/kubelet" \
    --config "$NODE_DIR/kubelet/config.yaml" \
    --kubeconfig "$NODE_DIR/kubelet/kubeconfig" \
    --root-dir "$NODE_DIR/kubelet/root" \
    --hostname-override "$NODE_NAME" \
    --node-ip "$(node_ip)" \
    --node-labels "sluice.dev/real-node=true"
  write_kube_proxy_config
  start kube-proxy "$K8S_BIN/kube-proxy" --config "$NODE_DIR/kube-proxy/config.yaml"
  apply_cluster_dns
  write_coredns_config
  start coredns "$COREDNS_BIN" -conf "$NODE_DIR/coredns/Corefile"
  wait_component 120 kubelet "node $NODE_NAME Ready" node_ready
  wait_component 60 kube-proxy "kube-proxy /healthz" \
    curl -fsS --max-time 2 "http://127.0.0.1:$KUBE_PROXY_HEALTHZ_PORT/healthz"
  wait_component 60 coredns "CoreDNS /ready (its Kubernetes caches synced)" coredns_ready
  log "real node $NODE_NAME Ready in $((SECONDS - t0))s (pods tolerating $NODE_TAINT run there)"
}

# node_drain: deletes every pod bound to the node and waits (bounded) until
# kubelet has stopped them, so that their network namespaces, veths and CNI
# rules are torn down the ordinary way.
node_drain() {
  is_running kubelet || return 0
  apiserver_ready 2>/dev/null || return 0
  kc cordon "$NODE_NAME" >/dev/null 2>&1 || true
  kc delete pods -A --field-selector "spec.nodeName=$NODE_NAME" --grace-period=1 --wait=false >/dev/null 2>&1 || true
  local deadline=$((SECONDS + 60))
  while [ -n "$(kc get pods -A --field-selector "spec.nodeName=$NODE_NAME" -o name 2>/dev/null)" ]; do
    ((SECONDS < deadline)) || { log "pods on $NODE_NAME not gone after 60s; removing them by force"; break; }
    sleep 0.5
  done
  # Kubelet stops the sandboxes after the pods' objects are gone.
  deadline=$((SECONDS + 30))
  while [ -n "$(ctr --address "$NODE_SOCK" -n k8s.io tasks ls -q 2>/dev/null)" ]; do
    ((SECONDS < deadline)) || break
    sleep 0.5
  done
}

# node_down: stops the node's components and removes what they left behind.
node_down() {
  node_drain
  stop_components 10 kube-proxy kubelet coredns
  # Containers that are still running (a drain that timed out, a killed
  # kubelet): their shims outlive containerd, so they are stopped through it.
  if is_running containerd; then
    local id
    for id in $(ctr --address "$NODE_SOCK" -n k8s.io tasks ls -q 2>/dev/null); do
      ctr --address "$NODE_SOCK" -n k8s.io tasks kill -s SIGKILL "$id" >/dev/null 2>&1 || true
    done
    for id in $(ctr --address "$NODE_SOCK" -n k8s.io containers ls -q 2>/dev/null); do
      ctr --address "$NODE_SOCK" -n k8s.io tasks delete -f "$id" >/dev/null 2>&1 || true
    done
  fi
  stop_components 10 containerd
  node_kill_shims
  node_cleanup_host
}

# The runc shims of this node's containerd (they run in sessions of their own).
node_shim_pids() {
  local p
  for p in $(pgrep -x containerd-shim 2>/dev/null; pgrep -f '^/usr/bin/containerd-shim-runc-v2 ' 2>/dev/null); do
    tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null | grep -q -- "-address $NODE_SOCK " && echo "$p"
  done
  return 0
}

node_kill_shims() {
  local p
  for p in $(node_shim_pids); do kill -KILL "$p" 2>/dev/null || true; done
}

# node_cleanup_host: mounts under $NODE_DIR, the pods' host-side veths, the
# bridge, the iptables rules and chains of kube-proxy, kubelet and the CNI
# plugins, the /kubepods cgroups, and $NODE_DIR itself.
node_cleanup_host() {
  local m
  # Deepest first.
  for m in $(awk -v d="$NODE_DIR/" 'index($2, d) == 1 { print $2 }' /proc/self/mounts | sort -r); do
    umount -l "$m" 2>/dev/null || true
  done
  if ip link show "$NODE_BRIDGE" >/dev/null 2>&1; then
    local veth
    for veth in $(ip -o link show master "$NODE_BRIDGE" | awk -F': ' '{ print $2 }' | cut -d@ -f1); do
      ip link delete "$veth" 2>/dev/null || true
    done
    ip link delete "$NODE_BRIDGE" 2>/dev/null || true
  fi
  [ -x "$K8S_BIN/kube-proxy" ] && "$K8S_BIN/kube-proxy" --cleanup >/dev/null 2>&1 || true
  node_cleanup_iptables
  local sub
  # (k8s.io: containerd's parent for containers it starts outside kubelet.)
  for sub in /sys/fs/cgroup/*/kubepods /sys/fs/cgroup/*/k8s.io; do
    [ -d "$sub" ] && find "$sub" -depth -type d -exec rmdir {} + 2>/dev/null || true
  done
  # CNI's cache of results, for the pods whose teardown never ran.
  local f id
  for f in /var/lib/cni/results/"$NODE_CNI_NETWORK"-*; do
    [ -f "$f" ] || continue
    id=${f#/var/lib/cni/results/"$NODE_CNI_NETWORK"-}
    id=${id%-eth0}
    rm -f "$f" "/var/lib/cni/results/cni-loopback-$id-lo"
  done
  if [ "$(cat "$NODE_OWNER_FILE" 2>/dev/null)" = "$STATE" ]; then rm -f "$NODE_OWNER_FILE"; fi
  # The node starts empty each time, as etcd does (the images are imported
  # again: seconds). Nothing is removed while anything is still mounted there.
  if awk -v d="$NODE_DIR/" 'index($2, d) == 1 { found = 1 } END { exit !found }' /proc/self/mounts; then
    log "mounts under $NODE_DIR remain; not removing it"
  else
    rm -rf "$NODE_DIR"
  fi
}

# Every chain named KUBE-* (kubelet's, kube-proxy's leftovers) and the CNI
# plugins' masquerade chains for this network, in every table, with the rules
# that jump to them.
node_cleanup_iptables() {
  local t chains c
  for t in filter nat mangle; do
    chains=$(iptables -t "$t" -S 2>/dev/null | awk '$1 == "-N" { print $2 }' |
      grep -E '^(KUBE-|CNI-)' || true)
    [ -n "$chains" ] || continue
    # CNI-* chains of other networks are left alone.
    chains=$(for c in $chains; do
      case "$c" in
        CNI-*) iptables -t "$t" -S "$c" 2>/dev/null | grep -qF "name: \\\"$NODE_CNI_NETWORK\\\"" && echo "$c" ;;
        *) echo "$c" ;;
      esac
    done)
    for c in $chains; do
      # (iptables -S quotes the rules' comments as a shell would.)
      { iptables -t "$t" -S | grep -E -- "-j $c( |\$)" || true; } | sed 's/^-A /-D /' |
        while read -r rule; do
          python3 -c 'import shlex, sys; sys.stdout.write("".join(a + "\0" for a in shlex.split(sys.argv[1])))' "$rule" |
            xargs -0 iptables -t "$t" 2>/dev/null || true
        done
    done
    for c in $chains; do iptables -t "$t" -F "$c" 2>/dev/null || true; done
    for c in $chains; do iptables -t "$t" -X "$c" 2>/dev/null || true; done
  done
}

node_status() {
  if node_ready 2>/dev/null; then
    echo "node $NODE_NAME: Ready ($(node_ip), pods $NODE_POD_CIDR on $NODE_BRIDGE, taint $NODE_TAINT, DNS $DNS_CLUSTER_IP -> CoreDNS $(node_ip):$COREDNS_PORT)"
  else
    echo "node $NODE_NAME: not Ready"
    return 1
  fi
}

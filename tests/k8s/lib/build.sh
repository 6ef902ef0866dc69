# shellcheck shell=bash
# Builds the test cluster's components from the Go module proxy, into a cache
# directory keyed by component and version:
#
#   $K8S_CACHE/<component>-<version>/bin/<binaries>
#   $K8S_CACHE/<component>-<version>/src/go.mod     (the wrapper module)
#   $K8S_CACHE/<component>-<version>/build.log
#   $K8S_CACHE/go/{mod,build}                       (GOMODCACHE, GOCACHE)
#
# K8S_CACHE is ${SLUICE_CACHE_DIR:-$HOME/.cache/sluice}/k8s. A component whose
# bin/.complete stamp exists and names the binaries the build is asked for is
# not rebuilt (a stamp from a build with another list of binaries is stale).
# Sourced by tests/k8s/cluster.

K8S_DIR=${K8S_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}
# shellcheck source=../versions.env
. "$K8S_DIR/versions.env"

# HOME may be unset in a bare CI environment; root's is the fallback.
K8S_CACHE=${SLUICE_CACHE_DIR:-${HOME:-/root}/.cache/sluice}/k8s

# Go settings shared by every build: module and build caches live under the
# cache dir (so `rm -rf $K8S_CACHE` is a true cold start), the machine's own
# toolchain is used (no toolchain download), and go.mod/go.sum of the wrapper
# modules are completed by the go command itself.
go_env() {
  # The go command wants a HOME (for its config file) and a GOPATH.
  export HOME=${HOME:-/root}
  export GOPATH=${GOPATH:-$HOME/go}
  export GOMODCACHE="$K8S_CACHE/go/mod"
  export GOCACHE="$K8S_CACHE/go/build"
  export GOFLAGS=-mod=mod
  export GOTOOLCHAIN=local
  export CGO_ENABLED=0
  if ! command -v go >/dev/null 2>&1 && [ -x /usr/local/go/bin/go ]; then
    export PATH="/usr/local/go/bin:$PATH"
  fi
  command -v go >/dev/null 2>&1 || die "go not found on PATH (needed to build the test cluster)"
}

# The k8s.io/kubernetes release's staging modules are published as v0.X.Y.
staging_version() { echo "v0.${1#v1.}"; }

component_dir() { echo "$K8S_CACHE/$1-$2"; }

# Path of a module's extracted source in the module cache (downloads it).
module_dir() {
  go_env
  (cd "$K8S_CACHE" && go mod download -json "$1@$2") |
    sed -n 's/^[[:space:]]*"Dir": "\(.*\)",*$/\1/p'
}

# wrapper_init DIR: a fresh wrapper module in DIR/src.
wrapper_init() {
  local src="$1/src"
  rm -rf "$src"
  mkdir -p "$src"
  (cd "$src" && go mod init sluice.local/k8s-build >/dev/null 2>&1)
}

# run_build NAME VERSION BINS... -- CMD...: runs CMD in the wrapper dir with its
# output in build.log, times it, and stamps bin/.complete when every BIN exists.
run_build() {
  local name="$1" version="$2"; shift 2
  local bins=()
  while [ "$1" != "--" ]; do bins+=("$1"); shift; done
  shift
  local dir; dir=$(component_dir "$name" "$version")
  local start=$SECONDS
  log "building $name $version (log: $dir/build.log)"
  if ! (cd "$dir/src" && "$@") >>"$dir/build.log" 2>&1; then
    tail -n 40 "$dir/build.log" >&2
    die "build of $name $version failed; full log: $dir/build.log"
  fi
  local b
  for b in "${bins[@]}"; do
    [ -x "$dir/bin/$b" ] || die "build of $name $version produced no $b; see $dir/build.log"
  done
  echo "$((SECONDS - start))" >"$dir/bin/.build-seconds"
  echo "${bins[*]}" >"$dir/bin/.complete"
  log "built $name $version in $((SECONDS - start))s"
}

# is_built NAME VERSION [BIN...]: the component's stamp exists and, when BINs
# are given, names exactly those binaries.
is_built() {
  local stamp; stamp=$(component_dir "$1" "$2")/bin/.complete
  [ -f "$stamp" ] || return 1
  (($# > 2)) || return 0
  shift 2
  [ "$(cat "$stamp")" = "$*" ]
}

# The binaries built from k8s.io/kubernetes: the control plane, and the real
# node's kubelet and kube-proxy (cluster up --with-node).
K8S_BINS=(kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy)

build_k8s() {
  local v=$K8S_VERSION name=kubernetes
  is_built $name "$v" "${K8S_BINS[@]}" && return 0
  go_env
  local dir; dir=$(component_dir $name "$v")
  mkdir -p "$dir/bin"; : >"$dir/build.log"
  wrapper_init "$dir"
  # Every k8s.io/* module that k8s.io/kubernetes replaces with ./staging/... is
  # replaced here by its published version; the list is read from the release's
  # own go.mod so it stays right when K8S_VERSION changes.
  local gomod sv mods m args=()
  gomod=$(cd "$dir/src" && go mod download -json "k8s.io/kubernetes@$v" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",*$/\1/p')
  [ -f "$gomod" ] || die "cannot download k8s.io/kubernetes@$v from the Go module proxy"
  sv=$(staging_version "$v")
  mods=$(sed -n 's#^[[:space:]]*\(k8s.io/[^ ]*\) => ./staging/.*#\1#p' "$gomod")
  args+=("-require=k8s.io/kubernetes@$v")
  for m in $mods; do args+=("-replace=$m=$m@$sv"); done
  (cd "$dir/src" && go mod edit "${args[@]}")
  local ver_pkg=k8s.io/component-base/version
  local ldflags="-s -w -X $ver_pkg.gitVersion=$v -X $ver_pkg.gitMajor=1 -X $ver_pkg.gitMinor=$(echo "$v" | cut -d. -f2) -X $ver_pkg.gitTreeState=clean -X $ver_pkg.buildDate=1970-01-01T00:00:00Z"
  ldflags+=" -X k8s.io/client-go/pkg/version.gitVersion=$v"
  local b pkgs=()
  for b in "${K8S_BINS[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/$b"); done
  run_build $name "$v" "${K8S_BINS[@]}" -- \
    go build -p "${SLUICE_GO_BUILD_JOBS:-2}" -trimpath -ldflags "$ldflags" -o "$dir/bin/" "${pkgs[@]}"
}

build_etcd() {
  local v=$ETCD_VERSION name=etcd
  is_built $name "$v" && return 0
  go_env
  local dir; dir=$(component_dir $name "$v")
  mkdir -p "$dir/bin"; : >"$dir/build.log"
  wrapper_init "$dir"
  # go.etcd.io/etcd/server/v3's own replace directives point at sibling
  # directories; as a dependency of the wrapper they are ignored and the
  # published api/client/pkg modules of the same version are used.
  (cd "$dir/src" && go mod edit "-require=go.etcd.io/etcd/server/v3@$v")
  run_build $name "$v" etcd -- \
    go build -p "${SLUICE_GO_BUILD_JOBS:-2}" -trimpath -ldflags "-s -w" \
      -o "$dir/bin/etcd" go.etcd.io/etcd/server/v3
}

# "build" or the path of the etcd binary to run (see versions.env).
etcd_choice() { echo "${SLUICE_K8S_ETCD:-build}"; }

etcd_binary() {
  local e; e=$(etcd_choice)
  if [ "$e" = build ]; then echo "$(component_dir etcd "$ETCD_VERSION")/bin/etcd"; else echo "$e"; fi
}

build_kwok() {
  local v=$KWOK_VERSION name=kwok
  is_built $name "$v" && return 0
  go_env
  local dir; dir=$(component_dir $name "$v")
  mkdir -p "$dir/bin"; : >"$dir/build.log"
  wrapper_init "$dir"
  (cd "$dir/src" && go mod edit "-require=sigs.k8s.io/kwok@$v")
  run_build $name "$v" kwok -- \
    go build -p "${SLUICE_GO_BUILD_JOBS:-2}" -trimpath \
      -ldflags "-s -w -X sigs.k8s.io/kwok/pkg/consts.Version=$v" \
      -o "$dir/bin/" sigs.k8s.io/kwok/cmd/kwok
}

build_training_operator() {
  local v=$TRAINING_OPERATOR_VERSION name=training-operator
  is_built $name "$v" && return 0
  go_env
  local dir; dir=$(component_dir $name "$v")
  mkdir -p "$dir/bin"; : >"$dir/build.log"
  wrapper_init "$dir"
  (cd "$dir/src" && go mod edit "-require=github.com/kubeflow/training-operator@$v")
  # The CRDs ship in the module; keep a copy beside the binary so `up` needs
  # neither the module cache nor the network.
  local mod; mod=$(module_dir github.com/kubeflow/training-operator "$v")
  [ -d "$mod/manifests/base/crds" ] || die "no manifests/base/crds in github.com/kubeflow/training-operator@$v"
  rm -rf "$dir/crds"
  cp -r "$mod/manifests/base/crds" "$dir/crds"
  chmod -R u+w "$dir/crds"
  run_build $name "$v" training-operator -- \
    go build -p "${SLUICE_GO_BUILD_JOBS:-2}" -trimpath -ldflags "-s -w" \
      -o "$dir/bin/training-operator" github.com/kubeflow/training-operator/cmd/training-operator.v1
}

# Directory holding the training-operator's CRD manifests (copied from the
# module at build time; the module cache otherwise).
training_operator_crds() {
  local d; d=$(component_dir training-operator "$TRAINING_OPERATOR_VERSION")/crds
  if [ ! -d "$d" ]; then
    d=$(module_dir github.com/kubeflow/training-operator "$TRAINING_OPERATOR_VERSION")/manifests/base/crds
  fi
  echo "$d"
}

# CoreDNS for the real node's pods (built only with `cluster up --with-node`
# or `cluster build coredns`). Its go.mod has no replace directives; every
# plugin of its plugin.cfg is compiled in (core/plugin/zplugin.go is generated
# upstream and shipped in the module).
build_coredns() {
  local v=$COREDNS_VERSION name=coredns
  is_built $name "$v" && return 0
  go_env
  local dir; dir=$(component_dir $name "$v")
  mkdir -p "$dir/bin"; : >"$dir/build.log"
  wrapper_init "$dir"
  (cd "$dir/src" && go mod edit "-require=github.com/coredns/coredns@$v")
  run_build $name "$v" coredns -- \
    go build -p "${SLUICE_GO_BUILD_JOBS:-2}" -trimpath \
      -ldflags "-s -w -X github.com/coredns/coredns/coremain.GitCommit=$v" \
      -o "$dir/bin/coredns" github.com/coredns/coredns
}

build_argo() {
  local v=$ARGO_VERSION name=argo
  is_built $name "$v" && return 0
  go_env
  local dir; dir=$(component_dir $name "$v")
  mkdir -p "$dir/bin"; : >"$dir/build.log"
  wrapper_init "$dir"
  # Argo's go.mod replaces tablewriter with v0.0.5; a dependency's replace
  # directives are ignored, so the wrapper repeats it.
  (cd "$dir/src" && go mod edit "-require=github.com/argoproj/argo-workflows/v3@$v" \
     -replace=github.com/olekukonko/tablewriter=github.com/olekukonko/tablewriter@v0.0.5)
  # The CRDs are installed by every `cluster up`, see argo_crds.
  run_build $name "$v" workflow-controller -- \
    go build -p "${SLUICE_GO_BUILD_JOBS:-2}" -trimpath -ldflags "-s -w" \
      -o "$dir/bin/workflow-controller" github.com/argoproj/argo-workflows/v3/cmd/workflow-controller
}

build_kueue() {
  local v=$KUEUE_VERSION name=kueue
  is_built $name "$v" && return 0
  go_env
  local dir; dir=$(component_dir $name "$v")
  mkdir -p "$dir/bin"; : >"$dir/build.log"
  wrapper_init "$dir"
  (cd "$dir/src" && go mod edit "-require=sigs.k8s.io/kueue@$v")
  # Kueue's go.mod may replace modules; a dependency's replace directives are
  # ignored, so they are repeated here, read from the module's own go.mod.
  local mod reps; mod=$(module_dir sigs.k8s.io/kueue "$v")
  [ -f "$mod/go.mod" ] || die "cannot download sigs.k8s.io/kueue@$v from the Go module proxy"
  reps=$(sed -n 's#^replace[[:space:]]\{1,\}\([^ ]*\) => \([^ ]*\) \(v[^ ]*\)$#-replace=\1=\2@\3#p' "$mod/go.mod")
  # shellcheck disable=SC2086
  [ -z "$reps" ] || (cd "$dir/src" && go mod edit $reps)
  run_build $name "$v" kueue -- \
    go build -p "${SLUICE_GO_BUILD_JOBS:-2}" -trimpath \
      -ldflags "-s -w -X sigs.k8s.io/kueue/pkg/version.GitVersion=$v" \
      -o "$dir/bin/kueue" sigs.k8s.io/kueue/cmd/kueue
}

# argo_crds: directory holding Argo's CRD manifests, installed by every
# `cluster up` (with or without the controller) so that compiled Workflows can
# be checked with a server-side dry-run. SLUICE_K8S_ARGO_CRDS picks the set:
# "full" (default: with the OpenAPI schema, so the API server validates every
# field of a Workflow) or "minimal" (no schema, what Argo's own install
# manifests use). They are copied from the github.com/argoproj/argo-workflows/v3
# module (a download of the module, no build) into
# $K8S_CACHE/argo-crds-<version>/<set> once.
argo_crds() {
  local set=${SLUICE_K8S_ARGO_CRDS:-full}
  case "$set" in
    full|minimal) ;;
    *) die "SLUICE_K8S_ARGO_CRDS=$set: expected full or minimal" ;;
  esac
  local dir; dir=$(component_dir argo-crds "$ARGO_VERSION")/$set
  if [ ! -f "$dir/.complete" ]; then
    local mod; mod=$(module_dir github.com/argoproj/argo-workflows/v3 "$ARGO_VERSION")
    [ -d "$mod/manifests/base/crds/$set" ] ||
      die "no manifests/base/crds/$set in github.com/argoproj/argo-workflows/v3@$ARGO_VERSION (module download failed?)"
    rm -rf "$dir"
    mkdir -p "$dir"
    cp "$mod/manifests/base/crds/$set"/argoproj.io_*.yaml "$dir/"
    chmod -R u+w "$dir"
    touch "$dir/.complete"
  fi
  echo "$dir"
}

# kueue_manifests: directory holding Kueue's CRDs (crds/) and webhook
# configurations (webhooks.yaml, as generated for an in-cluster Service;
# lib/kueue_webhooks.py points them at the local manager), copied from the
# sigs.k8s.io/kueue module (a download, no build) into
# $K8S_CACHE/kueue-manifests-<version> once.
kueue_manifests() {
  local dir; dir=$(component_dir kueue-manifests "$KUEUE_VERSION")
  if [ ! -f "$dir/.complete" ]; then
    local mod; mod=$(module_dir sigs.k8s.io/kueue "$KUEUE_VERSION")
    [ -d "$mod/config/components/crd/bases" ] && [ -f "$mod/config/components/webhook/manifests.yaml" ] ||
      die "no config/components/{crd/bases,webhook} in sigs.k8s.io/kueue@$KUEUE_VERSION (module download failed?)"
    rm -rf "$dir"
    mkdir -p "$dir/crds"
    cp "$mod/config/components/crd/bases"/*.yaml "$dir/crds/"
    cp "$mod/config/components/webhook/manifests.yaml" "$dir/webhooks.yaml"
    chmod -R u+w "$dir"
    touch "$dir/.complete"
  fi
  echo "$dir"
}

# needed_components [argo] [kueue] [coredns]: the components `up` needs that are not built yet.
needed_components() {
  is_built kubernetes "$K8S_VERSION" "${K8S_BINS[@]}" || echo kubernetes
  if [ "$(etcd_choice)" = build ]; then is_built etcd "$ETCD_VERSION" || echo etcd; fi
  is_built kwok "$KWOK_VERSION" || echo kwok
  is_built training-operator "$TRAINING_OPERATOR_VERSION" || echo training-operator
  local extra
  for extra in "$@"; do
    case "$extra" in
      argo) is_built argo "$ARGO_VERSION" || echo argo ;;
      kueue) is_built kueue "$KUEUE_VERSION" || echo kueue ;;
      coredns) is_built coredns "$COREDNS_VERSION" || echo coredns ;;
    esac
  done
}

# build_all [argo] [kueue] [coredns]: builds what is missing. Only when something is missing does
# it take a lock, so that two concurrent `cluster up` calls do not build the
# same thing twice, while a long build (argo) never delays an `up` that needs
# nothing built.
build_all() {
  [ -n "$(needed_components "$@")" ] || return 0
  mkdir -p "$K8S_CACHE"
  exec 8>"$K8S_CACHE/.build.lock"
  if ! flock -n 8; then
    log "another build holds $K8S_CACHE/.build.lock; waiting for it"
    flock 8
  fi
  local c
  for c in $(needed_components "$@"); do
    case "$c" in
      kubernetes) build_k8s ;;
      etcd) build_etcd ;;
      kwok) build_kwok ;;
      training-operator) build_training_operator ;;
      argo) build_argo ;;
      kueue) build_kueue ;;
      coredns) build_coredns ;;
    esac
  done
  exec 8>&-
}

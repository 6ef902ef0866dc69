#!/usr/bin/env bash
# Builds argo-lint (main.go: Argo's own Workflow validation and its parse of
# resource conditions) against the argo-workflows module the test cluster
# installs its CRDs from, with the cluster's Go module and build caches.
# Usage: build.sh OUT_BINARY
set -euo pipefail
out=${1:?usage: $0 OUT_BINARY}
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../../k8s/versions.env"
cache=${SLUICE_K8S_CACHE:-$HOME/.cache/sluice/k8s}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp "$here/main.go" "$work/"
cat >"$work/go.mod" <<MOD
module sluice.local/argo-lint
go 1.24
require github.com/argoproj/argo-workflows/v3 $ARGO_VERSION
replace github.com/olekukonko/tablewriter => github.com/olekukonko/tablewriter v0.0.5
MOD
export PATH="/usr/local/go/bin:$PATH" GOMODCACHE="$cache/go/mod" GOCACHE="$cache/go/build" \
  GOFLAGS=-mod=mod GOTOOLCHAIN=local CGO_ENABLED=0
(cd "$work" && go build -p "${SLUICE_GO_BUILD_JOBS:-2}" -trimpath -o "$out" .)

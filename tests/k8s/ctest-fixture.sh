#!/usr/bin/env bash
# CTest fixture for the "k8s" tests: `ctest-fixture.sh up|down`.
# Exit 77 (CTest SKIP_RETURN_CODE) when SLUICE_SKIP_K8S=1.
# SLUICE_K8S_WITH_ARGO: 1, the cluster also runs Argo's workflow-controller
# (built on first use, about 13 minutes on 2 cores); 0, it does not; unset or
# auto, it does when the cluster's other components are already in the cache,
# so a cold run (which builds those, about 35 minutes) stays well inside CI's
# 90 minutes and every later run also runs the Argo tests.
# SLUICE_K8S_WITH_KUEUE: 1, the cluster also runs Kueue's manager and queues
# (`cluster up --with-kueue`; built on first use, see docs/testing.md); 0, it
# does not; unset or auto, as Argo: it does when the cluster's other
# components are already in the cache.
# SLUICE_K8S_WITH_NODE: 1, the cluster also has the real node (`cluster up
# --with-node`); 0, it does not; unset or auto, it does when `cluster
# node-check` says it can (root, the node's packages from .ci/setup --tests,
# and no other cluster's real node running on this machine) and, as for
# Argo, the cluster's other components are cached: a cold run does not also
# build CoreDNS and the node's images (about 14 minutes together).
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
if [ "${SLUICE_SKIP_K8S:-0}" = 1 ]; then
  echo "SLUICE_SKIP_K8S=1: not touching the test cluster"
  exit 77
fi
# with_when_cached SETTING FLAG VARIABLE WHAT: adds FLAG to args for SETTING
# 1, not for 0, and for auto when the cluster's other components are cached.
with_when_cached() {
  case "$1" in
    1) args+=("$2") ;;
    0) ;;
    *)
      # shellcheck source=lib/build.sh
      K8S_DIR=$here . "$here/lib/build.sh"
      if [ -z "$(needed_components)" ]; then
        echo "the cluster's components are cached: also running $4 ($3=0 to leave it out)"
        args+=("$2")
      else
        echo "building the cluster's components first: $4 left out this time ($3=1 to include it)"
      fi
      ;;
  esac
}
case "${1:-}" in
  up)
    start=$SECONDS
    args=()
    with_when_cached "${SLUICE_K8S_WITH_ARGO:-auto}" --with-argo SLUICE_K8S_WITH_ARGO "Argo's workflow-controller"
    with_when_cached "${SLUICE_K8S_WITH_KUEUE:-auto}" --with-kueue SLUICE_K8S_WITH_KUEUE Kueue
    case "${SLUICE_K8S_WITH_NODE:-auto}" in
      1) args+=(--with-node) ;;
      0) ;;
      *)
        if ! why=$("$here/cluster" node-check); then
          echo "no real node: $why"
        else
          with_when_cached auto --with-node SLUICE_K8S_WITH_NODE "the real node"
        fi
        ;;
    esac
    if ! "$here/cluster" up "${args[@]}"; then
      echo "cluster up failed after $((SECONDS - start))s; component logs follow" >&2
      "$here/cluster" logs 60 >&2
      exit 1
    fi
    echo "cluster up after $((SECONDS - start))s"
    "$here/cluster" env
    ;;
  down)
    "$here/cluster" down
    echo "component logs kept in ${SLUICE_K8S_STATE:-/tmp/sluice-k8s}/logs"
    ;;
  *) echo "usage: $0 up|down" >&2; exit 2 ;;
esac

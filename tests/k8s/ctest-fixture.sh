#!/usr/bin/env bash
# CTest fixture for the "k8s" tests: `ctest-fixture.sh up|down`.
# Exit 77 (CTest SKIP_RETURN_CODE) when SLUICE_SKIP_K8S=1. With
# SLUICE_K8S_WITH_ARGO=1 the cluster also runs Argo's workflow-controller.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
if [ "${SLUICE_SKIP_K8S:-0}" = 1 ]; then
  echo "SLUICE_SKIP_K8S=1: not touching the test cluster"
  exit 77
fi
case "${1:-}" in
  up)
    start=$SECONDS
    args=()
    if [ "${SLUICE_K8S_WITH_ARGO:-0}" = 1 ]; then args+=(--with-argo); fi
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

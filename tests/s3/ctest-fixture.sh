#!/usr/bin/env bash
# CTest fixture for the "s3" tests: `ctest-fixture.sh up|down STATE_DIR`.
# `up` builds SeaweedFS's `weed` into the cache on first use (long on 2 cores:
# see docs/testing.md) and starts it; `down` stops it.
# Exit 77 (CTest SKIP_RETURN_CODE) when SLUICE_SKIP_S3=1: nothing is built or
# started, and the tests then skip, naming the missing binary.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
if [ "${SLUICE_SKIP_S3:-0}" = 1 ]; then
  echo "SLUICE_SKIP_S3=1: not building or starting SeaweedFS"
  exit 77
fi
start=$SECONDS
case "${1:-}" in
  up)
    "$here/seaweedfs" up "$2" || exit 1
    echo "SeaweedFS up after $((SECONDS - start))s"
    ;;
  down) "$here/seaweedfs" down "$2" ;;
  *) echo "usage: ctest-fixture.sh up|down STATE_DIR" >&2; exit 2 ;;
esac

#!/usr/bin/env bash
# CTest fixture for the "oidc" tests: `ctest-fixture.sh up|down STATE_DIR`.
# `up` builds Ory Hydra into the cache on first use (long on 2 cores: see
# docs/testing.md) and starts it with its login app; `down` stops them.
# Exit 77 (CTest SKIP_RETURN_CODE), building and starting nothing, when
# SLUICE_SKIP_OIDC=1 or when there is no Go toolchain and no cached binary;
# the tests then skip, saying why.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
if [ "${SLUICE_SKIP_OIDC:-0}" = 1 ]; then
  echo "SLUICE_SKIP_OIDC=1: not building or starting the OIDC provider"
  exit 77
fi
start=$SECONDS
case "${1:-}" in
  up)
    if [ ! -x "$("$here/hydra" bin)" ] && ! command -v go >/dev/null 2>&1 && [ ! -x /usr/local/go/bin/go ]; then
      echo "SKIP: no Go toolchain to build Ory Hydra (tests/server/oidc/hydra); .ci/setup installs one"
      exit 77
    fi
    "$here/hydra" up "$2" || exit 1
    echo "OIDC provider up after $((SECONDS - start))s"
    ;;
  down) "$here/hydra" down "$2" ;;
  *) echo "usage: ctest-fixture.sh up|down STATE_DIR" >&2; exit 2 ;;
esac

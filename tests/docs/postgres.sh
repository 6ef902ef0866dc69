# Sourced by the doc blocks that use a store on PostgreSQL (their marker:
# setup=". \"$DOCTEST_DIR/postgres.sh\""): starts a PostgreSQL server as the
# store tests do (tests/engine/postgres/postgres-server: Debian's
# postgresql, a free loopback port), copies demo.yaml (tests/docs/demo.yaml)
# and exports SLUICE_STORE_URL, the postgres:// URL of its database. The
# server runs in a session of its own (pg_ctl), so the harness's kill of the
# block's process group does not reach it: a watchdog, in a session of its
# own too, stops it once the block's shell has exited.
pg_server="$DOCTEST_DIR/../engine/postgres/postgres-server"
pg_state=$(mktemp -d /tmp/sluice-docpg-state.XXXXXX)
"$pg_server" up "$pg_state" >/dev/null || return 1
setsid bash -c 'while kill -0 "$1" 2>/dev/null; do sleep 1; done; "$2" down "$3"; rm -rf "$3"' \
  _ $$ "$pg_server" "$pg_state" </dev/null >/dev/null 2>&1 &
SLUICE_STORE_URL=$(sed -n 's/^SLUICE_TEST_POSTGRES_URL=//p' "$pg_state/env")
export SLUICE_STORE_URL
cp "$DOCTEST_DIR/demo.yaml" demo.yaml

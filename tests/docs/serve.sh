# Sourced by the doc blocks that talk to a running `sluice serve` (their
# marker: setup=". \"$DOCTEST_DIR/serve.sh\""): starts a server on a free
# port with the examples as its pipelines and two API tokens, waits (at most
# 60 s) for its "listening on URL" line, and exports SLUICE_SERVER (the URL),
# SLUICE_TOKEN (an admin's, named "docs") and SLUICE_VIEWER_TOKEN (a viewer's,
# named "dashboards"). The harness kills the block's process group when the
# block ends, which stops the server.
SLUICE_TOKEN=$(openssl rand -hex 32)
SLUICE_VIEWER_TOKEN=$(openssl rand -hex 32)
export SLUICE_TOKEN SLUICE_VIEWER_TOKEN
printf 'tokens:\n  - name: docs\n    sha256: %s\n  - name: dashboards\n    role: viewer\n    sha256: %s\n' \
  "$(printf %s "$SLUICE_TOKEN" | sha256sum | cut -d' ' -f1)" \
  "$(printf %s "$SLUICE_VIEWER_TOKEN" | sha256sum | cut -d' ' -f1)" > server.yaml
coproc SERVE { exec sluice serve --pipelines examples --store .sluice --listen 127.0.0.1:0 \
                 --config server.yaml 2>&1; }
SLUICE_SERVER=
while IFS= read -t 60 -r line <&"${SERVE[0]}"; do
  case $line in
    "sluice serve: listening on "*)
      SLUICE_SERVER=${line#sluice serve: listening on }
      SLUICE_SERVER=${SLUICE_SERVER%% *}
      break ;;
    *) echo "$line" ;;
  esac
done
# Keep reading, so the server never blocks on its output (a background job
# does not inherit the coprocess's descriptor: pass a copy).
exec {serve_out}<&"${SERVE[0]}"
cat <&"$serve_out" > serve.log &
[ -n "$SLUICE_SERVER" ]
export SLUICE_SERVER

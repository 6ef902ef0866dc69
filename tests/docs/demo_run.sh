# Sourced by doc blocks that need some run in the store, not a particular
# one (their marker: setup=". \"$DOCTEST_DIR/demo_run.sh\""): copies
# demo.yaml (tests/docs/demo.yaml, a one-step pipeline) and runs it once
# (well under a second, where the retrain example takes ~10 s).
cp "$DOCTEST_DIR/demo.yaml" demo.yaml
sluice run demo.yaml -q

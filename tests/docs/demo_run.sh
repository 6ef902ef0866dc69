# Sourced by doc blocks that need some run in the store, not a particular
# one (their marker: setup=". \"$DOCTEST_DIR/demo_run.sh\""): writes
# demo.yaml, a one-step pipeline, and runs it once (well under a second,
# where the retrain example takes ~10 s).
cat > demo.yaml <<'YAML'
apiVersion: sluice.dev/v1
kind: Pipeline
metadata: {name: demo}
steps:
  - name: hello
    command: [python3, -c, "open('greeting.txt', 'w').write('hello')"]
    outputs: {artifacts: [{name: greeting, path: greeting.txt}]}
YAML
sluice run demo.yaml -q

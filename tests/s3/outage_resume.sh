#!/usr/bin/env bash
# The object store goes away mid-run and comes back: a local run keeping its
# artifacts in a real S3-compatible server (SeaweedFS, its own instance, so
# the outage touches no other test) loses the server while step `train` runs.
# Storing train's output fails after the client's bounded retries, naming the
# endpoint, and the run fails. Once the server is back, `sluice resume`
# finishes the run: `prepare` is not run again and none of its objects is
# written again (their LastModified is unchanged), train runs again and
# `evaluate` gets both outputs, with lineage from the model back to the data.
#
# Usage: outage_resume.sh SLUICE_BINARY SEAWEEDFS_SCRIPT
set -euo pipefail
SLUICE=${1:?usage: $0 SLUICE_BINARY SEAWEEDFS_SCRIPT}
WEED=${2:?usage: $0 SLUICE_BINARY SEAWEEDFS_SCRIPT}
[ "${SLUICE_SKIP_S3:-}" = 1 ] && { echo "SLUICE_SKIP_S3=1: skipping"; exit 77; }
python3 -c 'import sklearn' 2>/dev/null || { echo "python3 cannot import sklearn: skipping"; exit 77; }
fail() { echo "FAIL: $*" >&2; exit 1; }
info() { echo "[$(date -u +%H:%M:%S)] $*"; }
expect() { [ "$2" = "$3" ] || fail "$1: got '$2', want '$3'"; info "ok: $1 = $3"; }

work=$(mktemp -d /tmp/sluice-s3-outage.XXXXXX)
on_exit() {
  local rc=$?
  "$WEED" down "$work/s3" >/dev/null 2>&1 || true
  if [ $rc -eq 0 ]; then rm -rf "$work"; else echo "(kept: $work)" >&2; fi
  exit $rc
}
trap on_exit EXIT
"$WEED" up "$work/s3" >/dev/null
# shellcheck disable=SC1091
. "$work/s3/env"
export AWS_ACCESS_KEY_ID=$SLUICE_TEST_S3_ACCESS_KEY AWS_SECRET_ACCESS_KEY=$SLUICE_TEST_S3_SECRET_KEY
export AWS_REGION=us-east-1
ARTIFACTS=s3://sluice-probe/outage
FLAGS=(--artifacts "$ARTIFACTS" --artifacts-endpoint "$SLUICE_TEST_S3_ENDPOINT" --store "$work/store")

cp -r "$(dirname "$0")/../support/gated_pipeline" "$work/p"

status() { "$SLUICE" status outage-1 --store "$work/store" --format json; }
phases() {
  status | python3 -c 'import json, sys
print(" ".join(sorted("%s=%s/%d" % (s["instance"], s["phase"], s["attempts"]) for s in json.load(sys.stdin)["steps"])))'
}
# The bucket's objects under the run's prefix, "KEY LAST-MODIFIED" per line.
objects() {
  curl -sS --fail --aws-sigv4 "aws:amz:us-east-1:s3" --user "$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY" \
    "$SLUICE_TEST_S3_ENDPOINT/sluice-probe?list-type=2&prefix=outage%2F" |
    python3 -c 'import re, sys
t = sys.stdin.read()
for c in re.findall(r"<Contents>(.*?)</Contents>", t, re.S):
    print(re.search(r"<Key>(.*?)</Key>", c).group(1), re.search(r"<LastModified>(.*?)</LastModified>", c).group(1))'
}

info "sluice run --artifacts $ARTIFACTS (the server stops while train runs)"
rc=0
"$SLUICE" run "$work/p/pipeline.yaml" "${FLAGS[@]}" --run-id outage-1 -q >"$work/run.log" 2>&1 &
pid=$!
deadline=$((SECONDS + 120))
until phases 2>/dev/null | grep -q "train=Running"; do
  [ $SECONDS -lt $deadline ] || { cat "$work/run.log" >&2; fail "train did not start within 120s"; }
  kill -0 "$pid" 2>/dev/null || { cat "$work/run.log" >&2; fail "sluice run ended before train started"; }
  sleep 0.2
done
before=$(objects)
[ -n "$before" ] || fail "prepare's output is not in the bucket"
"$WEED" stop "$work/s3" >/dev/null
touch "$work/p/go"
wait "$pid" || rc=$?
cat "$work/run.log"
expect "sluice run exit code (the store went away)" "$rc" 1
expect "steps after the outage" "$(phases)" "evaluate=Omitted/0 prepare=Succeeded/1 train=Error/1"
message=$(status | python3 -c 'import json, sys
print([s for s in json.load(sys.stdin)["steps"] if s["instance"] == "train"][0]["message"])')
case "$message" in
  *"cannot reach the S3 endpoint $SLUICE_TEST_S3_ENDPOINT"*"(after 4 attempts)"*) info "ok: train's message: $message" ;;
  *) fail "train's message does not name the unreachable endpoint: $message" ;;
esac

info "the server is back; sluice resume"
"$WEED" start "$work/s3" >/dev/null
rc=0
"$SLUICE" resume outage-1 "${FLAGS[@]}" -q >"$work/resume.log" 2>&1 || rc=$?
cat "$work/resume.log"
expect "sluice resume exit code" "$rc" 0
expect "steps after the resume" "$(phases)" "evaluate=Succeeded/1 prepare=Succeeded/1 train=Succeeded/2"
after=$(objects)
while read -r key modified; do
  expect "LastModified of $key (written once)" "$(grep -F "$key " <<<"$after" | cut -d' ' -f2)" "$modified"
done <<<"$before"
# The lineage of the model reaches prepare's data.
data=$(status | python3 -c 'import json, sys
print([o["digest"] for s in json.load(sys.stdin)["steps"] if s["instance"] == "prepare" for o in s["outputs"]][0])')
lineage=$("$SLUICE" lineage outage-1/train/model --store "$work/store" -o json 2>&1 || true)
case "$lineage" in
  *"$data"*) info "ok: the lineage of train's model names prepare's data $data" ;;
  *) fail "the lineage of train's model does not name prepare's data $data: $lineage" ;;
esac
info "PASS"

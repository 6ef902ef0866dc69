#!/usr/bin/env bash
# Upload and download of one file through sluice's S3ArtifactStore and
# through the reference client `aws s3 cp`, side by side in one run, against
# the same S3-compatible server; wall time and peak resident set of each
# (/usr/bin/time), and the load average before and after. A benchmark, not a
# test (docs/performance.md).
#
#   tests/bench/s3_transfer.sh BUILD_DIR [SIZE_MIB]
#
# Starts a SeaweedFS of its own (tests/s3/seaweedfs, the tests' pinned
# build) with room for two copies of the file, on free loopback ports, and
# stops it at the end: the tests' server holds about 1 GiB. SIZE_MIB
# defaults to 1024.
set -euo pipefail
build=${1:?usage: $0 BUILD_DIR [SIZE_MIB]}
size=${2:-1024}
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d /tmp/sluice-s3-bench-XXXXXX)
SLUICE_S3_VOLUMES=16 SLUICE_S3_VOLUME_MB=$(( (size * 3 / 16 / 64 + 1) * 64 )) "$here/../s3/seaweedfs" up "$work/weed"
# shellcheck source=/dev/null
. "$work/weed/env"
export AWS_ENDPOINT_URL=$SLUICE_TEST_S3_ENDPOINT AWS_REGION=us-east-1
export AWS_ACCESS_KEY_ID=$SLUICE_TEST_S3_ACCESS_KEY AWS_SECRET_ACCESS_KEY=$SLUICE_TEST_S3_SECRET_KEY
bench=$build/tests/bench/bench_s3_transfer
aws=$(command -v aws)
[ -x "$bench" ] || { echo "no $bench: ninja -C $build bench_s3_transfer" >&2; exit 2; }
prefix=bench-$(date +%s)-$$
url=s3://sluice-test/$prefix
cleanup() {
  "$here/../s3/seaweedfs" down "$work/weed" || true
  chmod -R u+w "$work" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
"$aws" s3 mb s3://sluice-test >/dev/null
head -c "${size}M" /dev/urandom >"$work/blob"

# time_it LABEL CMD...: "LABEL: S s, R MiB/s, peak RSS M MiB" from /usr/bin/time.
time_it() {
  local label=$1; shift
  if ! /usr/bin/time -f "%e %M" -o "$work/time" "$@" >"$work/out" 2>&1; then
    echo "$label failed:" >&2
    cat "$work/out" "$work/time" >&2
    exit 1
  fi
  read -r secs kib <"$work/time"
  awk -v l="$label" -v s="$secs" -v k="$kib" -v m="$size" \
    'BEGIN { printf "%-22s %7.2f s %7.0f MiB/s   peak RSS %6.1f MiB\n", l":", s, m / s, k / 1024 }'
}

echo "file: $size MiB of random bytes; server: $SLUICE_TEST_S3_ENDPOINT (loopback)"
echo "before: $(uptime)"
sync
time_it "sluice upload" "$bench" up "$work/blob" "$work/store-a" "$url/sluice"
digest=$(sed -n 's/^up \(sha256:[0-9a-f]*\):.*/\1/p' "$work/out")
time_it "aws s3 cp upload" "$aws" s3 cp --quiet "$work/blob" "$url/aws/blob"
time_it "sluice download" "$bench" down "$digest" "$work/store-b" "$url/sluice"
time_it "aws s3 cp download" "$aws" s3 cp --quiet "$url/aws/blob" "$work/blob.aws"
cmp -s "$work/blob" "$work/blob.aws" || { echo "aws download differs" >&2; exit 1; }
echo "after:  $(uptime)"

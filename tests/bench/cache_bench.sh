#!/usr/bin/env bash
# Cache benchmark (issue 3): re-running an unchanged N-step pipeline, every
# step a cache hit, against a ninja no-op on the same DAG.
#
#   tests/bench/cache_bench.sh SLUICE [--n N] [--shape S] [-j J] [--reps R] [--workdir DIR]
#
#   SLUICE        the sluice binary (e.g. build/engine/cli/sluice)
#   --n N         steps (default 10000)
#   --shape S     independent | chain | diamond (default diamond)
#   -j J          parallel slots for both tools (default 2)
#   --reps R      repetitions of each measured command; the median is printed (default 3)
#
# gen_dag.py writes the DAG as build.ninja and pipeline.yaml; the pipeline is
# then rewritten so that each step declares its output file as an artifact
# (a step without outputs runs for its side effects and is never cached).
# Measured: `ninja -j J` after a full build (a no-op), and `sluice run -q`
# after a first full run (every step Cached; the store, lineage and
# snapshots on). The script checks that the re-run really cached every step.
set -euo pipefail

usage() { sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
[[ $# -ge 1 ]] || usage
SLUICE=$1; shift
N=10000 SHAPE=diamond JOBS=2 REPS=3 WORKDIR=""
while [[ $# -gt 0 ]]; do
  case $1 in
    --n) N=$2; shift 2 ;;
    --shape) SHAPE=$2; shift 2 ;;
    -j|--jobs) JOBS=$2; shift 2 ;;
    --reps) REPS=$2; shift 2 ;;
    --workdir) WORKDIR=$2; shift 2 ;;
    -h|--help) usage ;;
    *) echo "cache_bench.sh: unknown option $1" >&2; usage ;;
  esac
done
HERE=$(cd "$(dirname "$0")" && pwd)
die() { echo "cache_bench.sh: $*" >&2; exit 1; }
[[ -x $SLUICE ]] || die "$SLUICE is not an executable; build sluice first"
SLUICE=$(cd "$(dirname "$SLUICE")" && pwd)/$(basename "$SLUICE")
command -v ninja >/dev/null || die "ninja is not installed"
WORKDIR=${WORKDIR:-$(mktemp -d /tmp/sluice-cache-bench.XXXXXX)}
mkdir -p "$WORKDIR"
cd "$WORKDIR"

python3 "$HERE/gen_dag.py" --shape "$SHAPE" --n "$N" --dir "$WORKDIR" >/dev/null
python3 - "$WORKDIR/pipeline.yaml" <<'EOF'
import re, sys
path = sys.argv[1]
out = []
for line in open(path):
    m = re.match(r"    command: \[/usr/bin/touch, .*/out-sluice/(n\d+)\]$", line)
    if m:
        out.append(f"    command: [/usr/bin/touch, out-{m.group(1)}]\n")
        out.append(f"    outputs: {{artifacts: [{{name: out, path: out-{m.group(1)}}}]}}\n")
    else:
        out.append(line)
open(path, "w").write("".join(out))
EOF

now() { echo "$EPOCHREALTIME"; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; }
median() { tr ' ' '\n' | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

ninja -f build.ninja -j "$JOBS" >/dev/null
"$SLUICE" run pipeline.yaml -q -j "$JOBS" --store "$WORKDIR/store" --run-id first >/dev/null

ninja_times=() sluice_times=()
for r in $(seq "$REPS"); do
  t0=$(now); ninja -f build.ninja -j "$JOBS" >/dev/null; t1=$(now)
  ninja_times+=("$(elapsed "$t0" "$t1")")
  t0=$(now); "$SLUICE" run pipeline.yaml -q -j "$JOBS" --store "$WORKDIR/store" --run-id "again-$r" >/dev/null; t1=$(now)
  sluice_times+=("$(elapsed "$t0" "$t1")")
  cached=$("$SLUICE" status "again-$r" --store "$WORKDIR/store" --format json |
           python3 -c 'import json,sys; s=json.load(sys.stdin)["steps"]; print(sum(x["phase"]=="Cached" for x in s), len(s))')
  [[ $cached == "$N $N" ]] || die "re-run again-$r cached $cached steps (cached total), expected $N $N"
done
nt=$(echo "${ninja_times[*]}" | median)
st=$(echo "${sluice_times[*]}" | median)
echo "shape=$SHAPE n=$N j=$JOBS reps=$REPS"
echo "ninja no-op:              ${nt}s  (${ninja_times[*]})"
echo "sluice all-cached re-run: ${st}s  (${sluice_times[*]})"
awk -v s="$st" -v n="$nt" 'BEGIN { printf "ratio sluice/ninja: %.1fx (goal <= 10x)\n", s / n }'

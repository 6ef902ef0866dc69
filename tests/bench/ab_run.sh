#!/usr/bin/env bash
# A/B of two sluice binaries on the same generated DAG, run alternately so
# that both see the same machine: wall and CPU (user+sys) seconds per run,
# then the medians and the ratio B/A.
#
#   tests/bench/ab_run.sh OLD_SLUICE NEW_SLUICE [--shape diamond|chain|independent] [--n N] [--reps R] [-j J]
#
# Each run: a fresh store, clean outputs, `sluice run pipeline.yaml -j J -q`.
set -euo pipefail
old=$(realpath "$1"); new=$(realpath "$2"); shift 2
shape=diamond; n=2000; reps=5; jobs=2
while [ $# -gt 0 ]; do
  case "$1" in
    --shape) shape=$2; shift 2 ;;
    --n) n=$2; shift 2 ;;
    --reps) reps=$2; shift 2 ;;
    -j|--jobs) jobs=$2; shift 2 ;;
    *) echo "ab_run.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
here=$(cd "$(dirname "$0")" && pwd)
dir=$(mktemp -d /tmp/sluice-ab.XXXXXX)
trap 'rm -rf "$dir"' EXIT
python3 "$here/gen_dag.py" --shape "$shape" --n "$n" --width 50 --fan two --dir "$dir" >/dev/null
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
for i in $(seq 1 "$reps"); do
  for which in A B; do
    bin=$old; [ "$which" = B ] && bin=$new
    rm -rf "$dir/store" "$dir/out-sluice"; mkdir -p "$dir/out-sluice"
    ( cd "$dir" && /usr/bin/time -f "$which %e %U %S" "$bin" run pipeline.yaml -j "$jobs" --store store -q >/dev/null 2>>"$dir/times" )
  done
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
python3 - "$dir/times" "$shape" "$n" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1]) if l[:2] in ("A ", "B ")]
def med(which, f): return statistics.median(f(r) for r in rows if r[0] == which)
wall = {w: med(w, lambda r: float(r[1])) for w in "AB"}
cpu = {w: med(w, lambda r: float(r[2]) + float(r[3])) for w in "AB"}
print(f"{sys.argv[2]} n={sys.argv[3]}: wall median A {wall['A']:.2f} s, B {wall['B']:.2f} s ({wall['B']/wall['A']:.2f}x); "
      f"cpu median A {cpu['A']:.2f} s, B {cpu['B']:.2f} s ({cpu['B']/cpu['A']:.2f}x)")
PY

#!/usr/bin/env bash
# A/B of two sluice binaries on the same generated DAG, run alternately so
# that both see the same machine (and, with --ninja, ninja on the same DAG in
# the same rounds): wall seconds per run, sluice's own CPU and its
# supervisor's (tests/bench/proc_cpu.py), then the medians and the ratios.
#
#   tests/bench/ab_run.sh OLD_SLUICE NEW_SLUICE [--shape diamond|chain|independent] [--n N] [--reps R] [-j J] [--ninja]
#
# Each run: a fresh store, clean outputs, `sluice run pipeline.yaml -j J -q`
# (ninja: `ninja -f build.ninja -j J` from clean outputs). Prints the load
# average before and after.
set -euo pipefail
old=$(realpath "$1"); new=$(realpath "$2"); shift 2
shape=diamond; n=2000; reps=5; jobs=2; with_ninja=0
while [ $# -gt 0 ]; do
  case "$1" in
    --shape) shape=$2; shift 2 ;;
    --n) n=$2; shift 2 ;;
    --reps) reps=$2; shift 2 ;;
    -j|--jobs) jobs=$2; shift 2 ;;
    --ninja) with_ninja=1; shift ;;
    *) echo "ab_run.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
here=$(cd "$(dirname "$0")" && pwd)
dir=$(mktemp -d /tmp/sluice-ab.XXXXXX)
trap 'rm -rf "$dir"' EXIT
python3 "$here/gen_dag.py" --shape "$shape" --n "$n" --width 50 --fan two --dir "$dir" >/dev/null
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
for i in $(seq 1 "$reps"); do
  if [ "$with_ninja" = 1 ]; then
    rm -rf "$dir/out-ninja" "$dir/.ninja_log" "$dir/.ninja_deps"; mkdir -p "$dir/out-ninja"
    ( cd "$dir" && python3 "$here/proc_cpu.py" --label N --quiet -- ninja -f build.ninja -j "$jobs" ) | tee -a "$dir/times"
    [ "$(find "$dir/out-ninja" -type f | wc -l)" -eq "$n" ] || { echo "ninja did not make $n files" >&2; exit 1; }
  fi
  for which in A B; do
    bin=$old; [ "$which" = B ] && bin=$new
    rm -rf "$dir/store" "$dir/out-sluice"; mkdir -p "$dir/out-sluice"
    ( cd "$dir" && python3 "$here/proc_cpu.py" --label "$which" --quiet -- "$bin" run pipeline.yaml -j "$jobs" --store store -q ) | tee -a "$dir/times"
    [ "$(find "$dir/out-sluice" -type f | wc -l)" -eq "$n" ] || { echo "sluice ($which) did not make $n files" >&2; exit 1; }
  done
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
python3 - "$dir/times" "$shape" "$n" <<'PY'
import statistics, sys
rows = []
for line in open(sys.argv[1]):
    f = line.split()
    rows.append((f[0], {k: float(v) for k, v in (x.split("=") for x in f[1:])}))
def med(which, key):
    vals = [r[key] for w, r in rows if w == which]
    return statistics.median(vals) if vals else None
shape, n = sys.argv[2], int(sys.argv[3])
wall = {w: med(w, "wall") for w in "NAB"}
line = f"{shape} n={n}: wall median A {wall['A']:.2f} s, B {wall['B']:.2f} s (B/A {wall['B']/wall['A']:.2f}x)"
if wall["N"]:
    line += f"; ninja {wall['N']:.2f} s (A/ninja {wall['A']/wall['N']:.2f}x, B/ninja {wall['B']/wall['N']:.2f}x)"
print(line)
for w in "AB":
    own, sup, rest = med(w, "self"), med(w, "supervisor"), med(w, "rest")
    print(f"  {w}: sluice's own CPU {1000*own/n:.2f} ms/step, its supervisor's {1000*sup/n:.2f} ms/step "
          f"(together {1000*(own+sup)/n:.2f}); the steps and any other child {1000*rest/n:.2f} ms/step")
if wall["N"]:
    print(f"  ninja: its own CPU {1000*med('N', 'self')/n:.2f} ms/step; its commands (sh + touch) {1000*med('N', 'rest')/n:.2f} ms/step")
PY

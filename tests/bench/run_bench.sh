#!/usr/bin/env bash
# Scheduler and front-end benchmarks of sluice against ninja and yaml-cpp.
#
#   tests/bench/run_bench.sh SLUICE [options]
#
#   SLUICE              the sluice binary (e.g. build/engine/cli/sluice)
#   --n N               steps per DAG for the run benchmark (default 5000)
#   -j, --jobs J        parallel slots for both tools (default 2)
#   --reps R            repetitions per measurement; the median is reported (default 3)
#   --shapes LIST       comma-separated: independent,chain,diamond (default all three)
#   --lint-n N          steps in the parse+lint file (default 10000)
#   --yaml-loader BIN   bench_yaml_load from this directory's build; enables
#                       the parse+lint benchmark
#   --workdir DIR       scratch directory (default: a new one under /tmp)
#
# Run benchmark: for each shape, gen_dag.py writes the same DAG as
# pipeline.yaml and build.ninja, every step touching its own output file; then
# `ninja -f build.ninja -j J` and `sluice run pipeline.yaml -j J --store DIR`
# (store enabled, a fresh one each time) are timed from clean outputs, and the
# script checks that each really produced N files. Prints wall times and the
# ratio sluice/ninja.
#
# Parse+lint benchmark: `sluice lint` of a --lint-n step diamond (width 100,
# two dependencies per step) against bench_yaml_load (a bare yaml-cpp load) of
# the same file, both as whole processes.
#
# Measured 2026-11-25 on the device machine (16 cores, idle), sluice 0.1.0
# RelWithDebInfo, n=5000, -j 2, median of 3:
#   independent  ninja 4.53 s  sluice 5.48 s   1.21x
#   chain        ninja 10.08 s sluice 11.61 s  1.15x
#   diamond      ninja 6.22 s  sluice 7.18 s   1.15x   (width 50, two deps per step)
#   lint 10,000 steps: yaml-cpp load 0.381 s, sluice lint 0.284 s   0.75x
# and bench_local_executor 5000 2 (the executor alone, no engine or store):
# 2.7-3.4 s, 0.54-0.69 ms per task.
# On the 2-core development machine under a load average of ~20 the same run
# gave 1.90x / 1.61x / 1.12x (1 rep): numbers from a busy machine mean little.
set -euo pipefail

usage() { sed -n '2,26p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
[[ $# -ge 1 ]] || usage
SLUICE=$1; shift
N=5000 JOBS=2 REPS=3 SHAPES=independent,chain,diamond LINT_N=10000 YAML_LOADER="" WORKDIR=""
while [[ $# -gt 0 ]]; do
  case $1 in
    --n) N=$2; shift 2 ;;
    -j|--jobs) JOBS=$2; shift 2 ;;
    --reps) REPS=$2; shift 2 ;;
    --shapes) SHAPES=$2; shift 2 ;;
    --lint-n) LINT_N=$2; shift 2 ;;
    --yaml-loader) YAML_LOADER=$2; shift 2 ;;
    --workdir) WORKDIR=$2; shift 2 ;;
    -h|--help) usage ;;
    *) echo "run_bench.sh: unknown option $1" >&2; usage ;;
  esac
done

HERE=$(cd "$(dirname "$0")" && pwd)
die() { echo "run_bench.sh: $*" >&2; exit 1; }
[[ -x $SLUICE ]] || die "$SLUICE is not an executable; build sluice first and pass its path"
SLUICE=$(cd "$(dirname "$SLUICE")" && pwd)/$(basename "$SLUICE")
"$SLUICE" run --help >/dev/null 2>&1 || die "'$SLUICE run --help' failed; is this the sluice CLI?"
command -v ninja >/dev/null || die "ninja is not installed (apt-get install ninja-build)"
if [[ -n $YAML_LOADER ]]; then
  [[ -x $YAML_LOADER ]] || die "--yaml-loader $YAML_LOADER is not an executable"
fi
WORKDIR=${WORKDIR:-$(mktemp -d /tmp/sluice-bench.XXXXXX)}
mkdir -p "$WORKDIR"

now() { echo "$EPOCHREALTIME"; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; }
median() { tr ' ' '\n' | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
count_files() { find "$1" -type f | wc -l; }

echo "machine: $(nproc) cpus, $(uname -r); ninja $(ninja --version); $("$SLUICE" --version 2>/dev/null | head -1 || true)"
echo "run benchmark: n=$N, -j $JOBS, $REPS reps (median), store enabled, workdir $WORKDIR"
printf '%-12s %10s %10s %8s\n' shape ninja_s sluice_s ratio
IFS=, read -r -a shape_list <<< "$SHAPES"
for shape in "${shape_list[@]}"; do
  d=$WORKDIR/$shape
  python3 "$HERE/gen_dag.py" --shape "$shape" --n "$N" --width 50 --fan two --dir "$d" >/dev/null
  ninja_times=() sluice_times=()
  for ((rep = 1; rep <= REPS; rep++)); do
    rm -rf "$d/out-ninja" "$d/.ninja_log" "$d/.ninja_deps"; mkdir -p "$d/out-ninja"
    t0=$(now)
    (cd "$d" && ninja -f build.ninja -j "$JOBS" >/dev/null)
    t1=$(now)
    ninja_times+=("$(elapsed "$t0" "$t1")")
    [[ $(count_files "$d/out-ninja") -eq $N ]] || die "ninja did not produce $N outputs in $d/out-ninja"

    rm -rf "$d/out-sluice" "$d/store"; mkdir -p "$d/out-sluice"
    t0=$(now)
    if ! (cd "$d" && "$SLUICE" run pipeline.yaml -j "$JOBS" --store "$d/store" >"$d/sluice.out" 2>&1); then
      tail -20 "$d/sluice.out" >&2
      die "sluice run failed on $d/pipeline.yaml (output in $d/sluice.out)"
    fi
    t1=$(now)
    sluice_times+=("$(elapsed "$t0" "$t1")")
    [[ $(count_files "$d/out-sluice") -eq $N ]] || die "sluice did not produce $N outputs in $d/out-sluice"
  done
  nt=$(echo "${ninja_times[*]}" | median)
  st=$(echo "${sluice_times[*]}" | median)
  printf '%-12s %10s %10s %8s   (ninja: %s; sluice: %s)\n' "$shape" "$nt" "$st" \
    "$(awk -v s="$st" -v n="$nt" 'BEGIN { printf "%.2fx", s / n }')" "${ninja_times[*]}" "${sluice_times[*]}"
done

if [[ -n $YAML_LOADER ]]; then
  d=$WORKDIR/lint
  python3 "$HERE/gen_dag.py" --shape diamond --n "$LINT_N" --width 100 --fan two --work true --dir "$d" >/dev/null
  echo
  echo "parse+lint benchmark: $LINT_N steps ($(du -h "$d/pipeline.yaml" | cut -f1)), $REPS reps (median), whole processes"
  yaml_times=() lint_times=()
  for ((rep = 1; rep <= REPS; rep++)); do
    t0=$(now); "$YAML_LOADER" "$d/pipeline.yaml" >/dev/null; t1=$(now)
    yaml_times+=("$(elapsed "$t0" "$t1")")
    t0=$(now)
    "$SLUICE" lint "$d/pipeline.yaml" >"$d/lint.out" 2>&1 || { tail -5 "$d/lint.out" >&2; die "sluice lint failed"; }
    t1=$(now)
    lint_times+=("$(elapsed "$t0" "$t1")")
  done
  yt=$(echo "${yaml_times[*]}" | median)
  lt=$(echo "${lint_times[*]}" | median)
  printf '%-12s %10s %10s %8s\n' what yaml_s lint_s ratio
  printf '%-12s %10s %10s %8s   (yaml-cpp: %s; sluice lint: %s)\n' lint "$yt" "$lt" \
    "$(awk -v s="$lt" -v n="$yt" 'BEGIN { printf "%.2fx", s / n }')" "${yaml_times[*]}" "${lint_times[*]}"
fi

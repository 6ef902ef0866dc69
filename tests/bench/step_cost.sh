#!/usr/bin/env bash
# Load-independent cost of one local step: instructions (callgrind) and
# system calls (strace) of sluice's own process and of its supervisor,
# per step, on a DAG from gen_dag.py. Wall time on a shared machine is
# noise; these counts are not (a few percent between runs).
#
#   tests/bench/step_cost.sh SLUICE [--shape diamond|chain|independent] [--n N] [-j J] [--no-strace]
#
# Runs `SLUICE run pipeline.yaml -j J --store store -q` twice in a fresh
# store each time: once under valgrind --tool=callgrind (the steps, touch,
# are not traced) and once under strace -f. Prints, per program, the
# instructions and the system calls per step (sluice-supervise's forked
# child counts as the supervisor's until its exec). The totals include
# sluice's start (loading the pipeline, opening the store), so use N of
# 1,000 or more. Needs valgrind and strace.
set -euo pipefail
bin=$(realpath "$1"); shift
shape=independent; n=1000; jobs=2; with_strace=1
while [ $# -gt 0 ]; do
  case "$1" in
    --shape) shape=$2; shift 2 ;;
    --n) n=$2; shift 2 ;;
    -j|--jobs) jobs=$2; shift 2 ;;
    --no-strace) with_strace=0; shift ;;
    *) echo "step_cost.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
here=$(cd "$(dirname "$0")" && pwd)
dir=$(mktemp -d /tmp/sluice-cost.XXXXXX)
trap 'rm -rf "$dir"' EXIT
python3 "$here/gen_dag.py" --shape "$shape" --n "$n" --width 50 --fan two --dir "$dir" >/dev/null
fresh() { rm -rf "$dir/store" "$dir/out-sluice"; mkdir -p "$dir/out-sluice"; }
check() { [ "$(find "$dir/out-sluice" -type f | wc -l)" -eq "$n" ] || { echo "sluice did not make $n files" >&2; exit 1; }; }
# A first run outside the tools, so that both measured runs find the
# pipeline's parse cache as every later run does.
fresh; ( cd "$dir" && "$bin" run pipeline.yaml -j "$jobs" --store store -q >/dev/null ); check
fresh
( cd "$dir" && valgrind -q --tool=callgrind --trace-children=yes --trace-children-skip='*/touch,*/git' \
    --callgrind-out-file="$dir/cg.%p" "$bin" run pipeline.yaml -j "$jobs" --store store -q >/dev/null )
check
echo "$shape n=$n -j $jobs: instructions per step (callgrind Ir, whole process / $n)"
for f in "$dir"/cg.*; do
  cmd=$(sed -n 's/^cmd: *//p' "$f" | head -1)
  total=$(sed -n 's/^totals: *//p' "$f")
  printf '  %-22s %12d total  %9d per step\n' "$(basename "${cmd%% *}")" "$total" "$((total / n))"
done
if [ "$with_strace" = 1 ]; then
  fresh
  ( cd "$dir" && strace -f -o "$dir/strace.txt" "$bin" run pipeline.yaml -j "$jobs" --store store -q >/dev/null )
  check
  echo "$shape n=$n -j $jobs: system calls per step (strace -f), by program"
  python3 "$here/syscalls_by_program.py" "$dir/strace.txt" "$n" | sed 's/^/  /'
fi

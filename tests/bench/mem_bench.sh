#!/usr/bin/env bash
# Peak memory of `sluice run` on large pipelines: one foreach of N items of
# `/bin/true`, and G generated steps (no dependencies, each `/bin/true`; lint
# refuses more than 20,000 steps in one file, dsl/limits.h), each run once
# with a fresh store at -j J. Prints, per pipeline, the wall
# time, sluice's own and its supervisor's CPU and sluice's peak RSS
# (tests/bench/proc_cpu.py), and the load average before and after.
#
#   tests/bench/mem_bench.sh SLUICE [--n N] [--generated G] [-j J] [--shapes foreach,generated] [--workdir DIR]
set -euo pipefail
sluice=$(realpath "$1"); shift
n=100000; gen_n=20000; jobs=2; shapes=foreach,generated; workdir=""
while [ $# -gt 0 ]; do
  case "$1" in
    --n) n=$2; shift 2 ;;
    --generated) gen_n=$2; shift 2 ;;
    -j|--jobs) jobs=$2; shift 2 ;;
    --shapes) shapes=$2; shift 2 ;;
    --workdir) workdir=$2; shift 2 ;;
    *) echo "mem_bench.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
here=$(cd "$(dirname "$0")" && pwd)
workdir=${workdir:-$(mktemp -d /tmp/sluice-mem.XXXXXX)}
mkdir -p "$workdir"
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
IFS=, read -r -a shape_list <<< "$shapes"
for shape in "${shape_list[@]}"; do
  d=$workdir/$shape
  rm -rf "$d"; mkdir -p "$d"
  case $shape in
    generated) python3 "$here/gen_dag.py" --shape independent --n "$gen_n" --work true --dir "$d" >/dev/null ;;
    foreach)
      cat > "$d/pipeline.yaml" <<YAML
apiVersion: sluice.dev/v1
kind: Pipeline
metadata:
  name: foreach-$n
steps:
  - name: each
    foreach: {range: {start: 0, end: $n}}
    command: [/bin/true]
YAML
      ;;
    *) echo "mem_bench.sh: unknown shape $shape" >&2; exit 2 ;;
  esac
  count=$n; [ "$shape" = generated ] && count=$gen_n
  (cd "$d" && python3 "$here/proc_cpu.py" --label "$shape-$count" --quiet -- "$sluice" run pipeline.yaml -j "$jobs" --store store -q)
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"

#!/usr/bin/env bash
# Builds the libFuzzer targets (tests/fuzz/CMakeLists.txt) in their own clang
# tree and runs each: first its whole corpus once (-runs=0: the seeds and
# every crash found before), then fuzzing for a bounded time.
#   tests/fuzz/run.sh [--build DIR] [--seconds N] [TARGET...]
#   tests/fuzz/run.sh [--build DIR] --unit
# TARGET: lint notebook expr kubeconfig cron webhook api_body (default: all of them).
# DIR defaults to build/build-fuzz; N (seconds of fuzzing per target) to 20.
# --unit instead builds the dsl and engine-core unit tests in that tree (so
# with AddressSanitizer and UndefinedBehaviorSanitizer) and runs them.
# New inputs go to DIR/corpus/TARGET (kept between runs), crashes to
# DIR/artifacts/. Exit status: 0 clean; 1 a crash, leak, timeout, out-of-memory,
# failed unit test or build failure (for a crash, the input and the commands
# to reproduce and minimise it are printed); 77 clang or libFuzzer's runtime
# is missing (CTest: skipped).
set -euo pipefail
src=$(cd "$(dirname "$0")/../.." && pwd)
build=$src/build/build-fuzz
seconds=20
unit=0
targets=()
while [ $# -gt 0 ]; do
  case $1 in
    --build) build=$2; shift 2 ;;
    --seconds) seconds=$2; shift 2 ;;
    --unit) unit=1; shift ;;
    -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
    *) targets+=("$1"); shift ;;
  esac
done
[ ${#targets[@]} -gt 0 ] || targets=(lint notebook expr kubeconfig cron webhook api_body)

# Seeds beside each target's own corpus (read, never written).
declare -A seeds=(
  [lint]="$src/tests/dsl/lint $src/examples $src/tests/compile/testdata"
  [expr]="$src/tests/dsl/lint"
  [notebook]="$src/examples/notebook"
)

probe=$(mktemp -d)
trap 'rm -rf "$probe"' EXIT
echo 'extern "C" int LLVMFuzzerTestOneInput(const unsigned char*, unsigned long) { return 0; }' \
  >"$probe/probe.cc"
if ! command -v clang++ >/dev/null ||
   ! clang++ -fsanitize=fuzzer,address,undefined "$probe/probe.cc" -o "$probe/probe" 2>/dev/null; then
  echo "fuzz: skipped: needs clang++ with libFuzzer (Debian: clang libclang-rt-dev; .ci/setup --tests installs them)"
  exit 77
fi

start=$SECONDS
if [ ! -f "$build/build.ninja" ]; then
  launcher=()
  command -v ccache >/dev/null && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
  cmake -S "$src" -B "$build" -G Ninja -C "$src/tests/fuzz/cache.cmake" "${launcher[@]}" >/dev/null
fi
# The dsl and engine-core unit tests: the code the fuzz targets link, and
# quick (seconds) under the sanitizers.
unit_tests=(tests/dsl/sluice_dsl_tests tests/engine/graph_test tests/engine/plan_test
            tests/engine/json_text_test tests/engine/sqlite_store_test tests/engine/store_test
            tests/engine/artifact_store_test)
if [ "$unit" -eq 1 ]; then build_targets=("${unit_tests[@]##*/}"); else build_targets=("${targets[@]/#/fuzz_}"); fi
mkdir -p "$build/logs"
if ! ninja -C "$build" -j"$(nproc)" "${build_targets[@]}" >"$build/logs/build.log" 2>&1; then
  tail -60 "$build/logs/build.log"
  echo "fuzz: build failed"
  exit 1
fi
echo "fuzz: built in $((SECONDS - start)) s"

mkdir -p "$build/artifacts" "$build/logs"
# Stacks for UB reports too; a leak is a failure like a crash.
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1}

if [ "$unit" -eq 1 ]; then
  failed=()
  for t in "${unit_tests[@]}"; do
    log=$build/logs/${t##*/}.log
    if (cd "$build" && SLUICE_PARSE_CACHE=off "$build/$t" >"$log" 2>&1); then
      echo "fuzz: $t (ASan+UBSan): $(grep -o '[0-9]* tests\? from [0-9]* test suites\? ran' "$log")"
    else
      failed+=("${t##*/}")
      echo "fuzz: $t (ASan+UBSan) FAILED; the end of $log:"
      tail -60 "$log"
    fi
  done
  echo "fuzz: total $((SECONDS - start)) s"
  [ ${#failed[@]} -eq 0 ] || { echo "fuzz: FAILED: ${failed[*]}"; exit 1; }
  exit 0
fi
failed=()
for t in "${targets[@]}"; do
  bin=$build/tests/fuzz/fuzz_$t
  corpus=$src/tests/fuzz/corpus/$t
  work=$build/corpus/$t
  mkdir -p "$work"
  log=$build/logs/$t.log
  # shellcheck disable=SC2086  # the seed list splits on spaces
  dirs=("$corpus" ${seeds[$t]:-})
  common=(-rss_limit_mb=2048 -artifact_prefix="$build/artifacts/$t-" -print_final_stats=1)
  t0=$SECONDS
  if ! "$bin" "${common[@]}" -timeout=10 -runs=0 "${dirs[@]}" >"$log" 2>&1; then
    status="corpus replay FAILED"
  elif ! "$bin" "${common[@]}" -timeout=2 -max_total_time="$seconds" "$work" "${dirs[@]}" \
       >>"$log" 2>&1; then
    status="FAILED"
  else
    execs=$(grep -o 'number_of_executed_units: *[0-9]*' "$log" | tail -1 | grep -o '[0-9]*$')
    echo "fuzz: $t: ok, ${execs:-?} runs, corpus $(ls "$work" | wc -l) new inputs, $((SECONDS - t0)) s"
    continue
  fi
  failed+=("$t")
  echo "fuzz: $t: $status ($((SECONDS - t0)) s); the end of $log:"
  grep -v '^#[0-9]' "$log" | tail -40
  artifact=$(grep -o "Test unit written to .*" "$log" | tail -1 | sed 's/Test unit written to //')
  if [ -n "$artifact" ]; then
    echo "fuzz: $t: reproduce: $bin $artifact"
    echo "fuzz: $t: minimise: $bin -minimize_crash=1 -max_total_time=60 -exact_artifact_path=$corpus/NAME $artifact"
    echo "fuzz: $t: fix it, and keep $corpus/NAME as the regression input"
  fi
done
echo "fuzz: total $((SECONDS - start)) s"
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz: FAILED: ${failed[*]}"
  exit 1
fi

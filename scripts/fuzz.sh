#!/usr/bin/env bash
# Builds the libFuzzer targets (tests/fuzz) in build-fuzz/ with clang-22,
# ASan and UBSan, and runs each for a while. See docs/fuzzing.md.
#
#   bash scripts/fuzz.sh                    600 s per target, corpus kept in build-fuzz/fuzz/corpus
#   bash scripts/fuzz.sh --seconds 120      120 s per target
#   bash scripts/fuzz.sh --ci               60 s per target from the seeds only (CI)
#   bash scripts/fuzz.sh --target slak-fuzz-ir --seconds 30
#
# Exits non-zero when a target reports a crash, a hang, a leak or a
# sanitizer error, after printing the report and the reproducer path.
# Environment: SLAK_FUZZ_BUILD_DIR (default build-fuzz), SLAK_FUZZ_JOBS
# (build jobs, default 2).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${SLAK_FUZZ_BUILD_DIR:-$root/build-fuzz}"
seconds=600
ci=0
targets=(slak-fuzz-readers slak-fuzz-ir)
while (($#)); do
  case "$1" in
  --seconds)
    [[ $# -ge 2 && "$2" =~ ^[0-9]+$ && "$2" -gt 0 ]] || {
      echo "fuzz.sh: --seconds takes a positive number of seconds, got '${2:-}'" >&2
      exit 2
    }
    seconds="$2"
    shift 2
    ;;
  --ci)
    ci=1
    seconds=60
    shift
    ;;
  --target)
    [[ $# -ge 2 && ( "$2" == slak-fuzz-readers || "$2" == slak-fuzz-ir ) ]] || {
      echo "fuzz.sh: --target takes slak-fuzz-readers or slak-fuzz-ir, got '${2:-}'" >&2
      exit 2
    }
    targets=("$2")
    shift 2
    ;;
  -h | --help)
    sed -n '2,13p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
    exit 0
    ;;
  *)
    echo "fuzz.sh: unknown argument '$1' (see --help)" >&2
    exit 2
    ;;
  esac
done

for tool in clang-22 clang++-22; do
  command -v "$tool" >/dev/null || {
    echo "fuzz.sh: $tool not found: apt-get install clang-22 libclang-rt-22-dev (scripts/setup.sh does)" >&2
    exit 1
  }
done

# Overlapping runs (CI beside a long run) build one at a time: two ninjas in
# one build folder race on its files.
mkdir -p "$build"
exec 9>"$build/.fuzz-build.lock"
flock 9
# Configure once (again only when the cache is not a fuzz build).
if ! grep -q '^SLAK_FUZZ:BOOL=ON' "$build/CMakeCache.txt" 2>/dev/null; then
  echo "[fuzz] configuring $build"
  cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DCMAKE_C_COMPILER=clang-22 -DCMAKE_CXX_COMPILER=clang++-22 -DSLAK_FUZZ=ON \
    -DSLAK_WITH_TORCH=OFF -DSLAK_WITH_HALIDE=OFF -DSLAK_WITH_OPENCL=OFF -DSLAK_WITH_CUDA=OFF \
    >"$build/fuzz-configure.log" 2>&1 || {
    cat "$build/fuzz-configure.log" >&2
    exit 1
  }
fi
echo "[fuzz] building ${targets[*]} and the seed corpora"
cmake --build "$build" --parallel "${SLAK_FUZZ_JOBS:-2}" --target "${targets[@]}" slak-fuzz-seeds \
  >"$build/fuzz-build.log" 2>&1 || {
  grep -E "error|FAILED" "$build/fuzz-build.log" | head -40 >&2
  echo "fuzz.sh: build failed, see $build/fuzz-build.log" >&2
  exit 1
}

flock -u 9

fuzz="$build/fuzz"
mkdir -p "$fuzz"
tmp="$(mktemp -d "$fuzz/tmp.XXXXXX")" # one per run: runs may overlap
export TMPDIR="$tmp" # the targets' temporary files (tests/fuzz/FuzzSupport.h)
# Leaks in LLVM's and MLIR's own global registries are theirs; see the file.
export LSAN_OPTIONS="suppressions=$root/tests/fuzz/lsan.supp:print_suppressions=0"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
failed=0
total_start=$SECONDS
for target in "${targets[@]}"; do
  name="${target#slak-fuzz-}"
  if ((ci)); then
    corpus="$tmp/corpus/$name" # from the seeds each time: a bounded, repeatable run
  else
    corpus="$fuzz/corpus/$name"
  fi
  artifacts="$fuzz/artifacts/$name"
  mkdir -p "$corpus" "$artifacts"
  inputs=("$corpus" "$fuzz/seeds/$name")
  log="$fuzz/$name.log"
  ((ci)) && log="$fuzz/ci-$name.${tmp##*.}.log" # kept only when the run fails
  start=$SECONDS
  rc=0
  "$fuzz/$target" -max_total_time="$seconds" -timeout=30 -rss_limit_mb=3072 \
    -dict="$root/tests/fuzz/slak.dict" -artifact_prefix="$artifacts/" -print_final_stats=1 \
    "${inputs[@]}" >"$log" 2>&1 || rc=$?
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  if [[ -z "$runs" ]]; then # a crash skips the final stats: the last status line
    runs=$(grep -oE '^#[0-9]+' "$log" | tail -1 | tr -d '#')
  fi
  elapsed=$((SECONDS - start))
  echo "[fuzz] $target: ${runs:-0} executions in ${elapsed} s, corpus $(ls "$corpus" | wc -l) files, exit $rc"
  if ((rc != 0)); then
    failed=1
    echo "[fuzz] $target FAILED; the report (full log: $log):" >&2
    grep -E "ERROR: |BUG: |SUMMARY: |runtime error: |leak|timeout|out-of-memory|#[0-9]+ 0x.* in " "$log" \
      | grep -v "in fuzzer::" | head -30 >&2 || true
    # A target's own BUG report carries the diagnostics and the IR that show
    # what went wrong; CI keeps only this output, so it is printed whole.
    if grep -q "BUG: " "$log"; then
      echo "[fuzz] the BUG report in full (first 200 lines):" >&2
      sed -n '/BUG: /,/^==[0-9]*== ERROR: /p' "$log" | head -200 >&2
    fi
    reproducer=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -1)
    if [[ -n "$reproducer" ]]; then
      echo "[fuzz] reproducer: $reproducer" >&2
      echo "[fuzz] rerun it:   TMPDIR=/tmp $fuzz/$target $reproducer" >&2
      # CI's folders are gone after the run: the bytes, to rebuild the file
      # with `base64 -d`.
      if (($(stat -c %s "$reproducer") <= 16384)); then
        echo "[fuzz] the reproducer in base64:" >&2
        base64 -w 120 "$reproducer" >&2
      fi
    fi
  elif ((ci)); then
    rm -f "$log"
  fi
done
rm -rf "$tmp"
echo "[fuzz] done in $((SECONDS - total_start)) s"
exit "$failed"

#!/usr/bin/env bash
# The GPU checks in one go, for a machine with an NVIDIA GPU, nvcc, CMake,
# ninja and PyTorch (LibTorch from its wheel), without MLIR, Halide or a
# network (DESIGN section 7). It configures build-gpu with
# -DSLAK_WITH_MLIR=OFF -DSLAK_WITH_HALIDE=OFF against that machine's torch,
# builds the runtime and its tests, and runs the GPU tests: the codegen case
# matrix compiled by NVRTC for the device and checked against the oracle,
# lk_conv / LKConv2d on CUDA tensors against LibTorch, kernel packages on
# CUDA, and a stage-1 timing against PyTorch's CUDA convolution. Logs and
# results go to $OUT (else build-gpu/device-check): summary.txt, one log
# per step, results.txt ("PASS|FAIL|SKIP <step>") and gtest XML.
# Exits 0 when nothing failed. With no GPU (nvidia-smi sees none) the check
# reports SKIP and exits 0; on a machine where nvidia-smi sees a GPU, a step
# that skips tests (the CUDA driver or NVRTC could not be loaded, no device
# visible to the tests) is a FAIL, so the check cannot pass by skipping. It
# ends with a table of every step: result, seconds, detail.
#
# Usage:
#   scripts/device-check.sh                 on the GPU machine
#   scripts/device-check.sh --prepare-deps  on a development machine: copies
#       GoogleTest (sources), nlohmann_json, SQLite and zlib into device-deps/
#       (git-ignored) for a GPU machine that lacks them; carry device-deps
#       along. The check uses device-deps/ when it is there.
# Environment: SLAK_GPU_BUILD_DIR (default build-gpu), SLAK_PYTHON (the
# python3 whose torch to build against), SLAK_DEVICE_CHECK_FORCE=1
# builds and runs the tests even where no GPU is visible (they then SKIP),
# SLAK_DEVICE_CHECK_BUDGET seconds for everything (default 450).
set -uo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
deps="$root/device-deps"

prepare_deps() {
  set -e
  rm -rf "$deps"
  mkdir -p "$deps/prefix/include" "$deps/prefix/lib" "$deps/prefix/share/cmake"
  cp -r /usr/src/googletest "$deps/googletest"
  cp -r /usr/include/nlohmann "$deps/prefix/include/"
  cp -r /usr/share/cmake/nlohmann_json "$deps/prefix/share/cmake/"
  # CLI11 (header-only) for slak-autotune.
  [[ -d /usr/include/CLI ]] && cp -r /usr/include/CLI "$deps/prefix/include/"
  [[ -d /usr/share/cmake/CLI11 ]] && cp -r /usr/share/cmake/CLI11 "$deps/prefix/share/cmake/"
  cp /usr/include/sqlite3.h /usr/include/sqlite3ext.h /usr/include/zlib.h \
    /usr/include/zconf.h "$deps/prefix/include/" 2>/dev/null || true
  local lib=/usr/lib/x86_64-linux-gnu
  for so in libsqlite3.so libz.so; do
    if [[ -e "$lib/$so" ]]; then
      cp -L "$lib/$so" "$deps/prefix/lib/$so"
      # The soname the binaries will ask for at run time.
      soname="$(objdump -p "$lib/$so" 2>/dev/null | awk '/SONAME/ {print $2}')"
      [[ -n "$soname" ]] && cp -L "$lib/$so" "$deps/prefix/lib/$soname"
    fi
  done
  du -sh "$deps"
  echo "device-deps ready: name 'device-deps' in the device run's carry list"
}

if [[ "${1:-}" == "--prepare-deps" ]]; then
  prepare_deps
  exit $?
fi

build="${SLAK_GPU_BUILD_DIR:-$root/build-gpu}"
out="${OUT:-$build/device-check}"
[[ "${1:-}" == "--self-test" ]] && out="$(mktemp -d)" && trap 'rm -rf "$out"' EXIT
mkdir -p "$out"
: >"$out/summary.txt"
: >"$out/results.txt"
: >"$out/figures.txt"
budget="${SLAK_DEVICE_CHECK_BUDGET:-450}"
start=$SECONDS
jobs="$(nproc 2>/dev/null || echo 4)"
failed=0

say() { echo "[device-check] $*" | tee -a "$out/summary.txt"; }
rows=()
result() { # result STATUS STEP [detail] [seconds]
  echo "$1 $2" >>"$out/results.txt"
  say "$1 $2${3:+ ($3)}"
  rows+=("| $2 | $1 | ${4:--} | ${3:-} |")
  [[ "$1" == FAIL ]] && failed=1
  return 0
}
table() {
  {
    echo
    echo "| step | result | seconds | detail |"
    echo "|---|---|---|---|"
    printf '%s\n' "${rows[@]}"
    if [[ -s "$out/figures.txt" ]]; then
      echo
      echo "Benchmark figures:"
      cat "$out/figures.txt"
    fi
  } | tee -a "$out/summary.txt"
}
left() { echo $((budget - (SECONDS - start))); }

# runs STEP SECONDS COMMAND...: logs to $out/STEP.log, PASS/FAIL/SKIP by exit
# status and by "[SKIP]" lines when nothing ran.
run_step() {
  local step="$1" limit="$2"
  shift 2
  local remaining
  remaining="$(left)"
  ((limit > remaining)) && limit=$remaining
  if ((limit < 20)); then
    result FAIL "$step" "no time left in the ${budget}s budget"
    return 1
  fi
  say "running $step (limit ${limit}s): $*"
  local t0=$SECONDS
  timeout --kill-after=10 "$limit" "$@" >"$out/$step.log" 2>&1
  local status=$? took=$((SECONDS - t0))
  # GoogleTest's count of skipped tests, and the first reason printed.
  local skipped reason
  skipped="$(grep -m1 -oE '\[  SKIPPED \] [0-9]+ test' "$out/$step.log" | grep -oE '[0-9]+')"
  reason="$(grep -m1 -oE '\[SKIP\].*' "$out/$step.log")"
  if ((status == 124 || status == 137)); then
    result FAIL "$step" "timed out after ${limit}s, see $step.log" "$took"
  elif ((status != 0)); then
    result FAIL "$step" "exit $status, see $step.log" "$took"
  elif ((gpu == 1)) && [[ -n "$skipped" || -n "$reason" ]]; then
    # A GPU is present: a skipped GPU test means the driver, NVRTC or the
    # device could not be used, which is what this check exists to catch.
    status=1
    result FAIL "$step" "a GPU is present but ${skipped:-some} test(s) skipped: ${reason:-see $step.log}" "$took"
  elif grep -q "\[  PASSED  \] 0 tests" "$out/$step.log" && [[ -n "$reason" ]]; then
    result SKIP "$step" "$reason" "$took"
  else
    result PASS "$step" "" "$took"
  fi
  grep -E "\[timing\]|^device 0:|specs, .* runs" "$out/$step.log" | tee -a "$out/summary.txt" \
    "$out/figures.txt" >/dev/null
  return $status
}

# --self-test: the PASS/SKIP/FAIL rule on canned test logs (run by ctest on
# every machine, GPU or not).
if [[ "${1:-}" == "--self-test" ]]; then
  expect() { # expect WANT GPU STEP OUTPUT
    local want="$1"
    gpu="$2"
    : >"$out/results.txt"
    run_step "$3" 30 printf '%s\n' "$4" >/dev/null 2>&1
    local got
    got="$(cut -d' ' -f1 "$out/results.txt")"
    if [[ "$got" != "$want" ]]; then
      echo "device-check self-test: step $3 with gpu=$gpu gave '$got', expected $want" >&2
      exit 1
    fi
  }
  skipped_log=$'[SKIP] no CUDA device (the CUDA driver could not be loaded)\n[  PASSED  ] 0 tests.\n[  SKIPPED ] 4 tests, listed below:'
  partial_log=$'[  PASSED  ] 3 tests.\n[  SKIPPED ] 1 test, listed below:'
  passed_log=$'[  PASSED  ] 5 tests.'
  expect SKIP 0 no-gpu-skips "$skipped_log"
  expect FAIL 1 gpu-all-skipped "$skipped_log"
  expect FAIL 1 gpu-some-skipped "$partial_log"
  expect PASS 1 gpu-passed "$passed_log"
  expect PASS 0 no-gpu-passed "$passed_log"
  echo "device-check self-test: OK (skips fail where a GPU is present)"
  exit 0
fi

say "slak device check in $root, build $build, logs $out, $(date -u +%FT%TZ)"
gpu=0
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >"$out/nvidia-smi.txt" 2>&1; then
  say "GPU: $(head -1 "$out/nvidia-smi.txt")"
  gpu=1
fi
# The Python with torch: $SLAK_PYTHON, the project's .venv, else python3.
python="${SLAK_PYTHON:-}"
for candidate in "$root/.venv/bin/python" python3; do
  [[ -n "$python" ]] && break
  command -v "$candidate" >/dev/null 2>&1 && "$candidate" -c 'import torch' 2>/dev/null &&
    python="$(command -v "$candidate")"
done
torch_prefix=""
if [[ -n "$python" ]]; then
  torch_prefix="$("$python" -c 'import torch.utils; print(torch.utils.cmake_prefix_path)' 2>/dev/null)"
  "$python" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda,
        "available", torch.cuda.is_available(),
        torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")' \
    2>&1 | tee -a "$out/summary.txt"
fi
if ((gpu == 0)) && [[ "${SLAK_DEVICE_CHECK_FORCE:-0}" != 1 ]]; then
  result SKIP gpu-tests "[SKIP] no CUDA device (set SLAK_DEVICE_CHECK_FORCE=1 to build anyway)"
  table
  exit 0
fi
if [[ -z "$torch_prefix" ]]; then
  result FAIL configure "python3 cannot import torch: LibTorch comes from its wheel"
  table
  exit 1
fi

# Dependencies the machine may lack, from device-deps/ when it travelled.
prefix_path="$torch_prefix"
if [[ -d "$deps" ]]; then
  if [[ -d "$deps/googletest" && ! -f "$build/_deps/gtest/lib/cmake/GTest/GTestConfig.cmake" &&
        ! -f "$build/_deps/gtest/lib64/cmake/GTest/GTestConfig.cmake" ]]; then
    run_step gtest-build 150 bash -c "cmake -S '$deps/googletest' -B '$build/_deps/gtest-build' \
      -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_INSTALL_PREFIX='$build/_deps/gtest' \
      -DCMAKE_POSITION_INDEPENDENT_CODE=ON && cmake --build '$build/_deps/gtest-build' \
      -j$jobs --target install" || { table; exit 1; }
  fi
  prefix_path="$prefix_path;$deps/prefix;$build/_deps/gtest"
  export LD_LIBRARY_PATH="${LD_LIBRARY_PATH:+$LD_LIBRARY_PATH:}$deps/prefix/lib"
fi

run_step configure 200 cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DSLAK_WITH_MLIR=OFF -DSLAK_WITH_HALIDE=OFF -DSLAK_WITH_OPENCL=OFF -DSLAK_WITH_TORCH=ON \
  -DTorch_DIR="$torch_prefix/Torch" -DCMAKE_PREFIX_PATH="$prefix_path" || { table; exit 1; }

run_step build 330 cmake --build "$build" -j"$jobs" --target slak_runtime slak_kernel_cache_test \
  slak_cuda_compile_test slak_runtime_test slak_runtime_cuda_test slak-autotune || { table; exit 1; }

tests="$build/tests"
export SLAK_CACHE_DIR="$build/device-kernel-cache"
rm -rf "$SLAK_CACHE_DIR"
run_step kernel-cache 60 "$tests/slak_kernel_cache_test" --gtest_output="xml:$out/kernel_cache.xml"
# NVRTC for the device's architecture and the driver found by dlopen.
run_step cuda-compile 120 "$tests/slak_cuda_compile_test" --gtest_output="xml:$out/cuda_compile.xml"
# The codegen matrix on the GPU, streams, packages, timing.
run_step cuda-runtime 240 "$tests/slak_runtime_cuda_test" --gtest_output="xml:$out/cuda_runtime.xml"
# lk_conv and LKConv2d on CUDA tensors against LibTorch (the /cuda instances).
run_step cuda-op 180 "$tests/slak_runtime_test" --gtest_filter='*/cuda' \
  --gtest_output="xml:$out/cuda_op.xml"
# The GPU cost model against measurements on this GPU (SLaK-T layers, batch
# 8, density 0.6): Kendall tau over the model's top 10 and the model pick's
# distance from the measured best, per kernel ("model vs measured" blocks).
run_step model-vs-measured 240 "$build/bin/slak-autotune" --gpu local --slak-t \
  --report-model-vs-measured --measure-top 10 --exhaustive-limit 0 --repeats 5 --warmup 2 \
  --top 10 --db "$out/tuning.db" --quiet
grep -E "^device:|^layer:|model vs measured|Kendall tau over the model|pick:|best:" \
  "$out/model-vs-measured.log" >>"$out/summary.txt" 2>/dev/null
# Second run of the compile test: every image now comes from the disk cache.
run_step cuda-cache-warm 60 "$tests/slak_cuda_compile_test" \
  --gtest_filter='NvrtcCompileTest.ImagesAreCachedInMemoryAndOnDisk'

table
say "done in $((SECONDS - start))s: $(grep -c '^PASS' "$out/results.txt") pass, \
$(grep -c '^SKIP' "$out/results.txt") skip, $(grep -c '^FAIL' "$out/results.txt") fail"
((failed)) && say "FAILED: $(grep '^FAIL' "$out/results.txt" | cut -d' ' -f2 | tr '\n' ' ')"
exit $failed

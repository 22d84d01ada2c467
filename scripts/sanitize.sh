#!/usr/bin/env bash
# Builds the LibTorch-free parts of slak with AddressSanitizer and
# UndefinedBehaviorSanitizer (-DSLAK_SANITIZE=address,undefined) in
# build-asan/ and runs their tests: tap tables and specs, the reference
# oracle, codegen (emitter, the PoCL matrix, nvcc compiles), autotune (cost
# models, schedule spaces, the SQLite database), the kernel cache and the
# NVRTC compile path. Any report fails the run.
#
# Left out, and why: LibTorch-based targets (runtime op, models, trainer,
# Python) because the torch wheel's libraries are not instrumented and ASan
# there reports in LibTorch's own allocator paths rather than ours; Halide
# (its JIT-compiled pipelines are uninstrumented machine code); MLIR targets
# (fuzzed with ASan/UBSan by scripts/fuzz.sh instead).
# Suppressions (tests/sanitize/*.supp) name third-party libraries only.
#
# Usage: scripts/sanitize.sh [ctest arguments]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${SLAK_ASAN_BUILD_DIR:-$root/build-asan}"
bash "$root/scripts/setup.sh" >/dev/null
export CCACHE_DIR="${CCACHE_DIR:-$HOME/.cache/ccache}" CCACHE_BASEDIR="$root"
generator=()
command -v ninja >/dev/null && generator=(-G Ninja)
if [[ ! -f "$build/CMakeCache.txt" ]]; then
  cmake -S "$root" -B "$build" "${generator[@]}" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DSLAK_SANITIZE=address,undefined -DSLAK_WITH_MLIR=OFF -DSLAK_WITH_TORCH=OFF \
    -DSLAK_WITH_HALIDE=OFF >/dev/null
fi
cmake --build "$build" -j"$(nproc)"
supp="$root/tests/sanitize"
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1:strict_string_checks=1:detect_stack_use_after_return=1"
export LSAN_OPTIONS="suppressions=$supp/lsan.supp:print_suppressions=0"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:suppressions=$supp/ubsan.supp"
cd "$build"
ctest --output-on-failure -j"$(nproc)" "$@"

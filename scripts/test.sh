#!/usr/bin/env bash
# Sets up, builds everything and runs every test (lit, GoogleTest, pytest)
# with ctest; then the hardening stages: the LibTorch-free parts under ASan
# and UBSan (scripts/sanitize.sh) and the libFuzzer targets for 60 s each
# (scripts/fuzz.sh --ci). Arguments go to the first ctest.
# SLAK_TEST_STAGES="main sanitize fuzz" picks stages (default: all).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${SLAK_BUILD_DIR:-$root/build}"
stages="${SLAK_TEST_STAGES:-main sanitize fuzz}"
if [[ " $stages " == *" main "* ]]; then
  bash "$root/scripts/build.sh"
  (cd "$build" && ctest --output-on-failure -j"$(nproc)" "$@")
fi
if [[ " $stages " == *" sanitize "* ]]; then
  echo "[test] sanitizer stage: scripts/sanitize.sh"
  bash "$root/scripts/sanitize.sh"
fi
if [[ " $stages " == *" fuzz "* ]]; then
  echo "[test] fuzz stage: scripts/fuzz.sh --ci"
  bash "$root/scripts/fuzz.sh" --ci
fi

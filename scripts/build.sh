#!/usr/bin/env bash
# Sets up what is missing (scripts/setup.sh), configures build/ and builds.
# Usage: scripts/build.sh [cmake --build arguments, e.g. --target slak-opt]
# Extra configure options: SLAK_CMAKE_ARGS="-DSLAK_WITH_MLIR=OFF" scripts/build.sh
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${SLAK_BUILD_DIR:-$root/build}"
bash "$root/scripts/setup.sh"
export CCACHE_DIR="${CCACHE_DIR:-$HOME/.cache/ccache}"
# Paths relative to the checkout, so that clones in other folders share hits.
export CCACHE_BASEDIR="${CCACHE_BASEDIR:-$root}"
generator=()
command -v ninja >/dev/null && generator=(-G Ninja)
if [[ ! -f "$build/CMakeCache.txt" ]]; then
  cmake -S "$root" -B "$build" "${generator[@]}" ${SLAK_CMAKE_ARGS:-}
elif [[ -n "${SLAK_CMAKE_ARGS:-}" ]]; then
  cmake "$build" ${SLAK_CMAKE_ARGS}
fi
cmake --build "$build" -j"$(nproc)" "$@"

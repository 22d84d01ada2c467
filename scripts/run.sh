#!/usr/bin/env bash
# The project's main job: set up, build, and compile the example model
# (a SLaK-T stage-1 large-kernel layer) with slak-opt, printing the IR.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${SLAK_BUILD_DIR:-$root/build}"
bash "$root/scripts/build.sh" --target slak-opt
echo "[run] slak-opt examples/slak_t_stage1.mlir"
"$build/bin/slak-opt" "$root/examples/slak_t_stage1.mlir"

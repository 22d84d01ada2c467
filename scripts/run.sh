#!/usr/bin/env bash
# The project's main job: set up, build, and compile the example model
# (a SLaK-T stage-1 large-kernel layer: three masked branches, three batch
# norms) with slak-opt into one folded, merged, sparsity-specialised
# slak.lk_conv, printing the IR (large constants elided).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${SLAK_BUILD_DIR:-$root/build}"
bash "$root/scripts/build.sh" --target slak-opt
echo "[run] slak-opt examples/slak_t_stage1.mlir --slak-pipeline=mode=infer"
"$build/bin/slak-opt" "$root/examples/slak_t_stage1.mlir" --slak-pipeline=mode=infer \
  --mlir-elide-resource-strings-if-larger=64 --mlir-elide-elementsattrs-if-larger=16

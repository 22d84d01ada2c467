#!/usr/bin/env bash
# The project's main job: set up what is missing, build, then
#  1. compile the example model (a SLaK-T stage-1 large-kernel layer: three
#     masked branches, three batch norms) with slak-opt into one folded,
#     merged, sparsity-specialised slak.lk_conv, printing the IR;
#  2. train slak_nano briefly on Fashion-MNIST through the generated kernels
#     (dynamic sparsity on, the runtime's CPU backend) and print test accuracy;
#  3. deploy it: slak-export -> slak-opt -> slak-translate kernel package ->
#     slak-infer and slak-train --eval-only served by the package.
# Outputs go to runs/quick/ (SLAK_RUN_DIR). A longer run: SLAK_RUN_EPOCHS=3
# SLAK_RUN_TRAIN_LIMIT=0 (all 60k images, about an hour on 2 cores).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${SLAK_BUILD_DIR:-$root/build}"
out="${SLAK_RUN_DIR:-$root/runs/quick}"
epochs="${SLAK_RUN_EPOCHS:-1}"
train_limit="${SLAK_RUN_TRAIN_LIMIT:-8192}"
threads="${SLAK_RUN_THREADS:-$(nproc)}"
bin="$build/bin"

bash "$root/scripts/build.sh" --target slak-opt slak-translate slak-train slak-export slak-infer

step() { echo; echo "[run] $*"; }

step "slak-opt examples/slak_t_stage1.mlir --slak-pipeline=mode=infer"
"$bin/slak-opt" "$root/examples/slak_t_stage1.mlir" --slak-pipeline=mode=infer \
  --mlir-elide-resource-strings-if-larger=64 --mlir-elide-elementsattrs-if-larger=16

mkdir -p "$out"
limit_args=() images="all 60000"
if [[ "$train_limit" != 0 ]]; then
  limit_args=(--train-limit "$train_limit")
  images="$train_limit"
fi
step "slak-train slak_nano on Fashion-MNIST ($images images, $epochs epoch(s), $threads threads) -> $out"
"$bin/slak-train" --model slak_nano "${limit_args[@]}" --epochs "$epochs" --batch-size 64 \
  --lr 3e-3 --threads "$threads" --out-dir "$out"

step "slak-export -> $out/model.mlir (each layer checked against the oracle)"
"$bin/slak-export" --model slak_nano --checkpoint "$out/checkpoint.pt" -o "$out/model.mlir" --check

step "slak-opt --slak-pipeline=mode=infer -> $out/model.opt.mlir"
"$bin/slak-opt" "$out/model.mlir" --slak-pipeline=mode=infer -o "$out/model.opt.mlir"

step "slak-translate --emit-kernel-package -> $out/pkg"
rm -rf "$out/pkg"
"$bin/slak-translate" --emit-kernel-package -o "$out/pkg" "$out/model.opt.mlir"

step "slak-infer: 16 test images through the kernel package"
"$bin/slak-infer" --model slak_nano --checkpoint "$out/checkpoint.pt" --kernels "$out/pkg" --images 16

step "slak-train --eval-only: the test split through the kernel package"
"$bin/slak-train" --model slak_nano --eval-only --checkpoint "$out/checkpoint.pt" \
  --kernels "$out/pkg" --threads "$threads"

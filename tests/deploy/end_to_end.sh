#!/usr/bin/env bash
# The AOT path end to end with the real tools, on a tiny checkpoint:
#   slak-train (synthetic data, 4 steps, masks updated twice) -> slak-export --check
#   -> slak-opt --slak-pipeline=mode=infer -> slak-translate --emit-kernel-package
#   -> slak-infer --kernels and slak-train --eval-only --kernels,
# which must agree with the JIT-served model; a package of other weights and
# masks (random init) must be refused.
# Usage: end_to_end.sh BIN_DIR
set -euo pipefail
bin="$1"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
fail() {
  echo "FAIL: $*" >&2
  exit 1
}

"$bin/slak-train" --model slak_nano --dataset synthetic --synthetic-train 256 --synthetic-test 64 \
  --epochs 1 --batch-size 32 --max-steps 4 --update-frequency 2 --threads 1 --no-progress \
  --out-dir "$work/run"
ckpt="$work/run/checkpoint.pt"
"$bin/slak-export" --model slak_nano --checkpoint "$ckpt" -o "$work/model.mlir" --check --threads 1
grep -q 'func.func @stages.0.0.large_kernel(%arg0: tensor<?x41x14x14xf32>' "$work/model.mlir" ||
  fail "slak-export wrote no function named after stages.0.0.large_kernel"
"$bin/slak-opt" "$work/model.mlir" --slak-pipeline=mode=infer --mlir-print-debuginfo \
  -o "$work/model.opt.mlir"
"$bin/slak-translate" --emit-kernel-package -o "$work/pkg" "$work/model.opt.mlir"
for layer in stages.0.0 stages.0.1 stages.1.0 stages.1.1 stages.2.0 stages.2.1; do
  grep -q "\"name\": \"$layer.large_kernel\"" "$work/pkg/manifest.json" ||
    fail "the package has no op named $layer.large_kernel"
done

common=(--model slak_nano --checkpoint "$ckpt" --dataset synthetic --images 32 --threads 1)
"$bin/slak-infer" "${common[@]}" --kernels "$work/pkg" | tee "$work/infer-pkg.txt"
"$bin/slak-infer" "${common[@]}" >"$work/infer-jit.txt"
grep -q "6 large-kernel layer(s) served by kernel package" "$work/infer-pkg.txt" ||
  fail "slak-infer did not serve the layers from the package"
diff <(grep -E 'predicted|accuracy' "$work/infer-pkg.txt") \
  <(grep -E 'predicted|accuracy' "$work/infer-jit.txt") ||
  fail "package-served and JIT predictions differ"

eval_common=(--model slak_nano --dataset synthetic --synthetic-test 64 --threads 1
  --eval-only --checkpoint "$ckpt")
pkg_line="$("$bin/slak-train" "${eval_common[@]}" --kernels "$work/pkg")"
jit_line="$("$bin/slak-train" "${eval_common[@]}")"
echo "$pkg_line"
echo "$jit_line"
[[ "$pkg_line" == *"served by kernel package"* ]] || fail "slak-train --eval-only ignored --kernels"
pkg_acc="$(grep -oE 'test loss [0-9.]+, test acc [0-9.]+%' <<<"$pkg_line")"
jit_acc="$(grep -oE 'test loss [0-9.]+, test acc [0-9.]+%' <<<"$jit_line")"
[[ -n "$pkg_acc" && "$pkg_acc" == "$jit_acc" ]] ||
  fail "slak-train --eval-only: '$pkg_acc' with the package, '$jit_acc' without"

# A package of another state of the model (random init) is refused, never run.
"$bin/slak-export" --model slak_nano -o "$work/random.mlir" --seed 7
"$bin/slak-opt" "$work/random.mlir" --slak-pipeline=mode=infer --mlir-print-debuginfo |
  "$bin/slak-translate" --emit-kernel-package -o "$work/random-pkg"
if "$bin/slak-infer" "${common[@]}" --kernels "$work/random-pkg" >"$work/refused.txt" 2>&1; then
  fail "slak-infer accepted a package built for other weights and masks"
fi
cat "$work/refused.txt"
grep -q "refusing kernel package .*re-export the model" "$work/refused.txt" ||
  fail "the refusal does not say what differs and how to fix it"
if grep -q "predicted" "$work/refused.txt"; then fail "the refused package ran"; fi
echo "end to end: OK"

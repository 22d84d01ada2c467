// A layer whose every tap is dead (all-zero weights, no masks, nothing
// trimmed): its tap table has offsets and no taps. The package writer copied
// the empty tap list with memcpy from a null pointer (undefined behaviour,
// found by slak-fuzz-ir under UBSan; docs/fuzzing.md); the package holds the
// table with zero taps.
// RUN: rm -rf %t && slak-opt %s --fuse-lk=mode=infer --specialize-sparsity="trim=false density-threshold=0" \
// RUN:   | slak-translate --emit-kernel-package -o %t 2>&1 | FileCheck %s --check-prefix=LOG
// RUN: FileCheck %s < %t/manifest.json
// LOG: slak-translate: wrote 1 op(s) to
// CHECK:      "tap_table": {
// CHECK-NEXT:   "offsets": {
// CHECK-NEXT:     "count": 5,
// CHECK:        "taps": {
// CHECK-NEXT:     "count": 0,
func.func @all_taps_dead(%x: tensor<1x2x5x5xf32>) -> tensor<1x2x5x5xf32> {
  %a = arith.constant dense<0.0> : tensor<2x1x3x3xf32>
  %b = arith.constant dense<0.0> : tensor<2x1x5x1xf32>
  %0 = slak.dwconv2d %x, %a : tensor<1x2x5x5xf32>, tensor<2x1x3x3xf32> -> tensor<1x2x5x5xf32>
  %1 = slak.dwconv2d %x, %b : tensor<1x2x5x5xf32>, tensor<2x1x5x1xf32> -> tensor<1x2x5x5xf32>
  %2 = arith.addf %0, %1 : tensor<1x2x5x5xf32>
  return %2 : tensor<1x2x5x5xf32>
}

// RUN: slak-opt %s -split-input-file --specialize-sparsity=density-threshold=0.85 | FileCheck %s

// One channel, 3x3, live taps (0,0) and (1,1): offsets [0, 2], taps
// [0, 65537] -> the blob (a u32 alignment of 4, then little-endian i32s).
// The zeros of a constant weight are its mask; the mask is folded away.
// CHECK-LABEL: func.func @tap_table
// CHECK: %[[W:.*]] = arith.constant dense<{{\[\[\[\[}}1.000000e+00, 0.000000e+00, 0.000000e+00], [0.000000e+00, 2.000000e+00, 0.000000e+00], [0.000000e+00, 0.000000e+00, 0.000000e+00]]]]>
// CHECK: slak.lk_conv %{{.*}} weights(%[[W]] : tensor<1x1x3x3xf32>) {tap_table = dense_resource<[[T:.*]]> : tensor<4xi32>,
// CHECK-SAME: taps = #slak.taps<branches = [#slak.branch_taps<kernel = [3, 3], nnz = [2, 2], mean = 2.0, density = 0.2222222222222222, window = [0, 2, 0, 2], form = table>], table = "[[T]]", channel_order = [0]>}
// CHECK: [[T]]: "0x040000000000000002000000000000000100010
func.func @tap_table(%x: tensor<1x1x5x5xf32>) -> tensor<1x1x5x5xf32> {
  %w = arith.constant dense<[[[[1.0, 7.0, 7.0], [7.0, 2.0, 7.0], [7.0, 7.0, 7.0]]]]> : tensor<1x1x3x3xf32>
  %m = arith.constant dense<[[[[true, false, false], [false, true, false], [false, false, false]]]]> : tensor<1x1x3x3xi1>
  %y = slak.lk_conv %x weights(%w : tensor<1x1x3x3xf32>) masks(%m : tensor<1x1x3x3xi1>) : tensor<1x1x5x5xf32> -> tensor<1x1x5x5xf32>
  return %y : tensor<1x1x5x5xf32>
}

// -----

// A 5x5 branch whose live taps all sit in row 2, columns 1..3, is trimmed
// symmetrically to 1x3 ("same" padding again, so no paddings attribute), its
// mask folded into the weight; a dense branch (density 1 >= 0.85) takes the
// dense form; channel 1 has more live taps and runs first. The old constants
// are gone.
// CHECK-LABEL: func.func @trim_and_forms
// CHECK-NOT: tensor<2x1x5x5x
// CHECK: %[[W:.*]] = arith.constant dense<{{\[\[\[\[}}1.000000e+00, 0.000000e+00, 0.000000e+00]]], {{\[\[\[}}1.000000e+00, 0.000000e+00, 1.000000e+00]]]]> : tensor<2x1x1x3xf32>
// CHECK-NOT: tensor<2x1x5x5x
// CHECK: slak.lk_conv %{{.*}} weights(%[[W]], %{{.*}} : tensor<2x1x1x3xf32>, tensor<2x1x1x3xf32>)
// CHECK-NOT: paddings
// CHECK-SAME: #slak.branch_taps<kernel = [1, 3], nnz = [1, 2], mean = 1.5, density = 0.5, window = [0, 1, 0, 3], form = table>
// CHECK-SAME: #slak.branch_taps<kernel = [1, 3], nnz = [3, 3], mean = 3.0, density = 1.0, window = [0, 1, 0, 3], form = dense>
// CHECK-SAME: channel_order = [1, 0]
func.func @trim_and_forms(%x: tensor<1x2x6x6xf32>) -> tensor<1x2x6x6xf32> {
  %w = arith.constant dense<1.0> : tensor<2x1x5x5xf32>
  %m = arith.constant dense<[[[[false, false, false, false, false], [false, false, false, false, false], [false, true, false, false, false], [false, false, false, false, false], [false, false, false, false, false]]],
                             [[[false, false, false, false, false], [false, false, false, false, false], [false, true, false, true, false], [false, false, false, false, false], [false, false, false, false, false]]]]> : tensor<2x1x5x5xi1>
  %v = arith.constant dense<2.0> : tensor<2x1x1x3xf32>
  %t = arith.constant dense<true> : tensor<2x1x1x3xi1>
  %y = slak.lk_conv %x weights(%w, %v : tensor<2x1x5x5xf32>, tensor<2x1x1x3xf32>) masks(%m, %t : tensor<2x1x5x5xi1>, tensor<2x1x1x3xi1>) : tensor<1x2x6x6xf32> -> tensor<1x2x6x6xf32>
  return %y : tensor<1x2x6x6xf32>
}

// -----

// Only the top row is dead: a symmetric trim cannot remove it (the output
// size would change), so the window stays.
// CHECK-LABEL: func.func @no_asymmetric_trim
// CHECK: weights(%{{.*}} : tensor<1x1x3x1xf32>)
// CHECK-SAME: window = [1, 3, 0, 1]
func.func @no_asymmetric_trim(%x: tensor<1x1x4x4xf32>) -> tensor<1x1x4x4xf32> {
  %w = arith.constant dense<[[[[0.0], [1.0], [1.0]]]]> : tensor<1x1x3x1xf32>
  %y = slak.lk_conv %x weights(%w : tensor<1x1x3x1xf32>) : tensor<1x1x4x4xf32> -> tensor<1x1x4x4xf32>
  return %y : tensor<1x1x4x4xf32>
}

// -----

// A branch without a live tap adds nothing to a sum and is dropped.
// CHECK-LABEL: func.func @drop_empty
// CHECK: weights(%{{.*}} : tensor<1x1x1x3xf32>)
// CHECK-SAME: taps = #slak.taps<branches = [#slak.branch_taps<kernel = [1, 3]
func.func @drop_empty(%x: tensor<1x1x4x4xf32>) -> tensor<1x1x4x4xf32> {
  %w0 = arith.constant dense<0.0> : tensor<1x1x3x1xf32>
  %w1 = arith.constant dense<1.0> : tensor<1x1x1x3xf32>
  %y = slak.lk_conv %x weights(%w0, %w1 : tensor<1x1x3x1xf32>, tensor<1x1x1x3xf32>) : tensor<1x1x4x4xf32> -> tensor<1x1x4x4xf32>
  return %y : tensor<1x1x4x4xf32>
}

// -----

// Masks that are not constants: the runtime builds the tables.
// CHECK-LABEL: func.func @runtime_masks
// CHECK: slak.lk_conv {{.*}} {runtime_sparse}
// CHECK-NOT: taps
func.func @runtime_masks(%x: tensor<1x1x4x4xf32>, %w: tensor<1x1x3x1xf32>, %m: tensor<1x1x3x1xi1>) -> tensor<1x1x4x4xf32> {
  %y = slak.lk_conv %x weights(%w : tensor<1x1x3x1xf32>) masks(%m : tensor<1x1x3x1xi1>) : tensor<1x1x4x4xf32> -> tensor<1x1x4x4xf32>
  return %y : tensor<1x1x4x4xf32>
}

// -----

// A weight that is an argument with a constant mask: the table comes from the
// mask, which stays as the op's semantics; in the dense form the masked
// weights are zeroed with a select.
// CHECK-LABEL: func.func @argument_weight
// CHECK-SAME: (%[[X:.*]]: {{.*}}, %[[W:.*]]: tensor<1x1x3x1xf32>, %[[V:.*]]: tensor<1x1x1x7xf32>)
// CHECK-DAG: %[[M:.*]] = arith.constant dense<{{\[\[\[\[}}true], [false], [false]]]]> : tensor<1x1x3x1xi1>
// CHECK-DAG: %[[MV:.*]] = arith.constant dense<{{\[\[\[\[}}true, true, true, true, true, true, false]]]]> : tensor<1x1x1x7xi1>
// CHECK-DAG: %[[Z:.*]] = arith.constant dense<0.000000e+00> : tensor<1x1x1x7xf32>
// CHECK: %[[SEL:.*]] = arith.select %[[MV]], %[[V]], %[[Z]]
// CHECK: slak.lk_conv %[[X]] weights(%[[W]], %[[SEL]] : {{.*}}) masks(%[[M]], %[[MV]] : {{.*}})
// CHECK-SAME: form = table
// CHECK-SAME: form = dense
func.func @argument_weight(%x: tensor<1x1x4x4xf32>, %w: tensor<1x1x3x1xf32>, %v: tensor<1x1x1x7xf32>) -> tensor<1x1x4x4xf32> {
  %m = arith.constant dense<[[[[true], [false], [false]]]]> : tensor<1x1x3x1xi1>
  %mv = arith.constant dense<[[[[true, true, true, true, true, true, false]]]]> : tensor<1x1x1x7xi1>
  %y = slak.lk_conv %x weights(%w, %v : tensor<1x1x3x1xf32>, tensor<1x1x1x7xf32>) masks(%m, %mv : tensor<1x1x3x1xi1>, tensor<1x1x1x7xi1>) : tensor<1x1x4x4xf32> -> tensor<1x1x4x4xf32>
  return %y : tensor<1x1x4x4xf32>
}

// -----

// Dense weights that are arguments, no masks: every tap is live.
// CHECK-LABEL: func.func @dense_arguments
// CHECK: #slak.branch_taps<kernel = [3, 1], nnz = [3, 3], mean = 3.0, density = 1.0, window = [0, 3, 0, 1], form = dense>
func.func @dense_arguments(%x: tensor<1x2x4x4xf32>, %w: tensor<2x1x3x1xf32>) -> tensor<1x2x4x4xf32> {
  %y = slak.lk_conv %x weights(%w : tensor<2x1x3x1xf32>) : tensor<1x2x4x4xf32> -> tensor<1x2x4x4xf32>
  return %y : tensor<1x2x4x4xf32>
}

// -----

// A layer without channels has no taps: mean and density are 0 (0/0 would
// print as a NaN that no parser reads back; found by slak-fuzz-ir).
// CHECK-LABEL: func.func @zero_channels
// CHECK: #slak.branch_taps<kernel = [3, 3], nnz = [0, 0], mean = 0.0, density = 0.0, window = [0, 0, 0, 0]
func.func @zero_channels(%x: tensor<1x0x5x5xf32>) -> tensor<1x0x5x5xf32> {
  %w = arith.constant dense<1.0> : tensor<0x1x3x3xf32>
  %v = arith.constant dense<1.0> : tensor<0x1x5x1xf32>
  %y = slak.lk_conv %x weights(%w, %v : tensor<0x1x3x3xf32>, tensor<0x1x5x1xf32>) : tensor<1x0x5x5xf32> -> tensor<1x0x5x5xf32>
  return %y : tensor<1x0x5x5xf32>
}

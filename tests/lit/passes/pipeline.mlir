// RUN: slak-opt %s --slak-pipeline=mode=infer | FileCheck %s --check-prefix=INFER
// RUN: slak-opt %s --slak-pipeline | FileCheck %s --check-prefix=TRAIN

// The named pipeline: fuse, canonicalise, specialise.
// INFER-LABEL: func.func @block
// INFER-NOT: slak.batch_norm
// INFER: slak.lk_conv {{.*}} weights({{.*}} : tensor<2x1x5x3xf32>) bias({{.*}}) {tap_table = dense_resource<slak_taps_0>
// INFER-SAME: #slak.branch_taps<kernel = [5, 3]
// INFER-NOT: slak.dwconv2d

// TRAIN-LABEL: func.func @block
// TRAIN: slak.lk_conv {{.*}} weights({{.*}} : tensor<2x1x5x3xf32>, tensor<2x1x3x3xf32>) {per_branch_outputs, tap_table
// TRAIN-COUNT-2: slak.batch_norm
func.func @block(%x: tensor<1x2x6x6xf32>) -> tensor<1x2x6x6xf32> {
  %w0 = arith.constant dense<0.5> : tensor<2x1x5x3xf32>
  %w1 = arith.constant dense<0.25> : tensor<2x1x3x3xf32>
  %p = arith.constant dense<1.0> : tensor<2xf32>
  %z = arith.constant dense<0.0> : tensor<2xf32>
  %0 = slak.dwconv2d %x, %w0 : tensor<1x2x6x6xf32>, tensor<2x1x5x3xf32> -> tensor<1x2x6x6xf32>
  %1 = slak.batch_norm %0, %z, %p, %p, %z : tensor<1x2x6x6xf32>, tensor<2xf32>
  %2 = slak.dwconv2d %x, %w1 : tensor<1x2x6x6xf32>, tensor<2x1x3x3xf32> -> tensor<1x2x6x6xf32>
  %3 = slak.batch_norm %2, %z, %p, %p, %z : tensor<1x2x6x6xf32>, tensor<2xf32>
  %4 = arith.addf %1, %3 : tensor<1x2x6x6xf32>
  return %4 : tensor<1x2x6x6xf32>
}

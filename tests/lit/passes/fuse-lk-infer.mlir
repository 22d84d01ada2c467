// RUN: slak-opt %s -split-input-file --fuse-lk=mode=infer -verify-diagnostics | FileCheck %s

// Hand-computed structural re-parameterisation, one channel:
//   3x1 branch w = [1, 2, 3], BN(mean 1, var 3, gamma 2, beta 0.5, eps 1):
//     scale = 2 / sqrt(3 + 1) = 1, w' = [1, 2, 3], b' = (0 - 1) * 1 + 0.5 = -0.5
//   1x1 branch w = [4], BN(mean 0, var 0, gamma 1, beta 1, eps 0.25):
//     scale = 1 / sqrt(0.25) = 2, w' = [8], b' = 1
//   merged (1x1 into the centre of 3x1): [1, 10, 3], bias 0.5
// CHECK-LABEL: func.func @fold_and_merge
// CHECK-DAG: %[[W:.*]] = arith.constant dense<{{\[\[\[\[}}1.000000e+00], [1.000000e+01], [3.000000e+00]]]]> : tensor<1x1x3x1xf32>
// CHECK-DAG: %[[B:.*]] = arith.constant dense<5.000000e-01> : tensor<1xf32>
// CHECK: %[[Y:.*]] = slak.lk_conv %{{.*}} weights(%[[W]] : tensor<1x1x3x1xf32>) bias(%[[B]] : tensor<1xf32>) : tensor<1x1x4x4xf32> -> tensor<1x1x4x4xf32>
// CHECK-NEXT: return %[[Y]]
// CHECK-NOT: slak.batch_norm
func.func @fold_and_merge(%x: tensor<1x1x4x4xf32>) -> tensor<1x1x4x4xf32> {
  %w0 = arith.constant dense<[[[[1.0], [2.0], [3.0]]]]> : tensor<1x1x3x1xf32>
  %w1 = arith.constant dense<4.0> : tensor<1x1x1x1xf32>
  %m0 = arith.constant dense<1.0> : tensor<1xf32>
  %v0 = arith.constant dense<3.0> : tensor<1xf32>
  %g0 = arith.constant dense<2.0> : tensor<1xf32>
  %b0 = arith.constant dense<0.5> : tensor<1xf32>
  %zero = arith.constant dense<0.0> : tensor<1xf32>
  %one = arith.constant dense<1.0> : tensor<1xf32>
  %0 = slak.dwconv2d %x, %w0 : tensor<1x1x4x4xf32>, tensor<1x1x3x1xf32> -> tensor<1x1x4x4xf32>
  %1 = slak.batch_norm %0, %m0, %v0, %g0, %b0 {epsilon = 1.0 : f32} : tensor<1x1x4x4xf32>, tensor<1xf32>
  %2 = slak.dwconv2d %x, %w1 : tensor<1x1x4x4xf32>, tensor<1x1x1x1xf32> -> tensor<1x1x4x4xf32>
  %3 = slak.batch_norm %2, %zero, %zero, %one, %one {epsilon = 0.25 : f32} : tensor<1x1x4x4xf32>, tensor<1xf32>
  %4 = arith.addf %1, %3 : tensor<1x1x4x4xf32>
  return %4 : tensor<1x1x4x4xf32>
}

// -----

// Masks zero their taps before the fold; a conv bias goes through its BN;
// windows that do not nest (3x1 and 1x3) stay separate branches, the 1x1
// merges into the first that holds it.
// mask [1, 0, 1] on w = [1, 2, 3] -> [1, 0, 3]; bias 2 with BN(mean 0, var 0,
// gamma 1, beta 0, eps 1) -> scale 1, b' = 2; 1x3 branch [5, 6, 7], 1x1 [4].
// CHECK-LABEL: func.func @masks_bias_no_nesting
// CHECK-DAG: arith.constant dense<{{\[\[\[\[}}1.000000e+00], [4.000000e+00], [3.000000e+00]]]]> : tensor<1x1x3x1xf32>
// CHECK-DAG: arith.constant dense<{{\[\[\[\[}}5.000000e+00, 6.000000e+00, 7.000000e+00]]]]> : tensor<1x1x1x3xf32>
// CHECK-DAG: arith.constant dense<2.000000e+00> : tensor<1xf32>
// CHECK: slak.lk_conv %{{.*}} weights(%{{.*}}, %{{.*}} : tensor<1x1x3x1xf32>, tensor<1x1x1x3xf32>) bias(%{{.*}} : tensor<1xf32>)
func.func @masks_bias_no_nesting(%x: tensor<1x1x4x4xf32>) -> tensor<1x1x4x4xf32> {
  %w0 = arith.constant dense<[[[[1.0], [2.0], [3.0]]]]> : tensor<1x1x3x1xf32>
  %mask = arith.constant dense<[[[[true], [false], [true]]]]> : tensor<1x1x3x1xi1>
  %w1 = arith.constant dense<[[[[5.0, 6.0, 7.0]]]]> : tensor<1x1x1x3xf32>
  %w2 = arith.constant dense<4.0> : tensor<1x1x1x1xf32>
  %bias = arith.constant dense<2.0> : tensor<1xf32>
  %zero = arith.constant dense<0.0> : tensor<1xf32>
  %one = arith.constant dense<1.0> : tensor<1xf32>
  %0 = slak.dwconv2d %x, %w0 mask(%mask : tensor<1x1x3x1xi1>) bias(%bias : tensor<1xf32>) : tensor<1x1x4x4xf32>, tensor<1x1x3x1xf32> -> tensor<1x1x4x4xf32>
  %1 = slak.batch_norm %0, %zero, %zero, %one, %zero {epsilon = 1.0 : f32} : tensor<1x1x4x4xf32>, tensor<1xf32>
  %2 = slak.dwconv2d %x, %w1 : tensor<1x1x4x4xf32>, tensor<1x1x1x3xf32> -> tensor<1x1x4x4xf32>
  %3 = slak.dwconv2d %x, %w2 : tensor<1x1x4x4xf32>, tensor<1x1x1x1xf32> -> tensor<1x1x4x4xf32>
  %4 = arith.addf %1, %2 : tensor<1x1x4x4xf32>
  %5 = arith.addf %4, %3 : tensor<1x1x4x4xf32>
  return %5 : tensor<1x1x4x4xf32>
}

// -----

// Weights that are not constants: fused as in train mode, with a remark.
// CHECK-LABEL: func.func @not_constant
// CHECK: slak.lk_conv {{.*}} {per_branch_outputs}
// CHECK-COUNT-2: slak.batch_norm
func.func @not_constant(%x: tensor<1x2x5x5xf32>, %a: tensor<2x1x3x3xf32>, %b: tensor<2x1x5x1xf32>, %p: tensor<2xf32>) -> tensor<1x2x5x5xf32> {
  // expected-remark @+1 {{slak-fuse-lk: fused without folding batch norms or merging kernels: the weight of branch 0 is not a constant}}
  %0 = slak.dwconv2d %x, %a : tensor<1x2x5x5xf32>, tensor<2x1x3x3xf32> -> tensor<1x2x5x5xf32>
  %1 = slak.batch_norm %0, %p, %p, %p, %p : tensor<1x2x5x5xf32>, tensor<2xf32>
  %2 = slak.dwconv2d %x, %b : tensor<1x2x5x5xf32>, tensor<2x1x5x1xf32> -> tensor<1x2x5x5xf32>
  %3 = slak.batch_norm %2, %p, %p, %p, %p : tensor<1x2x5x5xf32>, tensor<2xf32>
  %4 = arith.addf %1, %3 : tensor<1x2x5x5xf32>
  return %4 : tensor<1x2x5x5xf32>
}

// -----

// Batch-norm statistics that are arguments also stop the fold.
// CHECK-LABEL: func.func @statistics_not_constant
// CHECK: slak.lk_conv {{.*}} {per_branch_outputs}
func.func @statistics_not_constant(%x: tensor<1x2x5x5xf32>, %p: tensor<2xf32>) -> tensor<1x2x5x5xf32> {
  %a = arith.constant dense<1.0> : tensor<2x1x3x3xf32>
  %b = arith.constant dense<1.0> : tensor<2x1x5x1xf32>
  // expected-remark @+1 {{slak-fuse-lk: fused without folding batch norms or merging kernels: the batch norm statistics of branch 0 are not constants}}
  %0 = slak.dwconv2d %x, %a : tensor<1x2x5x5xf32>, tensor<2x1x3x3xf32> -> tensor<1x2x5x5xf32>
  %1 = slak.batch_norm %0, %p, %p, %p, %p : tensor<1x2x5x5xf32>, tensor<2xf32>
  %2 = slak.dwconv2d %x, %b : tensor<1x2x5x5xf32>, tensor<2x1x5x1xf32> -> tensor<1x2x5x5xf32>
  %3 = arith.addf %1, %2 : tensor<1x2x5x5xf32>
  return %3 : tensor<1x2x5x5xf32>
}

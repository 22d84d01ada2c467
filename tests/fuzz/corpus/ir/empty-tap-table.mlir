
// Batch-norm statistics that are arguments also stop the fold.
// CHECK-LABEL: func.func @statistics_not_constant
// CHECK: slak.lk_conv {{.*}} {per_branch_outputs}
func.func @statistics_not_constant(%x: tensor<1x2x5x5xf32>, %p: tensor<2xf32>) -> tensor<1x2x5x5xf32> {
  %a = arith.constant dense<0.0> : tensor<2x1x3x3xf32>
  %b = arith.constant dense<0.0> : tensor<2x1x5x1xf32>
  // expected-remark @+1 {{slak-fuse-lk: fused without folding batch norms or merging kernels: the batch norm statistics of branch 0 are not constants}}
  %0 = slak.dwconv2d %x, %a : tensor<1x2x5x5xf32>, tensor<2x1x3x3xf32> -> tensor<1x2x5x5xf32>
  %1 = slak.batch_norm %0, %p, %p, %p, %p : tensor<1x2x5x5xf32>, tensor<2xf32>
  %2 = slak.dwconv2d %x, %b : tensor<1x2x5x5xf32>, tensor<2x1x5x1xf32> -> tensor<1x2x5x5xf32>
  %3 = arith.addf %1, %2 : tensor<1x2x5x5xf32>
  return %3 : tensor<1x2x5x5xf32>
}

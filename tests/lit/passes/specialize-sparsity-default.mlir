// RUN: slak-opt %s --specialize-sparsity | FileCheck %s --check-prefix=DEFAULT
// RUN: slak-opt %s --specialize-sparsity=density-threshold=0.6 | FileCheck %s --check-prefix=HIGH

// Density 0.4: the dense form under the default threshold (0.35), the table
// form under 0.6.
// DEFAULT: density = 0.4,
// DEFAULT-SAME: form = dense
// HIGH: density = 0.4,
// HIGH-SAME: form = table
func.func @sparse_row(%x: tensor<1x1x4x4xf32>) -> tensor<1x1x4x4xf32> {
  %w = arith.constant dense<[[[[1.0, 0.0, 1.0, 0.0, 0.0]]]]> : tensor<1x1x1x5xf32>
  %y = slak.lk_conv %x weights(%w : tensor<1x1x1x5xf32>) : tensor<1x1x4x4xf32> -> tensor<1x1x4x4xf32>
  return %y : tensor<1x1x4x4xf32>
}

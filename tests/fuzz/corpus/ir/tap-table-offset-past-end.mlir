func.func @f(%x: tensor<1x2x5x5xf32>, %w: tensor<2x1x3x3xf32>) -> tensor<1x2x5x5xf32> {
  %y = slak.lk_conv %x weights(%w : tensor<2x1x3x3xf32>) {tap_table = dense<[0, 100, 1, 0]> : tensor<4xi32>} : tensor<1x2x5x5xf32> -> tensor<1x2x5x5xf32>
  return %y : tensor<1x2x5x5xf32>
}

// An invalid module for slak-translate's error test.
func.func @bad(%x: tensor<1x2x7x7xf32>, %w: tensor<2x1x4x5xf32>) -> tensor<1x2x7x7xf32> {
  %y = slak.lk_conv %x weights(%w : tensor<2x1x4x5xf32>) : tensor<1x2x7x7xf32> -> tensor<1x2x7x7xf32>
  return %y : tensor<1x2x7x7xf32>
}

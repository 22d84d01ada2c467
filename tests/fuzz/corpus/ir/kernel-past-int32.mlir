func.func @f(%x: tensor<1x4x8x8xf32>, %w: tensor<4x1x4294967299x1xf32>) -> tensor<1x4x8x8xf32> {
  %y = slak.lk_conv %x weights(%w : tensor<4x1x4294967299x1xf32>) : tensor<1x4x8x8xf32> -> tensor<1x4x8x8xf32>
  return %y : tensor<1x4x8x8xf32>
}

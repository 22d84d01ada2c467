func.func @f(%x: tensor<1x4x8x8xf32>, %w: tensor<4x1x3x3xf32>) -> tensor<1x4x8x8xf32> {
  %y = slak.lk_conv %x weights(%w : tensor<4x1x3x3xf32>) {schedule = #slak.schedule<tile = [4294967312, 32], block = [4, 32], stage_input = false>} : tensor<1x4x8x8xf32> -> tensor<1x4x8x8xf32>
  return %y : tensor<1x4x8x8xf32>
}

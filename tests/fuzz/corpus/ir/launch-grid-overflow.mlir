func.func @f(%x: tensor<2x4x2147483647x2147483647xf32>, %w: tensor<4x1x1x1xf32>) -> tensor<2x4x2147483647x2147483647xf32> {
  %y = slak.lk_conv %x weights(%w : tensor<4x1x1x1xf32>) {schedule = #slak.schedule<tile = [1, 1], block = [1, 1]>} : tensor<2x4x2147483647x2147483647xf32> -> tensor<2x4x2147483647x2147483647xf32>
  return %y : tensor<2x4x2147483647x2147483647xf32>
}

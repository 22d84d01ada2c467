// The large-kernel layer of a SLaK-T stage-1 block (C = int(96 * 1.3) = 124,
// 56x56 feature map, M = 51, N = 5), as the model writes it: three depthwise
// branches (51x5, 5x51, 5x5), each followed by its own batch norm, summed.
// `slak-opt --slak-fuse-lk` turns this into one slak.lk_conv.
func.func @stage1_block0_lk(%x: tensor<8x124x56x56xf32>,
                            %w_m_n: tensor<124x1x51x5xf32>,
                            %w_n_m: tensor<124x1x5x51xf32>,
                            %w_small: tensor<124x1x5x5xf32>) -> tensor<8x124x56x56xf32> {
  %mean = arith.constant dense<0.0> : tensor<124xf32>
  %var = arith.constant dense<1.0> : tensor<124xf32>
  %gamma = arith.constant dense<1.0> : tensor<124xf32>
  %beta = arith.constant dense<0.0> : tensor<124xf32>

  %a = slak.dwconv2d %x, %w_m_n : tensor<8x124x56x56xf32>, tensor<124x1x51x5xf32> -> tensor<8x124x56x56xf32>
  %a_bn = slak.batch_norm %a, %mean, %var, %gamma, %beta : tensor<8x124x56x56xf32>, tensor<124xf32>
  %b = slak.dwconv2d %x, %w_n_m : tensor<8x124x56x56xf32>, tensor<124x1x5x51xf32> -> tensor<8x124x56x56xf32>
  %b_bn = slak.batch_norm %b, %mean, %var, %gamma, %beta : tensor<8x124x56x56xf32>, tensor<124xf32>
  %c = slak.dwconv2d %x, %w_small : tensor<8x124x56x56xf32>, tensor<124x1x5x5xf32> -> tensor<8x124x56x56xf32>
  %c_bn = slak.batch_norm %c, %mean, %var, %gamma, %beta : tensor<8x124x56x56xf32>, tensor<124xf32>

  %ab = arith.addf %a_bn, %b_bn : tensor<8x124x56x56xf32>
  %y = arith.addf %ab, %c_bn : tensor<8x124x56x56xf32>
  return %y : tensor<8x124x56x56xf32>
}

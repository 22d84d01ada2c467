// RUN: slak-opt %s -split-input-file -verify-diagnostics

func.func @input_rank(%x: tensor<4x7x7xf32>, %w: tensor<4x1x3x3xf32>) {
  // expected-error @+1 {{input must be a rank-4 NCHW tensor, found rank 3}}
  %y = slak.dwconv2d %x, %w : tensor<4x7x7xf32>, tensor<4x1x3x3xf32> -> tensor<4x7x7xf32>
  return
}

// -----

func.func @input_dynamic_channels(%x: tensor<1x?x7x7xf32>, %w: tensor<4x1x3x3xf32>) {
  // expected-error @+1 {{input channel dimension must be static, found 'tensor<1x?x7x7xf32>'}}
  %y = slak.dwconv2d %x, %w : tensor<1x?x7x7xf32>, tensor<4x1x3x3xf32> -> tensor<1x4x7x7xf32>
  return
}

// -----

func.func @input_element_type(%x: tensor<1x4x7x7xi32>, %w: tensor<4x1x3x3xi32>) {
  // expected-error @+1 {{input element type 'i32' is not supported; expected f32, f16 or bf16}}
  %y = slak.dwconv2d %x, %w : tensor<1x4x7x7xi32>, tensor<4x1x3x3xi32> -> tensor<1x4x7x7xi32>
  return
}

// -----

func.func @weight_not_depthwise(%x: tensor<1x4x7x7xf32>, %w: tensor<4x2x3x3xf32>) {
  // expected-error @+1 {{weight must have static shape C x 1 x KH x KW, found 4x2x3x3}}
  %y = slak.dwconv2d %x, %w : tensor<1x4x7x7xf32>, tensor<4x2x3x3xf32> -> tensor<1x4x7x7xf32>
  return
}

// -----

func.func @weight_channels(%x: tensor<1x124x7x7xf32>, %w: tensor<64x1x3x3xf32>) {
  // expected-error @+1 {{weight has 64 channels, expected 124 (the input's channel count)}}
  %y = slak.dwconv2d %x, %w : tensor<1x124x7x7xf32>, tensor<64x1x3x3xf32> -> tensor<1x124x7x7xf32>
  return
}

// -----

func.func @even_kernel(%x: tensor<1x4x7x7xf32>, %w: tensor<4x1x4x5xf32>) {
  // expected-error @+1 {{weight has kernel size 4x5, expected odd sizes on both axes (a centred window)}}
  %y = slak.dwconv2d %x, %w : tensor<1x4x7x7xf32>, tensor<4x1x4x5xf32> -> tensor<1x4x7x7xf32>
  return
}

// -----

func.func @weight_element_type(%x: tensor<1x4x7x7xf32>, %w: tensor<4x1x3x3xf16>) {
  // expected-error @+1 {{weight element type 'f16' does not match input element type 'f32'}}
  %y = slak.dwconv2d %x, %w : tensor<1x4x7x7xf32>, tensor<4x1x3x3xf16> -> tensor<1x4x7x7xf32>
  return
}

// -----

func.func @bias_shape(%x: tensor<1x4x7x7xf32>, %w: tensor<4x1x3x3xf32>, %b: tensor<5xf32>) {
  // expected-error @+1 {{bias must have shape 4, found 5}}
  %y = slak.dwconv2d %x, %w bias(%b : tensor<5xf32>) : tensor<1x4x7x7xf32>, tensor<4x1x3x3xf32> -> tensor<1x4x7x7xf32>
  return
}

// -----

func.func @bias_element_type(%x: tensor<1x4x7x7xf32>, %w: tensor<4x1x3x3xf32>, %b: tensor<4xbf16>) {
  // expected-error @+1 {{bias element type 'bf16' does not match input element type 'f32'}}
  %y = slak.dwconv2d %x, %w bias(%b : tensor<4xbf16>) : tensor<1x4x7x7xf32>, tensor<4x1x3x3xf32> -> tensor<1x4x7x7xf32>
  return
}

// -----

func.func @padding_entries(%x: tensor<1x4x7x7xf32>, %w: tensor<4x1x3x3xf32>) {
  // expected-error @+1 {{padding has 3 entries, expected 2 ([pad_h, pad_w])}}
  %y = slak.dwconv2d %x, %w {padding = array<i64: 1, 1, 1>} : tensor<1x4x7x7xf32>, tensor<4x1x3x3xf32> -> tensor<1x4x7x7xf32>
  return
}

// -----

func.func @padding_too_large(%x: tensor<1x4x7x7xf32>, %w: tensor<4x1x5x5xf32>) {
  // expected-error @+1 {{padding [5, 2] is larger than the kernel allows: expected 0 <= padding < kernel size (5x5), "same" is [2, 2]}}
  %y = slak.dwconv2d %x, %w {padding = array<i64: 5, 2>} : tensor<1x4x7x7xf32>, tensor<4x1x5x5xf32> -> tensor<1x4x13x7xf32>
  return
}

// -----

func.func @stride(%x: tensor<1x4x8x8xf32>, %w: tensor<4x1x3x3xf32>) {
  // expected-error @+1 {{stride [2, 2] is not supported: slak ops compute stride [1, 1] only}}
  %y = slak.dwconv2d %x, %w {stride = array<i64: 2, 2>} : tensor<1x4x8x8xf32>, tensor<4x1x3x3xf32> -> tensor<1x4x4x4xf32>
  return
}

// -----

func.func @dilation(%x: tensor<1x4x8x8xf32>, %w: tensor<4x1x3x3xf32>) {
  // expected-error @+1 {{dilation [1, 2] is not supported: slak ops compute dilation [1, 1] only}}
  %y = slak.dwconv2d %x, %w {dilation = array<i64: 1, 2>} : tensor<1x4x8x8xf32>, tensor<4x1x3x3xf32> -> tensor<1x4x8x8xf32>
  return
}

// -----

func.func @result_shape(%x: tensor<1x4x7x7xf32>, %w: tensor<4x1x3x3xf32>) {
  // expected-error @+1 {{result has shape 1x4x5x5, expected 1x4x7x7}}
  %y = slak.dwconv2d %x, %w : tensor<1x4x7x7xf32>, tensor<4x1x3x3xf32> -> tensor<1x4x5x5xf32>
  return
}

// -----

func.func @result_element_type(%x: tensor<1x4x7x7xf32>, %w: tensor<4x1x3x3xf32>) {
  // expected-error @+1 {{result element type 'f16' does not match input element type 'f32'}}
  %y = slak.dwconv2d %x, %w : tensor<1x4x7x7xf32>, tensor<4x1x3x3xf32> -> tensor<1x4x7x7xf16>
  return
}

// -----

func.func @bn_param_shape(%x: tensor<1x4x7x7xf32>, %m: tensor<4xf32>, %v: tensor<3xf32>) {
  // expected-error @+1 {{variance must have shape 4, found 3}}
  %y = slak.batch_norm %x, %m, %v, %m, %m : tensor<1x4x7x7xf32>, tensor<4xf32>, tensor<3xf32>, tensor<4xf32>, tensor<4xf32>
  return
}

// -----

func.func @bn_param_type(%x: tensor<1x4x7x7xf32>, %m: tensor<4xf32>, %s: tensor<4xf16>) {
  // expected-error @+1 {{scale element type 'f16' does not match input element type 'f32'}}
  %y = "slak.batch_norm"(%x, %m, %m, %s, %m) : (tensor<1x4x7x7xf32>, tensor<4xf32>, tensor<4xf32>, tensor<4xf16>, tensor<4xf32>) -> tensor<1x4x7x7xf32>
  return
}

// -----

func.func @bn_rank(%x: tensor<4x7x7xf32>, %m: tensor<4xf32>) {
  // expected-error @+1 {{input must be a rank-4 NCHW tensor, found rank 3}}
  %y = slak.batch_norm %x, %m, %m, %m, %m : tensor<4x7x7xf32>, tensor<4xf32>
  return
}

// -----

func.func @bn_epsilon(%x: tensor<1x4x7x7xf32>, %m: tensor<4xf32>) {
  // expected-error @+1 {{epsilon must be positive, found 0}}
  %y = slak.batch_norm %x, %m, %m, %m, %m {epsilon = 0.0 : f32} : tensor<1x4x7x7xf32>, tensor<4xf32>
  return
}

// -----

func.func @lk_no_branches(%x: tensor<1x4x7x7xf32>) {
  // expected-error @+1 {{needs at least one branch weight, found none}}
  %y = "slak.lk_conv"(%x) {operandSegmentSizes = array<i32: 1, 0, 0, 0>} : (tensor<1x4x7x7xf32>) -> tensor<1x4x7x7xf32>
  return
}

// -----

func.func @lk_mask_count(%x: tensor<1x4x7x7xf32>, %w0: tensor<4x1x5x3xf32>, %w1: tensor<4x1x3x5xf32>, %m0: tensor<4x1x5x3xi1>) {
  // expected-error @+1 {{has 1 masks for 2 branches; give one mask per branch or none}}
  %y = slak.lk_conv %x weights(%w0, %w1 : tensor<4x1x5x3xf32>, tensor<4x1x3x5xf32>) masks(%m0 : tensor<4x1x5x3xi1>) : tensor<1x4x7x7xf32> -> tensor<1x4x7x7xf32>
  return
}

// -----

func.func @lk_mask_shape(%x: tensor<1x124x9x9xf32>, %w0: tensor<124x1x51x5xf32>, %w1: tensor<124x1x5x51xf32>, %m0: tensor<124x1x51x5xi1>, %m1: tensor<124x1x51x5xi1>) {
  // expected-error @+1 {{mask for branch 1 has shape 124x1x51x5, expected 124x1x5x51 (the weight's shape)}}
  %y = slak.lk_conv %x weights(%w0, %w1 : tensor<124x1x51x5xf32>, tensor<124x1x5x51xf32>) masks(%m0, %m1 : tensor<124x1x51x5xi1>, tensor<124x1x51x5xi1>) : tensor<1x124x9x9xf32> -> tensor<1x124x9x9xf32>
  return
}

// -----

func.func @lk_mask_type(%x: tensor<1x4x7x7xf32>, %w0: tensor<4x1x5x3xf32>, %m0: tensor<4x1x5x3xf32>) {
  // expected-error @+1 {{mask for branch 0 has element type 'f32', expected i1}}
  %y = slak.lk_conv %x weights(%w0 : tensor<4x1x5x3xf32>) masks(%m0 : tensor<4x1x5x3xf32>) : tensor<1x4x7x7xf32> -> tensor<1x4x7x7xf32>
  return
}

// -----

func.func @lk_weight_channels(%x: tensor<1x4x7x7xf32>, %w0: tensor<4x1x5x3xf32>, %w1: tensor<3x1x3x5xf32>) {
  // expected-error @+1 {{weight of branch 1 has 3 channels, expected 4 (the input's channel count)}}
  %y = slak.lk_conv %x weights(%w0, %w1 : tensor<4x1x5x3xf32>, tensor<3x1x3x5xf32>) : tensor<1x4x7x7xf32> -> tensor<1x4x7x7xf32>
  return
}

// -----

func.func @lk_even_kernel(%x: tensor<1x4x7x7xf32>, %w0: tensor<4x1x5x3xf32>, %w1: tensor<4x1x3x4xf32>) {
  // expected-error @+1 {{weight of branch 1 has kernel size 3x4, expected odd sizes on both axes (a centred window)}}
  %y = slak.lk_conv %x weights(%w0, %w1 : tensor<4x1x5x3xf32>, tensor<4x1x3x4xf32>) : tensor<1x4x7x7xf32> -> tensor<1x4x7x7xf32>
  return
}

// -----

func.func @lk_weight_type(%x: tensor<1x4x7x7xf16>, %w0: tensor<4x1x5x3xbf16>) {
  // expected-error @+1 {{weight of branch 0 element type 'bf16' does not match input element type 'f16'}}
  %y = slak.lk_conv %x weights(%w0 : tensor<4x1x5x3xbf16>) : tensor<1x4x7x7xf16> -> tensor<1x4x7x7xf16>
  return
}

// -----

func.func @lk_paddings_entries(%x: tensor<1x4x7x7xf32>, %w0: tensor<4x1x5x3xf32>, %w1: tensor<4x1x3x5xf32>) {
  // expected-error @+1 {{paddings has 2 entries, expected 4 ([pad_h, pad_w] for each of 2 branches)}}
  %y = slak.lk_conv %x weights(%w0, %w1 : tensor<4x1x5x3xf32>, tensor<4x1x3x5xf32>) {paddings = array<i64: 2, 1>} : tensor<1x4x7x7xf32> -> tensor<1x4x7x7xf32>
  return
}

// -----

func.func @lk_padding_too_large(%x: tensor<1x4x7x7xf32>, %w0: tensor<4x1x5x3xf32>) {
  // expected-error @+1 {{padding of branch 0 [2, 3] is larger than the kernel allows: expected 0 <= padding < kernel size (5x3), "same" is [2, 1]}}
  %y = slak.lk_conv %x weights(%w0 : tensor<4x1x5x3xf32>) {paddings = array<i64: 2, 3>} : tensor<1x4x7x7xf32> -> tensor<1x4x11x7xf32>
  return
}

// -----

func.func @lk_output_sizes_differ(%x: tensor<1x4x7x7xf32>, %w0: tensor<4x1x5x3xf32>, %w1: tensor<4x1x3x5xf32>) {
  // expected-error @+1 {{branch 1 (kernel 3x5, padding [0, 2]) gives output shape 1x4x5x7 but branch 0 gives 1x4x7x7; all branches must give the same output size}}
  %y = slak.lk_conv %x weights(%w0, %w1 : tensor<4x1x5x3xf32>, tensor<4x1x3x5xf32>) {paddings = array<i64: 2, 1, 0, 2>} : tensor<1x4x7x7xf32> -> tensor<1x4x7x7xf32>
  return
}

// -----

func.func @lk_bias_per_branch(%x: tensor<1x4x7x7xf32>, %w0: tensor<4x1x5x3xf32>, %b: tensor<4xf32>) {
  // expected-error @+1 {{takes no bias with per_branch_outputs (each branch's batch norm carries its shift); drop the bias or the per_branch_outputs flag}}
  %y = slak.lk_conv %x weights(%w0 : tensor<4x1x5x3xf32>) bias(%b : tensor<4xf32>) {per_branch_outputs} : tensor<1x4x7x7xf32> -> tensor<1x4x7x7xf32>
  return
}

// -----

func.func @lk_bias_shape(%x: tensor<1x4x7x7xf32>, %w0: tensor<4x1x5x3xf32>, %b: tensor<2xf32>) {
  // expected-error @+1 {{bias must have shape 4, found 2}}
  %y = slak.lk_conv %x weights(%w0 : tensor<4x1x5x3xf32>) bias(%b : tensor<2xf32>) : tensor<1x4x7x7xf32> -> tensor<1x4x7x7xf32>
  return
}

// -----

func.func @lk_result_count_per_branch(%x: tensor<1x4x7x7xf32>, %w0: tensor<4x1x5x3xf32>, %w1: tensor<4x1x3x5xf32>) {
  // expected-error @+1 {{has 1 results, expected 2 (one per branch with per_branch_outputs)}}
  %y = slak.lk_conv %x weights(%w0, %w1 : tensor<4x1x5x3xf32>, tensor<4x1x3x5xf32>) {per_branch_outputs} : tensor<1x4x7x7xf32> -> tensor<1x4x7x7xf32>
  return
}

// -----

func.func @lk_result_count_summed(%x: tensor<1x4x7x7xf32>, %w0: tensor<4x1x5x3xf32>, %w1: tensor<4x1x3x5xf32>) {
  // expected-error @+1 {{has 2 results, expected 1 (the summed output)}}
  %y:2 = slak.lk_conv %x weights(%w0, %w1 : tensor<4x1x5x3xf32>, tensor<4x1x3x5xf32>) : tensor<1x4x7x7xf32> -> tensor<1x4x7x7xf32>, tensor<1x4x7x7xf32>
  return
}

// -----

func.func @lk_result_shape(%x: tensor<1x4x7x7xf32>, %w0: tensor<4x1x5x3xf32>) {
  // expected-error @+1 {{result 0 has shape 1x4x7x9, expected 1x4x7x7}}
  %y = slak.lk_conv %x weights(%w0 : tensor<4x1x5x3xf32>) : tensor<1x4x7x7xf32> -> tensor<1x4x7x9xf32>
  return
}

// -----

func.func @lk_taps_branch_count(%x: tensor<1x4x7x7xf32>, %w0: tensor<4x1x5x3xf32>, %w1: tensor<4x1x3x5xf32>) {
  // expected-error @+1 {{#slak.taps describes 1 branches, expected 2}}
  %y = slak.lk_conv %x weights(%w0, %w1 : tensor<4x1x5x3xf32>, tensor<4x1x3x5xf32>)
    {taps = #slak.taps<branches = [#slak.branch_taps<kernel = [5, 3], nnz = [0, 15], mean = 7.5, density = 0.5, window = [0, 5, 0, 3], form = table>]>}
    : tensor<1x4x7x7xf32> -> tensor<1x4x7x7xf32>
  return
}

// -----

func.func @lk_taps_kernel(%x: tensor<1x4x7x7xf32>, %w0: tensor<4x1x5x3xf32>) {
  // expected-error @+1 {{#slak.taps branch 0 has kernel 3x5, expected 5x3 (the weight's window)}}
  %y = slak.lk_conv %x weights(%w0 : tensor<4x1x5x3xf32>)
    {taps = #slak.taps<branches = [#slak.branch_taps<kernel = [3, 5], nnz = [0, 15], mean = 7.5, density = 0.5, window = [0, 3, 0, 5], form = table>]>}
    : tensor<1x4x7x7xf32> -> tensor<1x4x7x7xf32>
  return
}

// -----

func.func @lk_schedule_shared_memory(%x: tensor<1x4x7x7xf32>, %w0: tensor<4x1x51x5xf32>) {
  // expected-error @+1 {{#slak.schedule tile [256, 256] with stage_input needs 318240 bytes of shared memory for the tile and its halo, more than 232448; use a smaller tile or stage_input = false}}
  %y = slak.lk_conv %x weights(%w0 : tensor<4x1x51x5xf32>)
    {schedule = #slak.schedule<tile = [256, 256], block = [4, 256]>}
    : tensor<1x4x7x7xf32> -> tensor<1x4x7x7xf32>
  return
}

// -----

func.func @dwconv_mask_shape(%x: tensor<1x4x7x7xf32>, %w: tensor<4x1x5x3xf32>, %m: tensor<4x1x3x5xi1>) {
  // expected-error @+1 {{mask has shape 4x1x3x5, expected 4x1x5x3 (the weight's shape)}}
  %y = slak.dwconv2d %x, %w mask(%m : tensor<4x1x3x5xi1>) : tensor<1x4x7x7xf32>, tensor<4x1x5x3xf32> -> tensor<1x4x7x7xf32>
  return
}

// -----

func.func @lk_channel_order(%x: tensor<1x3x7x7xf32>, %w0: tensor<3x1x3x3xf32>) {
  // expected-error @+1 {{#slak.taps channel_order has 2 entries, expected 3 (the channels)}}
  %y = slak.lk_conv %x weights(%w0 : tensor<3x1x3x3xf32>)
    {taps = #slak.taps<branches = [#slak.branch_taps<kernel = [3, 3], nnz = [0, 9], mean = 4.5, density = 0.5, window = [0, 3, 0, 3], form = table>], channel_order = [1, 0]>}
    : tensor<1x3x7x7xf32> -> tensor<1x3x7x7xf32>
  return
}

// -----

func.func @lk_tap_table_type(%x: tensor<1x2x7x7xf32>, %w0: tensor<2x1x3x3xf32>) {
  // expected-error @+1 {{tap_table must be a 1-D i32 tensor, found 'tensor<3xi64>'}}
  %y = slak.lk_conv %x weights(%w0 : tensor<2x1x3x3xf32>) {tap_table = dense<0> : tensor<3xi64>} : tensor<1x2x7x7xf32> -> tensor<1x2x7x7xf32>
  return
}

// -----

func.func @lk_tap_table_short(%x: tensor<1x2x7x7xf32>, %w0: tensor<2x1x3x3xf32>) {
  // expected-error @+1 {{tap_table has 2 entries, expected at least 3 (B*C+1 offsets)}}
  %y = slak.lk_conv %x weights(%w0 : tensor<2x1x3x3xf32>) {tap_table = dense<0> : tensor<2xi32>} : tensor<1x2x7x7xf32> -> tensor<1x2x7x7xf32>
  return
}

// -----

func.func @lk_tap_table_offsets(%x: tensor<1x2x7x7xf32>, %w0: tensor<2x1x3x3xf32>) {
  // expected-error @+1 {{tap_table offsets run from 0 to 1, expected 0 to 2 (the number of taps)}}
  %y = slak.lk_conv %x weights(%w0 : tensor<2x1x3x3xf32>) {tap_table = dense<[0, 1, 1, 0, 0]> : tensor<5xi32>} : tensor<1x2x7x7xf32> -> tensor<1x2x7x7xf32>
  return
}

// -----

func.func @lk_tap_table_decreasing(%x: tensor<1x2x7x7xf32>, %w0: tensor<2x1x3x3xf32>) {
  // expected-error @+1 {{tap_table offsets decrease at branch 0 channel 0}}
  %y = slak.lk_conv %x weights(%w0 : tensor<2x1x3x3xf32>) {tap_table = dense<[0, -1, 1, 0]> : tensor<4xi32>} : tensor<1x2x7x7xf32> -> tensor<1x2x7x7xf32>
  return
}

// -----

func.func @lk_tap_table_window(%x: tensor<1x2x7x7xf32>, %w0: tensor<2x1x3x3xf32>) {
  // expected-error @+1 {{tap_table entry 0 of branch 0 channel 0 is (3, 0), outside the 3x3 window}}
  %y = slak.lk_conv %x weights(%w0 : tensor<2x1x3x3xf32>) {tap_table = dense<[0, 1, 1, 196608]> : tensor<4xi32>} : tensor<1x2x7x7xf32> -> tensor<1x2x7x7xf32>
  return
}

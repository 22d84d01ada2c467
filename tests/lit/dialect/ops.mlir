// RUN: slak-opt %s | slak-opt | FileCheck %s
// RUN: slak-opt %s --mlir-print-op-generic | slak-opt | FileCheck %s

// CHECK-LABEL: func.func @dwconv_same
// CHECK: slak.dwconv2d %{{.*}}, %{{.*}} : tensor<1x124x56x56xf32>, tensor<124x1x51x5xf32> -> tensor<1x124x56x56xf32>
func.func @dwconv_same(%x: tensor<1x124x56x56xf32>, %w: tensor<124x1x51x5xf32>) -> tensor<1x124x56x56xf32> {
  %y = slak.dwconv2d %x, %w : tensor<1x124x56x56xf32>, tensor<124x1x51x5xf32> -> tensor<1x124x56x56xf32>
  return %y : tensor<1x124x56x56xf32>
}

// CHECK-LABEL: func.func @dwconv_bias_padding_dynamic
// CHECK: slak.dwconv2d %{{.*}}, %{{.*}} bias(%{{.*}} : tensor<3xbf16>) {padding = array<i64: 0, 1>} : tensor<?x3x?x9xbf16>, tensor<3x1x3x3xbf16> -> tensor<?x3x?x9xbf16>
func.func @dwconv_bias_padding_dynamic(%x: tensor<?x3x?x9xbf16>, %w: tensor<3x1x3x3xbf16>, %b: tensor<3xbf16>) -> tensor<?x3x?x9xbf16> {
  %y = slak.dwconv2d %x, %w bias(%b : tensor<3xbf16>) {padding = array<i64: 0, 1>} : tensor<?x3x?x9xbf16>, tensor<3x1x3x3xbf16> -> tensor<?x3x?x9xbf16>
  return %y : tensor<?x3x?x9xbf16>
}

// "valid" padding shrinks the output.
// CHECK-LABEL: func.func @dwconv_valid
// CHECK: {padding = array<i64: 0, 0>} : tensor<2x8x10x12xf16>, tensor<8x1x5x3xf16> -> tensor<2x8x6x10xf16>
func.func @dwconv_valid(%x: tensor<2x8x10x12xf16>, %w: tensor<8x1x5x3xf16>) -> tensor<2x8x6x10xf16> {
  %y = slak.dwconv2d %x, %w {padding = array<i64: 0, 0>, stride = array<i64: 1, 1>} : tensor<2x8x10x12xf16>, tensor<8x1x5x3xf16> -> tensor<2x8x6x10xf16>
  return %y : tensor<2x8x6x10xf16>
}

// CHECK-LABEL: func.func @batch_norm
// CHECK: slak.batch_norm %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}} {epsilon = 1.000000e-03 : f32} : tensor<1x4x7x7xf32>, tensor<4xf32>
func.func @batch_norm(%x: tensor<1x4x7x7xf32>, %m: tensor<4xf32>, %v: tensor<4xf32>, %s: tensor<4xf32>, %t: tensor<4xf32>) -> tensor<1x4x7x7xf32> {
  %y = slak.batch_norm %x, %m, %v, %s, %t {epsilon = 1.0e-3 : f32} : tensor<1x4x7x7xf32>, tensor<4xf32>
  return %y : tensor<1x4x7x7xf32>
}

// A masked branch.
// CHECK-LABEL: func.func @dwconv_mask
// CHECK: slak.dwconv2d %{{.*}}, %{{.*}} mask(%{{.*}} : tensor<4x1x5x5xi1>) bias(%{{.*}} : tensor<4xf32>) : tensor<1x4x7x7xf32>, tensor<4x1x5x5xf32> -> tensor<1x4x7x7xf32>
func.func @dwconv_mask(%x: tensor<1x4x7x7xf32>, %w: tensor<4x1x5x5xf32>, %m: tensor<4x1x5x5xi1>, %b: tensor<4xf32>) -> tensor<1x4x7x7xf32> {
  %y = slak.dwconv2d %x, %w mask(%m : tensor<4x1x5x5xi1>) bias(%b : tensor<4xf32>) : tensor<1x4x7x7xf32>, tensor<4x1x5x5xf32> -> tensor<1x4x7x7xf32>
  return %y : tensor<1x4x7x7xf32>
}

// A specialised op: tap statistics, channel order and the tap table.
// CHECK-LABEL: func.func @lk_conv_tap_table
// CHECK: tap_table = dense<[0, 2, 3, 1, 65537, 131074]> : tensor<6xi32>
// CHECK-SAME: taps = #slak.taps<branches = [#slak.branch_taps<kernel = [3, 3], nnz = [1, 2], mean = 1.5, density = 0.16666666666666666, window = [0, 3, 0, 3], form = table>], table = "t0", channel_order = [0, 1]>
func.func @lk_conv_tap_table(%x: tensor<1x2x7x7xf32>, %w: tensor<2x1x3x3xf32>) -> tensor<1x2x7x7xf32> {
  %y = slak.lk_conv %x weights(%w : tensor<2x1x3x3xf32>)
    {tap_table = dense<[0, 2, 3, 1, 65537, 131074]> : tensor<6xi32>,
     taps = #slak.taps<branches = [#slak.branch_taps<kernel = [3, 3], nnz = [1, 2], mean = 1.5, density = 0.16666666666666666, window = [0, 3, 0, 3], form = table>], table = "t0", channel_order = [0, 1]>}
    : tensor<1x2x7x7xf32> -> tensor<1x2x7x7xf32>
  return %y : tensor<1x2x7x7xf32>
}

// The SLaK decomposed kernel, summed, with masks, bias and attributes.
// CHECK-LABEL: func.func @lk_conv_summed
// CHECK: slak.lk_conv %{{.*}} weights(%{{.*}}, %{{.*}}, %{{.*}} : tensor<124x1x51x5xf32>, tensor<124x1x5x51xf32>, tensor<124x1x5x5xf32>)
// CHECK-SAME: masks(%{{.*}}, %{{.*}}, %{{.*}} : tensor<124x1x51x5xi1>, tensor<124x1x5x51xi1>, tensor<124x1x5x5xi1>)
// CHECK-SAME: bias(%{{.*}} : tensor<124xf32>)
// CHECK-SAME: schedule = #slak.schedule<tile = [16, 32], block = [4, 32], stage_input = true, stage_taps = false, masked_walk = false, weight_split = 8, weight_threads = 256, weight_tile = [8, 32], weight_rows_per_thread = 8, origin = "model">
// CHECK-SAME: taps = #slak.taps<branches = [#slak.branch_taps<kernel = [51, 5], nnz = [120, 170], mean = 153.0, density = 0.6, window = [1, 50, 0, 5], form = table>,
// CHECK-SAME: #slak.branch_taps<kernel = [5, 5], nnz = [25, 25], mean = 25.0, density = 1.0, window = [0, 5, 0, 5], form = dense>], table = "stage1.block0">
// CHECK-SAME: : tensor<8x124x56x56xf32> -> tensor<8x124x56x56xf32>
func.func @lk_conv_summed(%x: tensor<8x124x56x56xf32>, %w0: tensor<124x1x51x5xf32>, %w1: tensor<124x1x5x51xf32>, %w2: tensor<124x1x5x5xf32>,
                          %m0: tensor<124x1x51x5xi1>, %m1: tensor<124x1x5x51xi1>, %m2: tensor<124x1x5x5xi1>, %b: tensor<124xf32>) -> tensor<8x124x56x56xf32> {
  %y = slak.lk_conv %x weights(%w0, %w1, %w2 : tensor<124x1x51x5xf32>, tensor<124x1x5x51xf32>, tensor<124x1x5x5xf32>)
         masks(%m0, %m1, %m2 : tensor<124x1x51x5xi1>, tensor<124x1x5x51xi1>, tensor<124x1x5x5xi1>)
         bias(%b : tensor<124xf32>)
         {schedule = #slak.schedule<block = [4, 32], tile = [16, 32], stage_taps = false, origin = "model">,
          taps = #slak.taps<branches = [
            #slak.branch_taps<kernel = [51, 5], nnz = [120, 170], mean = 153.0, density = 0.6, window = [1, 50, 0, 5], form = table>,
            #slak.branch_taps<kernel = [5, 51], nnz = [120, 170], mean = 150.5, density = 0.59, window = [0, 5, 0, 51], form = table>,
            #slak.branch_taps<kernel = [5, 5], nnz = [25, 25], mean = 25.0, density = 1.0, window = [0, 5, 0, 5], form = dense>],
            table = "stage1.block0">}
         : tensor<8x124x56x56xf32> -> tensor<8x124x56x56xf32>
  return %y : tensor<8x124x56x56xf32>
}

// Training form: one output per branch, dynamic batch and image, runtime masks.
// CHECK-LABEL: func.func @lk_conv_per_branch
// CHECK: slak.lk_conv %{{.*}} weights(%{{.*}}, %{{.*}} : tensor<3x1x13x5xf16>, tensor<3x1x5x13xf16>) {paddings = array<i64: 6, 2, 2, 6>, per_branch_outputs, runtime_sparse} : tensor<?x3x?x?xf16> -> tensor<?x3x?x?xf16>, tensor<?x3x?x?xf16>
func.func @lk_conv_per_branch(%x: tensor<?x3x?x?xf16>, %w0: tensor<3x1x13x5xf16>, %w1: tensor<3x1x5x13xf16>) -> (tensor<?x3x?x?xf16>, tensor<?x3x?x?xf16>) {
  %y:2 = slak.lk_conv %x weights(%w0, %w1 : tensor<3x1x13x5xf16>, tensor<3x1x5x13xf16>) {paddings = array<i64: 6, 2, 2, 6>, per_branch_outputs, runtime_sparse}
         : tensor<?x3x?x?xf16> -> tensor<?x3x?x?xf16>, tensor<?x3x?x?xf16>
  return %y#0, %y#1 : tensor<?x3x?x?xf16>, tensor<?x3x?x?xf16>
}

// Attributes also round-trip on their own.
// CHECK-LABEL: func.func @attrs
// CHECK-SAME: slak.s = #slak.schedule<tile = [8, 8], block = [8, 8], stage_input = false, stage_taps = true, masked_walk = true, weight_split = 1, weight_threads = 1024, weight_tile = [4, 64], weight_rows_per_thread = 2, origin = "measured">
func.func @attrs() attributes {slak.s = #slak.schedule<tile = [8, 8], block = [8, 8], stage_input = false, masked_walk = true, weight_split = 1, weight_threads = 1024, weight_tile = [4, 64], weight_rows_per_thread = 2, origin = "measured">} {
  return
}

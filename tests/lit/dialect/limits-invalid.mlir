// RUN: slak-opt %s -split-input-file -verify-diagnostics
// Sizes at the edges of int32_t / int64_t and the 16-bit tap encoding: the
// verifiers refuse them with a message instead of overflowing (signed
// overflow, caught by slak-fuzz-ir under UBSan) or cutting them to another
// layer in the int fields of codegen::KernelSpec. See docs/fuzzing.md.

// Two large block sides: blockH * blockW overflowed int64_t.
// expected-error @+1 {{#slak.schedule block [4611686018427387904, 4] has more than 1024 threads, at most 1024 are allowed}}
func.func @f() attributes {a = #slak.schedule<tile = [4611686018427387904, 4], block = [4611686018427387904, 4]>}

// -----

// A tile past int32_t was cut to 16 (2^32 + 16) in the kernel spec.
// expected-error @+1 {{#slak.schedule tile [4294967312, 32] is too large, at most 2147483647 per side}}
func.func @f() attributes {a = #slak.schedule<tile = [4294967312, 32], block = [4, 32], stage_input = false>}

// -----

// expected-error @+1 {{#slak.schedule weight_split 4294967304, weight_tile [8, 32] or weight_rows_per_thread 8 is too large, at most 2147483647}}
func.func @f() attributes {a = #slak.schedule<tile = [16, 32], block = [4, 32], weight_split = 4294967304>}

// -----

// kernelH * kernelW overflowed int64_t.
// expected-error @+1 {{#slak.branch_taps kernel is 4611686018427387905x5, at most 65535 per axis is supported (taps are 16-bit)}}
func.func @f() attributes {a = #slak.branch_taps<kernel = [4611686018427387905, 5], nnz = [0, 0], mean = 0.0, density = 0.0, window = [0, 0, 0, 0], form = dense>}

// -----

// The output size H + 2 * pad - KH + 1 overflowed int64_t.
func.func @huge_height(%x: tensor<1x4x9223372036854775806x8xf32>, %w: tensor<4x1x3x3xf32>) {
  // expected-error @+1 {{input height dimension 9223372036854775806 is too large, at most 2147483647 is supported}}
  %y = slak.lk_conv %x weights(%w : tensor<4x1x3x3xf32>) : tensor<1x4x9223372036854775806x8xf32> -> tensor<1x4x9223372036854775806x8xf32>
  return
}

// -----

func.func @huge_channels(%x: tensor<1x4294967297x8x8xf32>, %w: tensor<4294967297x1x3x3xf32>) {
  // expected-error @+1 {{input channel dimension 4294967297 is too large, at most 2147483647 is supported}}
  %y = slak.dwconv2d %x, %w : tensor<1x4294967297x8x8xf32>, tensor<4294967297x1x3x3xf32> -> tensor<1x4294967297x8x8xf32>
  return
}

// -----

// A window past the tap encoding; kernel sizes past int32_t were cut in the
// kernel spec (4294967299 became 3).
func.func @huge_kernel(%x: tensor<1x4x8x8xf32>, %w: tensor<4x1x65537x1xf32>) {
  // expected-error @+1 {{weight of branch 0 has kernel size 65537x1, at most 65535 per axis is supported (taps are 16-bit)}}
  %y = slak.lk_conv %x weights(%w : tensor<4x1x65537x1xf32>) : tensor<1x4x8x8xf32> -> tensor<1x4x8x8xf32>
  return
}

// -----

// The shared-memory bytes of the largest tile: (2^31 + 2)^2 * 4 overflowed int64_t.
func.func @huge_tile(%x: tensor<1x4x8x8xf32>, %w: tensor<4x1x3x3xf32>) {
  // expected-error @+1 {{#slak.schedule tile [2147483647, 2147483647] with stage_input needs 2147483649 x 2147483649 x 4 bytes of shared memory for the tile and its halo, more than 232448; use a smaller tile or stage_input = false}}
  %y = slak.lk_conv %x weights(%w : tensor<4x1x3x3xf32>)
    {schedule = #slak.schedule<tile = [2147483647, 2147483647], block = [1, 1]>}
    : tensor<1x4x8x8xf32> -> tensor<1x4x8x8xf32>
  return
}

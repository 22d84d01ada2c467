// RUN: slak-opt %s -split-input-file -verify-diagnostics
// Sizes at the edges of int32_t / int64_t and the 16-bit tap encoding: the
// verifiers refuse them with a message instead of overflowing (signed
// overflow, caught by slak-fuzz-ir under UBSan) or cutting them to another
// layer in the int fields of codegen::KernelSpec. See docs/fuzzing.md.

// Two large block sides: blockH * blockW overflowed int64_t. Each side is
// checked against its range before any product is formed.
// expected-error @+1 {{#slak.schedule tile is [4611686018427387904, 4], expected 1..2147483647 per side}}
func.func @f() attributes {a = #slak.schedule<tile = [4611686018427387904, 4], block = [4611686018427387904, 4]>}

// -----

// expected-error @+1 {{#slak.schedule block is [4611686018427387904, 4], expected 1..1024 per side}}
func.func @f() attributes {a = #slak.schedule<tile = [16, 32], block = [4611686018427387904, 4]>}

// -----

// A tile past int32_t was cut to 16 (2^32 + 16) in the kernel spec.
// expected-error @+1 {{#slak.schedule tile is [4294967312, 32], expected 1..2147483647 per side}}
func.func @f() attributes {a = #slak.schedule<tile = [4294967312, 32], block = [4, 32], stage_input = false>}

// -----

// expected-error @+1 {{#slak.schedule weight_split is 4294967304, expected 1..2147483647}}
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

// The largest tile: its shared-memory bytes, (2^31 + 2)^2 * 4, overflowed
// int64_t in the op verifier; the schedule's own verifier refuses it first,
// since each thread would hold 2^62 outputs.
func.func @huge_tile(%x: tensor<1x4x8x8xf32>, %w: tensor<4x1x3x3xf32>) {
  // expected-error @+2 {{#slak.schedule tile [2147483647, 2147483647] and block [1, 1] give each thread 2147483647x2147483647 outputs (tileH/blockH x tileW/blockW), at most 128 are allowed}}
  %y = slak.lk_conv %x weights(%w : tensor<4x1x3x3xf32>)
    {schedule = #slak.schedule<tile = [2147483647, 2147483647], block = [1, 1]>}
    : tensor<1x4x8x8xf32> -> tensor<1x4x8x8xf32>
  return
}

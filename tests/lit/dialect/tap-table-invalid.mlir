// RUN: slak-opt %s -split-input-file -verify-diagnostics
// tap_table offsets are checked as a whole before any tap is read: an
// intermediate offset past the end (100 of 1 tap) made the verifier read
// outside the table (heap-buffer-overflow, found through the package
// reader's copy of this check by slak-fuzz-readers; docs/fuzzing.md).

func.func @offset_past_the_end(%x: tensor<1x2x5x5xf32>, %w: tensor<2x1x3x3xf32>) {
  // expected-error @+1 {{tap_table offsets decrease at branch 0 channel 1}}
  %y = slak.lk_conv %x weights(%w : tensor<2x1x3x3xf32>) {tap_table = dense<[0, 100, 1, 0]> : tensor<4xi32>} : tensor<1x2x5x5xf32> -> tensor<1x2x5x5xf32>
  return
}

// -----

// The same with the last offset large: the front and back checks catch it.
func.func @last_offset_past_the_end(%x: tensor<1x2x5x5xf32>, %w: tensor<2x1x3x3xf32>) {
  // expected-error @+1 {{tap_table offsets run from 0 to 100, expected 0 to 1 (the number of taps)}}
  %y = slak.lk_conv %x weights(%w : tensor<2x1x3x3xf32>) {tap_table = dense<[0, 0, 100, 0]> : tensor<4xi32>} : tensor<1x2x5x5xf32> -> tensor<1x2x5x5xf32>
  return
}

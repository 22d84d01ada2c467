// The driver lists the slak dialect, and malformed input gives a diagnostic
// with file:line:col and a non-zero exit, never a crash.
// RUN: slak-opt --help | FileCheck %s --check-prefix=HELP
// RUN: not slak-opt %s 2>&1 | FileCheck %s --check-prefix=BAD
// RUN: slak-opt %slak_src/examples/slak_t_stage1.mlir | FileCheck %s --check-prefix=EXAMPLE

// HELP: Available Dialects: {{.*}}slak

// EXAMPLE-LABEL: func.func @stage1_block0_lk
// EXAMPLE-COUNT-3: slak.dwconv2d {{.*}} mask
// EXAMPLE-NOT: slak.lk_conv

// BAD: slak-opt-driver.mlir:[[@LINE+2]]:{{[0-9]+}}: error: 'slak.dwconv2d' op weight has kernel size 4x4, expected odd sizes
func.func @bad(%x: tensor<1x4x7x7xf32>, %w: tensor<4x1x4x4xf32>) -> tensor<1x4x8x8xf32> {
  %y = slak.dwconv2d %x, %w : tensor<1x4x7x7xf32>, tensor<4x1x4x4xf32> -> tensor<1x4x8x8xf32>
  return %y : tensor<1x4x8x8xf32>
}

// A dense_resource blob whose alignment word (its first 4 bytes) is 0 made
// MLIR 22's parser abort every tool with "LLVM ERROR: out of memory"
// (llvm/llvm-project#181266, found by slak-fuzz-ir; docs/fuzzing.md). The
// tools refuse it before parsing, naming the blob and the fix.
// RUN: not slak-opt %s 2>&1 | FileCheck %s
// RUN: not slak-translate --emit-kernel-package -o %t %s 2>&1 | FileCheck %s
// RUN: not slak-translate --emit-kernel-package -o %t < %s 2>&1 | FileCheck %s --check-prefix=STDIN
// RUN: not slak-autotune --gpu a100 %s -o %t.mlir --db %t.db 2>&1 | FileCheck %s
// CHECK-NOT: LLVM ERROR
// CHECK: resource-blob-alignment.mlir:[[@LINE+14]]:13: error: resource blob 'mask' has alignment 0 (its first 4 bytes): they hold the data's alignment in bytes, little-endian, e.g. "0x04000000..." for f32 or i32 data and "0x01000000..." for i1 or i8 (MLIR 22's parser aborts on 0, llvm/llvm-project#181266)
// STDIN: <stdin>:[[@LINE+13]]:13: error: resource blob 'mask' has alignment 0
func.func @f(%x: tensor<1x2x5x5xf32>) -> tensor<1x2x5x5xf32> {
  %w = arith.constant dense_resource<weights> : tensor<2x1x3x1xf32>
  %m = arith.constant dense_resource<mask> : tensor<2x1x3x1xi1>
  %y = slak.dwconv2d %x, %w mask(%m : tensor<2x1x3x1xi1>) : tensor<1x2x5x5xf32>, tensor<2x1x3x1xf32> -> tensor<1x2x5x5xf32>
  return %y : tensor<1x2x5x5xf32>
}

// The alignment of i1 data is 1: 0x01000000.
{-#
  dialect_resources: {
    builtin: {
      weights: "0x040000000000803F0000803F0000803F0000803F0000803F0000803F",
      mask: "0x00000000010101000101"
    }
  }
#-}

// A layer name comes from the op's location, which may hold any bytes; a
// kernel package stores it as JSON text, so slak-translate refuses a name
// that is not UTF-8 at the op and writes nothing (found by slak-fuzz-ir).
// RUN: rm -rf %t && not slak-translate --emit-kernel-package -o %t %s 2>&1 | FileCheck %s
// RUN: not test -e %t
// CHECK: error: {{.*}}the layer name "stage{{.*}}" (from the op's location or its function) is not UTF-8 text (bad byte at offset 5); a kernel package stores layer names as JSON text: name the location in UTF-8
func.func @f(%x: tensor<1x4x8x8xf32>, %w: tensor<4x1x3x3xf32>) -> tensor<1x4x8x8xf32> {
  %y = slak.lk_conv %x weights(%w : tensor<4x1x3x3xf32>)
    : tensor<1x4x8x8xf32> -> tensor<1x4x8x8xf32> loc("stage\C8")
  return %y : tensor<1x4x8x8xf32>
}

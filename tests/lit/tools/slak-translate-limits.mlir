// A layer whose launch grid does not fit the kernels' int block index (and
// CUDA's 2^31 - 1 blocks): slak-translate says so instead of overflowing
// the block count (signed overflow, found with slak-fuzz-ir under UBSan;
// see docs/fuzzing.md).
// RUN: rm -rf %t && not slak-translate --emit-kernel-package -o %t %s 2>&1 | FileCheck %s
// CHECK: slak-translate: KernelPlan::geometry: the forward kernel needs more than 2147483647 blocks for a batch of 1 2147483647x2147483647 images with 4 channels (schedule tile=1x1 block=1x1 {{.*}}); split the batch or use larger tiles
func.func @huge_image(%x: tensor<2x4x2147483647x2147483647xf32>, %w: tensor<4x1x1x1xf32>) -> tensor<2x4x2147483647x2147483647xf32> {
  %y = slak.lk_conv %x weights(%w : tensor<4x1x1x1xf32>)
    {schedule = #slak.schedule<tile = [1, 1], block = [1, 1], stage_input = false>}
    : tensor<2x4x2147483647x2147483647xf32> -> tensor<2x4x2147483647x2147483647xf32>
  return %y : tensor<2x4x2147483647x2147483647xf32>
}

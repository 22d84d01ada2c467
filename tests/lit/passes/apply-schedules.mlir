// RUN: rm -f %t.db
// RUN: slak-opt %s --slak-apply-schedules="device=h100 db=%t.db" | FileCheck %s
// A second run finds the recorded pick in the database.
// RUN: slak-opt %s --slak-apply-schedules="device=h100 db=%t.db" | FileCheck %s
// RUN: slak-opt %s --slak-apply-schedules="device=h100 db=%t.db" | slak-translate --emit-kernel-package -o %t.pkg
// RUN: FileCheck %s --check-prefix=PACKAGE < %t.pkg/manifest.json
// RUN: slak-opt %s --slak-pipeline="mode=infer device=a100 db=%t.db" | FileCheck %s
// RUN: not slak-opt %s --slak-apply-schedules="device=z100 db=%t.db" 2>&1 | FileCheck %s --check-prefix=BAD

// CHECK: slak.lk_conv {{.*}}schedule = #slak.schedule<tile = [{{[0-9]+}}, {{[0-9]+}}], block = [{{[0-9]+}}, {{[0-9]+}}],{{.*}}origin = "model">
// PACKAGE: "origin": "model"
// BAD: error: slak-apply-schedules: device 'z100' is not a named GPU; known: v100, a100,
func.func @layer(%x: tensor<8x124x56x56xf32>, %w0: tensor<124x1x51x5xf32>, %w1: tensor<124x1x5x51xf32>) -> tensor<8x124x56x56xf32> {
  %y = slak.lk_conv %x weights(%w0, %w1 : tensor<124x1x51x5xf32>, tensor<124x1x5x51xf32>) : tensor<8x124x56x56xf32> -> tensor<8x124x56x56xf32>
  return %y : tensor<8x124x56x56xf32>
}

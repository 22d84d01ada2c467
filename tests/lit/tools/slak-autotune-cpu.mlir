// slak-autotune's model form for this CPU (Halide backend): a small layer,
// ranked by the CPU cost model (--model-only keeps the test fast; the
// measured path is the same code with a timer, see autotune tests). The
// pick is stored under this host's key and attached as slak.cpu_schedule.
// REQUIRES: slak-halide
// RUN: rm -f %t.db %t.mlir
// RUN: slak-autotune --cpu --model-only --threads 1 %s -o %t.mlir --db %t.db --quiet \
// RUN:   | FileCheck %s --check-prefix=REPORT
// RUN: FileCheck %s < %t.mlir
// slak-opt attaches the same entry from the database (device=cpu: this host).
// RUN: slak-opt %t.mlir --slak-apply-schedules="device=cpu db=%t.db" | FileCheck %s
// Without an entry the default, labelled so.
// RUN: slak-opt %s --slak-apply-schedules="device=cpu db=%t.missing.db" \
// RUN:   | FileCheck %s --check-prefix=DEFAULT

// REPORT: device:   cpu:{{.*}}:1t (cpu, model only)
// REPORT: chosen (model): vec=
// REPORT: 1 slak.lk_conv op(s) scheduled for cpu:

// CHECK: slak.lk_conv
// CHECK-SAME: slak.cpu_schedule = {device = "cpu:{{.*}}:1t", origin = "model", schedule = "vec={{(8|16|4)}} tile={{[0-9]+}}x{{[0-9]+}} transposeWide=
// DEFAULT: slak.cpu_schedule = {device = "cpu:{{.*}}", origin = "default", schedule = "vec=8 tile=
func.func @layer(%x: tensor<2x4x16x16xf32>, %w0: tensor<4x1x7x3xf32>, %w1: tensor<4x1x3x7xf32>) -> tensor<2x4x16x16xf32> {
  %y = slak.lk_conv %x weights(%w0, %w1 : tensor<4x1x7x3xf32>, tensor<4x1x3x7xf32>) : tensor<2x4x16x16xf32> -> tensor<2x4x16x16xf32>
  return %y : tensor<2x4x16x16xf32>
}

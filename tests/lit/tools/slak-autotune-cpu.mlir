// slak-autotune's model form for this CPU (Halide backend): a small layer,
// ranked by the CPU cost model (--model-only keeps the test fast; the
// measured path is the same code with a timer, see autotune tests). The
// pick is stored in the database under this host's key, where the runtime
// of this host reads it (tests/runtime/TunedScheduleTest.cpp); the module
// carries no CPU schedule, and --slak-apply-schedules refuses device=cpu
// with the reason.
// REQUIRES: slak-halide
// RUN: rm -f %t.db %t.mlir
// RUN: slak-autotune --cpu --model-only --threads 1 %s -o %t.mlir --db %t.db --quiet \
// RUN:   | FileCheck %s --check-prefix=REPORT
// RUN: FileCheck %s < %t.mlir
// RUN: not slak-opt %t.mlir --slak-apply-schedules="device=cpu db=%t.db" 2>&1 \
// RUN:   | FileCheck %s --check-prefix=REFUSED
// RUN: not slak-opt %s --slak-apply-schedules="device=cpu:fuzz:1t db=%t.db" 2>&1 \
// RUN:   | FileCheck %s --check-prefix=REFUSED

// REPORT: device:   cpu:{{.*}}:1t (cpu, model only)
// REPORT: chosen (model): vec={{(8|16|4)}} tile={{[0-9]+}}x{{[0-9]+}} transposeWide=
// REPORT: stored in {{.*}}.db
// REPORT: 1 slak.lk_conv op(s); their CPU schedules for cpu:{{.*}}:1t are in {{.*}}.db, where the runtime on this host reads them

// CHECK: slak.lk_conv
// CHECK-NOT: cpu_schedule
// CHECK-NOT: #slak.schedule
// REFUSED: error: slak-apply-schedules: device 'cpu{{.*}}': CPU (Halide) schedules are not attached to the IR; the runtime reads them from the tuning database of the host that runs the model
func.func @layer(%x: tensor<2x4x16x16xf32>, %w0: tensor<4x1x7x3xf32>, %w1: tensor<4x1x3x7xf32>) -> tensor<2x4x16x16xf32> {
  %y = slak.lk_conv %x weights(%w0, %w1 : tensor<4x1x7x3xf32>, tensor<4x1x3x7xf32>) : tensor<2x4x16x16xf32> -> tensor<2x4x16x16xf32>
  return %y : tensor<2x4x16x16xf32>
}

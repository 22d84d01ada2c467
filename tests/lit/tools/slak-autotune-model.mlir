// slak-autotune's model form for named GPUs (cost model only) on the SLaK-T
// stage-1 example: it fuses and specialises the unfused model, tunes the
// slak.lk_conv, stores the pick and attaches it through the same pass
// slak-opt runs, and writes a module slak-opt reads back.
// RUN: rm -f %t.db %t.a100.mlir %t.h100.mlir %t.train.mlir
// RUN: slak-autotune --gpu a100 %slak_src/examples/slak_t_stage1.mlir -o %t.a100.mlir \
// RUN:   --db %t.db --top 2 2>&1 | FileCheck %s --check-prefix=REPORT
// RUN: FileCheck %s --check-prefix=TUNED < %t.a100.mlir
// RUN: slak-autotune --gpu h100 %slak_src/examples/slak_t_stage1.mlir -o %t.h100.mlir \
// RUN:   --db %t.db --quiet | FileCheck %s --check-prefix=H100-REPORT
// RUN: FileCheck %s --check-prefix=TUNED < %t.h100.mlir
// The attached schedules are the database's: the pass finds them again.
// RUN: slak-opt %t.a100.mlir --slak-apply-schedules="device=a100 db=%t.db" \
// RUN:   --mlir-elide-resource-strings-if-larger=16 | FileCheck %s --check-prefix=TUNED
// Train mode: per-branch outputs, all three kernels tuned.
// RUN: slak-autotune --gpu a100 --mode train %slak_src/examples/slak_t_stage1.mlir \
// RUN:   -o %t.train.mlir --db %t.db --quiet | FileCheck %s --check-prefix=TRAIN
// RUN: FileCheck %s --check-prefix=TUNED-TRAIN < %t.train.mlir
// Errors name what is missing.
// RUN: not slak-autotune --gpu a100 %slak_src/examples/slak_t_stage1.mlir --db %t.db 2>&1 \
// RUN:   | FileCheck %s --check-prefix=NO-OUTPUT
// RUN: not slak-autotune --gpu a100 %s -o %t.empty.mlir --db %t.db 2>&1 \
// RUN:   | FileCheck %s --check-prefix=NOTHING
// RUN: not slak-autotune --gpu a100 %slak_src/tests/lit/tools/Inputs/bad-lk.mlir -o %t.bad.mlir \
// RUN:   --db %t.db 2>&1 | FileCheck %s --check-prefix=BAD
// RUN: not ls %t.bad.mlir

// REPORT: still holds 6 slak.dwconv2d / slak.batch_norm op(s): running slak-pipeline mode=infer
// REPORT: op:       stage1_block0_lk (C=124 56x56 51x5+5x51 density=
// REPORT: device:   a100 (cuda, model only)
// REPORT: chosen (model): tile=
// REPORT: forward {{.*}} ms predicted
// REPORT: wrote {{.*}}.a100.mlir: 1 slak.lk_conv op(s) scheduled for a100
// REPORT-NEXT: stage1_block0_lk {{.*}}: model #slak.schedule<tile = [

// H100-REPORT: device:   h100 (cuda, model only)
// H100-REPORT: scheduled for h100

// TUNED: slak.lk_conv
// TUNED-SAME: schedule = #slak.schedule<tile = [{{[0-9]+}}, {{[0-9]+}}], block = [{{[0-9]+}}, {{[0-9]+}}]
// TUNED-SAME: origin = "model">
// TUNED-SAME: taps = #slak.taps<

// TRAIN: forward {{.*}} ms predicted
// TRAIN: backward-data {{.*}} ms predicted
// TRAIN: backward-weight {{.*}} ms predicted
// TUNED-TRAIN: slak.lk_conv {{.*}}per_branch_outputs{{.*}}origin = "model">
// TUNED-TRAIN-COUNT-3: slak.batch_norm

// NO-OUTPUT: slak-autotune: the model form writes the tuned module: add -o tuned.mlir
// NOTHING: has no slak.lk_conv to tune
// BAD: bad-lk.mlir:3:8: error: 'slak.lk_conv' op weight of branch 0 has kernel size 4x5
func.func @nothing_to_tune(%x: tensor<1x4x8x8xf32>) -> tensor<1x4x8x8xf32> {
  return %x : tensor<1x4x8x8xf32>
}

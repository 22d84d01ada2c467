// Conversion of a (fused, specialised, scheduled) slak.lk_conv to the
// MLIR-free KernelSpec of codegen/, with its tap table and constant weights:
// what slak-translate emits kernels and packages from. The runtime builds
// the same KernelSpec from live modules, so both paths share one codegen.
#pragma once

#include "codegen/KernelSpec.h"
#include "codegen/TapTable.h"
#include "dialect/SlakOps.h"

#include <optional>
#include <string>
#include <vector>

namespace mlir::slak {

/// What code generation needs from one slak.lk_conv: its KernelSpec and,
/// when the IR holds them, its tap table and constant weights.
struct LkConvCodegenInput {
  ::slak::codegen::KernelSpec spec;
  /// From the op's tap_table, or built from constant masks / dense branches;
  /// absent for runtime-sparse ops (the runtime builds it from live masks).
  std::optional<::slak::codegen::TapTable> table;
  /// Constant weights per branch (C*KH*KW, f64) and bias, when constant.
  std::vector<std::vector<double>> weights;
  std::vector<double> bias;
  bool constantWeights = false;
  /// True when the op carries no #slak.schedule: spec.schedule is then a
  /// placeholder and the caller picks codegen::defaultSchedule(spec).
  bool defaultSchedule = false;
};

/// Fails with a message on `op` for what cannot be converted.
FailureOr<LkConvCodegenInput> convertLkConv(LkConvOp op);

/// The op's name in a kernel package and a tuning report: the model's layer
/// path. Taken from the op's NameLoc (slak-export puts loc("<layer path>") on
/// every op; fusion keeps it), else from the enclosing function when it holds
/// this one slak.lk_conv (slak-export names each function after its layer,
/// and text printed without debug info keeps function names but not
/// locations), else "lk_conv_<index>".
std::string lkConvName(LkConvOp op, unsigned index);

} // namespace mlir::slak

// The slak passes and pipelines. registerAllSlakPasses() registers them with
// their `slak-` names, the short aliases `fuse-lk` and `specialize-sparsity`,
// and the named pipeline `slak-pipeline`.
#pragma once

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/Pass/Pass.h"

#include "dialect/SlakDialect.h"

#include <memory>
#include <string>

namespace mlir::slak {

/// Branches at least this dense take the dense form (walk the whole window,
/// masked weights zero) instead of the tap-table form. Measured: the
/// crossover of the two forms on PoCL for a 51x5 + 5x51 layer (C = 32,
/// 56x56) lies between densities 0.3 and 0.4; the GPU estimate from the
/// generated code (one load per FMA on the table walk) is about 0.3.
constexpr double kDefaultDensityThreshold = 0.35;

#define GEN_PASS_DECL
#include "passes/Passes.h.inc"

/// Options of the named pipeline: fuse, canonicalise, specialise and, with
/// a device, apply tuned schedules.
struct PipelineOptions {
  std::string mode = "train";
  double densityThreshold = kDefaultDensityThreshold;
  std::string device; // empty: no schedules attached
  std::string db;     // empty: $SLAK_TUNING_DB or the default path
};
void buildSlakPipeline(OpPassManager &pm, const PipelineOptions &options);

void registerAllSlakPasses();

} // namespace mlir::slak

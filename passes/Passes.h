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

#define GEN_PASS_DECL
#include "passes/Passes.h.inc"

/// Options of the named pipeline: fuse, canonicalise, specialise.
struct PipelineOptions {
  std::string mode = "train";
  double densityThreshold = 0.85;
};
void buildSlakPipeline(OpPassManager &pm, const PipelineOptions &options);

void registerAllSlakPasses();

} // namespace mlir::slak

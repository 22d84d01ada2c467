// WeightGradEmitter: the text of the backward-weight kernels
// (codegen/KernelEmitter.h describes the algorithm) from their plan: phase 1
// in its blocked or tap-table form, and the fixed-order reduction of phase 2.
// Internal to codegen.
#pragma once

#include "codegen/KernelText.h"

namespace slak::codegen {

/// Appends the backward-weight and backward-weight-reduce entry points.
void emitWeightGrad(const KernelPlan &plan, Code &code);

} // namespace slak::codegen

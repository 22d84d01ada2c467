// ConvPassEmitter: the text of the forward and backward-data kernels
// (codegen/KernelEmitter.h describes the algorithm) from their plans.
// Internal to codegen.
#pragma once

#include "codegen/KernelText.h"

namespace slak::codegen {

/// Appends entry point `kind` (Forward or BackwardData) of `plan` to `code`.
void emitConvPass(const KernelPlan &plan, KernelKind kind, Code &code);

} // namespace slak::codegen

// The slak.lk_conv ops of a module as kernel-package entries: what
// `slak-translate --emit-kernel-package` writes, and what the IR fuzzer
// (tests/fuzz) runs on every module that parses and verifies. Built with
// exceptions (codegen reports errors by throwing); errors become
// diagnostics on the op.
#pragma once

#include "codegen/package/KernelPackage.h"

#include "mlir/IR/BuiltinOps.h"

#include <vector>

namespace mlir::slak {

/// One PackagedOp per slak.lk_conv, in module order. An op without
/// #slak.schedule gets the default schedule and a remark saying so. Fails
/// (after emitting an error on each op that cannot be converted or whose
/// kernels cannot be generated) when any op fails.
FailureOr<std::vector<::slak::codegen::PackagedOp>> packageLkConvs(ModuleOp module);

} // namespace mlir::slak

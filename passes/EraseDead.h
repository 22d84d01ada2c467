// Erasing replaced ops together with whatever fed only them (the unfolded
// constants, masks and slices a rewrite leaves behind).
#pragma once

#include "mlir/IR/Operation.h"

namespace mlir::slak {

/// Erases `ops` (users before definitions, and unused by then), then every
/// operand-defining op that became trivially dead.
void eraseWithDeadOperands(ArrayRef<Operation *> ops);

} // namespace mlir::slak

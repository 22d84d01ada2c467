#include "passes/EraseDead.h"

#include "mlir/Interfaces/SideEffectInterfaces.h"
#include "llvm/ADT/STLExtras.h"
#include "llvm/ADT/SetVector.h"

namespace mlir::slak {

void eraseWithDeadOperands(ArrayRef<Operation *> ops) {
  llvm::SetVector<Operation *> feeders;
  for (Operation *op : ops) {
    for (Value operand : op->getOperands())
      if (Operation *def = operand.getDefiningOp())
        feeders.insert(def);
    op->erase();
  }
  for (Operation *op : feeders)
    if (!llvm::is_contained(ops, op) && isOpTriviallyDead(op))
      op->erase();
}

} // namespace mlir::slak

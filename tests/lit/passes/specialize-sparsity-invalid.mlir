// RUN: not slak-opt %s --slak-specialize-sparsity=density-threshold=1.5 2>&1 | FileCheck %s
// CHECK: slak-specialize-sparsity: density-threshold is 1.5, expected a value in [0, 1]
// The flag is named without a dump of the module.
// CHECK-NOT: see current operation
func.func @f() {
  return
}

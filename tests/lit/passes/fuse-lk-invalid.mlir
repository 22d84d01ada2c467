// RUN: not slak-opt %s --slak-fuse-lk=mode=deploy 2>&1 | FileCheck %s
// CHECK: slak-fuse-lk: mode is 'deploy', expected 'train' or 'infer'
// The flag is named without a dump of the module.
// CHECK-NOT: see current operation
func.func @f() {
  return
}

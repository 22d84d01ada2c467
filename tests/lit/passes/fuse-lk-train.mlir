// RUN: slak-opt %s -split-input-file --fuse-lk | FileCheck %s
// RUN: slak-opt %s -split-input-file --slak-fuse-lk=mode=train | FileCheck %s

// The SLaK form: three branches, each with its own batch norm -> one op with
// per-branch outputs, the batch norms kept, summed after.
// CHECK-LABEL: func.func @slak_block
// CHECK-SAME: (%[[X:.*]]: tensor<2x3x9x9xf32>, %[[A:.*]]: tensor<3x1x7x3xf32>, %[[B:.*]]: tensor<3x1x3x7xf32>, %[[C:.*]]: tensor<3x1x3x3xf32>, %[[P:.*]]: tensor<3xf32>)
// CHECK-NEXT: %[[Y:.*]]:3 = slak.lk_conv %[[X]] weights(%[[A]], %[[B]], %[[C]] : {{.*}}) {per_branch_outputs} : tensor<2x3x9x9xf32> -> tensor<2x3x9x9xf32>, tensor<2x3x9x9xf32>, tensor<2x3x9x9xf32>
// CHECK-NEXT: %[[N0:.*]] = slak.batch_norm %[[Y]]#0
// CHECK-NEXT: %[[N1:.*]] = slak.batch_norm %[[Y]]#1
// CHECK-NEXT: %[[N2:.*]] = slak.batch_norm %[[Y]]#2
// CHECK-NEXT: %[[S:.*]] = arith.addf %[[N0]], %[[N1]]
// CHECK-NEXT: %[[T:.*]] = arith.addf %[[S]], %[[N2]]
// CHECK-NEXT: return %[[T]]
// CHECK-NOT: slak.dwconv2d
func.func @slak_block(%x: tensor<2x3x9x9xf32>, %a: tensor<3x1x7x3xf32>, %b: tensor<3x1x3x7xf32>, %c: tensor<3x1x3x3xf32>, %p: tensor<3xf32>) -> tensor<2x3x9x9xf32> {
  %0 = slak.dwconv2d %x, %a : tensor<2x3x9x9xf32>, tensor<3x1x7x3xf32> -> tensor<2x3x9x9xf32>
  %1 = slak.batch_norm %0, %p, %p, %p, %p : tensor<2x3x9x9xf32>, tensor<3xf32>
  %2 = slak.dwconv2d %x, %b : tensor<2x3x9x9xf32>, tensor<3x1x3x7xf32> -> tensor<2x3x9x9xf32>
  %3 = slak.batch_norm %2, %p, %p, %p, %p : tensor<2x3x9x9xf32>, tensor<3xf32>
  %4 = slak.dwconv2d %x, %c : tensor<2x3x9x9xf32>, tensor<3x1x3x3xf32> -> tensor<2x3x9x9xf32>
  %5 = slak.batch_norm %4, %p, %p, %p, %p : tensor<2x3x9x9xf32>, tensor<3xf32>
  %6 = arith.addf %1, %3 : tensor<2x3x9x9xf32>
  %7 = arith.addf %6, %5 : tensor<2x3x9x9xf32>
  return %7 : tensor<2x3x9x9xf32>
}

// -----

// Without batch norms the sum is fused, whatever the association of the
// adds, and the conv biases add up.
// CHECK-LABEL: func.func @summed_right_assoc
// CHECK-SAME: (%[[X:.*]]: {{.*}}, %[[A:.*]]: {{.*}}, %[[B:.*]]: {{.*}}, %[[C:.*]]: {{.*}}, %[[BA:.*]]: tensor<3xf32>, %[[BC:.*]]: tensor<3xf32>)
// CHECK-NEXT: %[[BIAS:.*]] = arith.addf %[[BA]], %[[BC]] : tensor<3xf32>
// CHECK-NEXT: %[[Y:.*]] = slak.lk_conv %[[X]] weights(%[[A]], %[[B]], %[[C]] : tensor<3x1x7x3xf32>, tensor<3x1x3x7xf32>, tensor<3x1x3x3xf32>) bias(%[[BIAS]] : tensor<3xf32>) : tensor<1x3x8x6xf32> -> tensor<1x3x8x6xf32>
// CHECK-NEXT: return %[[Y]]
func.func @summed_right_assoc(%x: tensor<1x3x8x6xf32>, %a: tensor<3x1x7x3xf32>, %b: tensor<3x1x3x7xf32>, %c: tensor<3x1x3x3xf32>, %ba: tensor<3xf32>, %bc: tensor<3xf32>) -> tensor<1x3x8x6xf32> {
  %0 = slak.dwconv2d %x, %a bias(%ba : tensor<3xf32>) : tensor<1x3x8x6xf32>, tensor<3x1x7x3xf32> -> tensor<1x3x8x6xf32>
  %1 = slak.dwconv2d %x, %b : tensor<1x3x8x6xf32>, tensor<3x1x3x7xf32> -> tensor<1x3x8x6xf32>
  %2 = slak.dwconv2d %x, %c bias(%bc : tensor<3xf32>) : tensor<1x3x8x6xf32>, tensor<3x1x3x3xf32> -> tensor<1x3x8x6xf32>
  %3 = arith.addf %1, %0 : tensor<1x3x8x6xf32>
  %4 = arith.addf %2, %3 : tensor<1x3x8x6xf32>
  return %4 : tensor<1x3x8x6xf32>
}

// -----

// Two inputs, two fused ops; a term that is no conv stays in the sum.
// CHECK-LABEL: func.func @two_inputs_and_a_residual
// CHECK-SAME: (%[[X:.*]]: {{.*}}, %[[Z:.*]]: {{.*}}, %[[R:.*]]: tensor<1x2x5x5xf32>
// CHECK-DAG: %[[YX:.*]] = slak.lk_conv %[[X]] weights
// CHECK-DAG: %[[YZ:.*]] = slak.lk_conv %[[Z]] weights
// CHECK: %[[S0:.*]] = arith.addf %[[YX]], %[[YZ]]
// CHECK-NEXT: %[[S1:.*]] = arith.addf %[[S0]], %[[R]]
// CHECK-NEXT: return %[[S1]]
func.func @two_inputs_and_a_residual(%x: tensor<1x2x5x5xf32>, %z: tensor<1x2x5x5xf32>, %r: tensor<1x2x5x5xf32>, %a: tensor<2x1x3x3xf32>, %b: tensor<2x1x5x1xf32>) -> tensor<1x2x5x5xf32> {
  %0 = slak.dwconv2d %x, %a : tensor<1x2x5x5xf32>, tensor<2x1x3x3xf32> -> tensor<1x2x5x5xf32>
  %1 = slak.dwconv2d %z, %a : tensor<1x2x5x5xf32>, tensor<2x1x3x3xf32> -> tensor<1x2x5x5xf32>
  %2 = slak.dwconv2d %x, %b : tensor<1x2x5x5xf32>, tensor<2x1x5x1xf32> -> tensor<1x2x5x5xf32>
  %3 = slak.dwconv2d %z, %b : tensor<1x2x5x5xf32>, tensor<2x1x5x1xf32> -> tensor<1x2x5x5xf32>
  %4 = arith.addf %0, %r : tensor<1x2x5x5xf32>
  %5 = arith.addf %1, %2 : tensor<1x2x5x5xf32>
  %6 = arith.addf %4, %5 : tensor<1x2x5x5xf32>
  %7 = arith.addf %6, %3 : tensor<1x2x5x5xf32>
  return %7 : tensor<1x2x5x5xf32>
}

// -----

// Branches of different inputs, one each: nothing to fuse.
// CHECK-LABEL: func.func @different_inputs
// CHECK-NOT: slak.lk_conv
// CHECK-COUNT-2: slak.dwconv2d
func.func @different_inputs(%x: tensor<1x2x5x5xf32>, %z: tensor<1x2x5x5xf32>, %a: tensor<2x1x3x3xf32>) -> tensor<1x2x5x5xf32> {
  %0 = slak.dwconv2d %x, %a : tensor<1x2x5x5xf32>, tensor<2x1x3x3xf32> -> tensor<1x2x5x5xf32>
  %1 = slak.dwconv2d %z, %a : tensor<1x2x5x5xf32>, tensor<2x1x3x3xf32> -> tensor<1x2x5x5xf32>
  %2 = arith.addf %0, %1 : tensor<1x2x5x5xf32>
  return %2 : tensor<1x2x5x5xf32>
}

// -----

// A conv whose result is also used elsewhere stays (no duplicated work); the
// other two branches fuse.
// CHECK-LABEL: func.func @shared_conv
// CHECK-SAME: (%[[X:.*]]: {{.*}}, %[[A:.*]]: {{.*}}, %[[B:.*]]: {{.*}}, %[[C:.*]]: {{.*}})
// CHECK: %[[KEEP:.*]] = slak.dwconv2d %[[X]], %[[A]]
// CHECK: %[[Y:.*]] = slak.lk_conv %[[X]] weights(%[[B]], %[[C]] :
// CHECK: %[[S:.*]] = arith.addf %[[Y]], %[[KEEP]]
// CHECK: return %[[S]], %[[KEEP]]
func.func @shared_conv(%x: tensor<1x2x5x5xf32>, %a: tensor<2x1x3x3xf32>, %b: tensor<2x1x5x1xf32>, %c: tensor<2x1x1x5xf32>) -> (tensor<1x2x5x5xf32>, tensor<1x2x5x5xf32>) {
  %0 = slak.dwconv2d %x, %a : tensor<1x2x5x5xf32>, tensor<2x1x3x3xf32> -> tensor<1x2x5x5xf32>
  %1 = slak.dwconv2d %x, %b : tensor<1x2x5x5xf32>, tensor<2x1x5x1xf32> -> tensor<1x2x5x5xf32>
  %2 = slak.dwconv2d %x, %c : tensor<1x2x5x5xf32>, tensor<2x1x1x5xf32> -> tensor<1x2x5x5xf32>
  %3 = arith.addf %0, %1 : tensor<1x2x5x5xf32>
  %4 = arith.addf %3, %2 : tensor<1x2x5x5xf32>
  return %4, %0 : tensor<1x2x5x5xf32>, tensor<1x2x5x5xf32>
}

// -----

// A batch norm whose result has another use keeps its branch out.
// CHECK-LABEL: func.func @shared_norm
// CHECK-NOT: slak.lk_conv
func.func @shared_norm(%x: tensor<1x2x5x5xf32>, %a: tensor<2x1x3x3xf32>, %b: tensor<2x1x5x1xf32>, %p: tensor<2xf32>) -> (tensor<1x2x5x5xf32>, tensor<1x2x5x5xf32>) {
  %0 = slak.dwconv2d %x, %a : tensor<1x2x5x5xf32>, tensor<2x1x3x3xf32> -> tensor<1x2x5x5xf32>
  %1 = slak.batch_norm %0, %p, %p, %p, %p : tensor<1x2x5x5xf32>, tensor<2xf32>
  %2 = slak.dwconv2d %x, %b : tensor<1x2x5x5xf32>, tensor<2x1x5x1xf32> -> tensor<1x2x5x5xf32>
  %3 = arith.addf %1, %2 : tensor<1x2x5x5xf32>
  return %3, %1 : tensor<1x2x5x5xf32>, tensor<1x2x5x5xf32>
}

// -----

// Masks travel with their branches (all-true for an unmasked one); a conv
// bias before a batch norm moves into its mean; a branch without a batch
// norm joins the per-branch outputs as it is.
// CHECK-LABEL: func.func @masks_bias_mixed
// CHECK-SAME: (%[[X:.*]]: {{.*}}, %[[A:.*]]: {{.*}}, %[[MA:.*]]: tensor<2x1x3x3xi1>, %[[B:.*]]: {{.*}}, %[[BIAS:.*]]: tensor<2xf32>, %[[P:.*]]: tensor<2xf32>)
// CHECK: %[[TRUE:.*]] = arith.constant dense<true> : tensor<2x1x5x1xi1>
// CHECK: %[[Y:.*]]:2 = slak.lk_conv %[[X]] weights(%[[A]], %[[B]] : tensor<2x1x3x3xf32>, tensor<2x1x5x1xf32>) masks(%[[MA]], %[[TRUE]] : tensor<2x1x3x3xi1>, tensor<2x1x5x1xi1>) {per_branch_outputs}
// CHECK: %[[MEAN:.*]] = arith.subf %[[P]], %[[BIAS]] : tensor<2xf32>
// CHECK: %[[N:.*]] = slak.batch_norm %[[Y]]#0, %[[MEAN]], %[[P]], %[[P]], %[[P]]
// CHECK: arith.addf %[[N]], %[[Y]]#1
func.func @masks_bias_mixed(%x: tensor<1x2x5x5xf32>, %a: tensor<2x1x3x3xf32>, %ma: tensor<2x1x3x3xi1>, %b: tensor<2x1x5x1xf32>, %bias: tensor<2xf32>, %p: tensor<2xf32>) -> tensor<1x2x5x5xf32> {
  %0 = slak.dwconv2d %x, %a mask(%ma : tensor<2x1x3x3xi1>) bias(%bias : tensor<2xf32>) : tensor<1x2x5x5xf32>, tensor<2x1x3x3xf32> -> tensor<1x2x5x5xf32>
  %1 = slak.batch_norm %0, %p, %p, %p, %p : tensor<1x2x5x5xf32>, tensor<2xf32>
  %2 = slak.dwconv2d %x, %b : tensor<1x2x5x5xf32>, tensor<2x1x5x1xf32> -> tensor<1x2x5x5xf32>
  %3 = arith.addf %1, %2 : tensor<1x2x5x5xf32>
  return %3 : tensor<1x2x5x5xf32>
}

// -----

// Non-"same" paddings are kept per branch.
// CHECK-LABEL: func.func @explicit_padding
// CHECK: slak.lk_conv {{.*}} {paddings = array<i64: 0, 1, 1, 0>} : tensor<1x2x7x7xf32> -> tensor<1x2x5x7xf32>
func.func @explicit_padding(%x: tensor<1x2x7x7xf32>, %a: tensor<2x1x3x3xf32>, %b: tensor<2x1x5x1xf32>) -> tensor<1x2x5x7xf32> {
  %0 = slak.dwconv2d %x, %a {padding = array<i64: 0, 1>} : tensor<1x2x7x7xf32>, tensor<2x1x3x3xf32> -> tensor<1x2x5x7xf32>
  %1 = slak.dwconv2d %x, %b {padding = array<i64: 1, 0>} : tensor<1x2x7x7xf32>, tensor<2x1x5x1xf32> -> tensor<1x2x5x7xf32>
  %2 = arith.addf %0, %1 : tensor<1x2x5x7xf32>
  return %2 : tensor<1x2x5x7xf32>
}

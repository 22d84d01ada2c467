// slak-export names every op of a layer with loc("<layer path>"); fuse-lk and
// specialize-sparsity keep it on the fused slak.lk_conv, so slak-translate
// names the packaged op after the layer (what models/deploy looks up).
// RUN: slak-opt %s --slak-pipeline=mode=infer --mlir-print-debuginfo | FileCheck %s
// RUN: rm -rf %t && slak-opt %s --slak-pipeline=mode=infer --mlir-print-debuginfo \
// RUN:   | slak-translate --emit-kernel-package -o %t 2>/dev/null && FileCheck %s --check-prefix=MANIFEST < %t/manifest.json
// RUN: rm -rf %t && slak-opt %s --slak-pipeline=mode=infer | slak-translate --emit-kernel-package \
// RUN:   -o %t 2>/dev/null && FileCheck %s --check-prefix=NO-DEBUGINFO < %t/manifest.json

// CHECK: func.func @stages.0.1.large_kernel
// CHECK: slak.lk_conv {{.*}} loc(#[[LOC:loc[0-9]*]])
// CHECK: #[[LOC]] = loc("stages.0.1.large_kernel")
// MANIFEST: "name": "stages.0.1.large_kernel"
// Without debug info the text loses locations; the op is then named after its
// function (slak-export names each function after its layer).
// NO-DEBUGINFO: "name": "stages.0.1.large_kernel"

func.func @stages.0.1.large_kernel(%x: tensor<?x2x8x8xf32>) -> tensor<?x2x8x8xf32> {
  %w0 = arith.constant dense<0.5> : tensor<2x1x5x3xf32> loc("stages.0.1.large_kernel")
  %m0 = arith.constant dense<[[[[true, false, true], [true, true, true], [false, true, true], [true, true, false], [true, true, true]]], [[[true, true, true], [true, false, true], [true, true, true], [true, true, true], [false, true, true]]]]> : tensor<2x1x5x3xi1> loc("stages.0.1.large_kernel")
  %w1 = arith.constant dense<0.25> : tensor<2x1x3x3xf32> loc("stages.0.1.large_kernel")
  %mean = arith.constant dense<[0.1, -0.2]> : tensor<2xf32> loc("stages.0.1.large_kernel")
  %var = arith.constant dense<[1.5, 0.5]> : tensor<2xf32> loc("stages.0.1.large_kernel")
  %g = arith.constant dense<[0.9, 1.1]> : tensor<2xf32> loc("stages.0.1.large_kernel")
  %b = arith.constant dense<[0.0, 0.3]> : tensor<2xf32> loc("stages.0.1.large_kernel")
  %c0 = slak.dwconv2d %x, %w0 mask(%m0 : tensor<2x1x5x3xi1>) : tensor<?x2x8x8xf32>, tensor<2x1x5x3xf32> -> tensor<?x2x8x8xf32> loc("stages.0.1.large_kernel")
  %n0 = slak.batch_norm %c0, %mean, %var, %g, %b : tensor<?x2x8x8xf32>, tensor<2xf32> loc("stages.0.1.large_kernel")
  %c1 = slak.dwconv2d %x, %w1 : tensor<?x2x8x8xf32>, tensor<2x1x3x3xf32> -> tensor<?x2x8x8xf32> loc("stages.0.1.large_kernel")
  %n1 = slak.batch_norm %c1, %mean, %var, %g, %b : tensor<?x2x8x8xf32>, tensor<2xf32> loc("stages.0.1.large_kernel")
  %y = arith.addf %n0, %n1 : tensor<?x2x8x8xf32> loc("stages.0.1.large_kernel")
  return %y : tensor<?x2x8x8xf32> loc("stages.0.1.large_kernel")
} loc("stages.0.1.large_kernel")

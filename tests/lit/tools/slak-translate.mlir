// slak-translate writes a kernel package for every slak.lk_conv.
// RUN: rm -rf %t && slak-opt %slak_src/examples/slak_t_stage1.mlir --slak-pipeline=mode=infer \
// RUN:   | slak-translate --emit-kernel-package -o %t 2>&1 | FileCheck %s --check-prefix=LOG
// RUN: FileCheck %s --check-prefix=MANIFEST < %t/manifest.json
// RUN: FileCheck %s --check-prefix=CUDA < %t/kernels.cu
// RUN: FileCheck %s --check-prefix=OPENCL < %t/kernels.cl
// RUN: not slak-translate --emit-kernel-package %s 2>&1 | FileCheck %s --check-prefix=NO-DIR
// RUN: not slak-translate %s -o %t 2>&1 | FileCheck %s --check-prefix=NO-ACTION
// RUN: not slak-translate --emit-kernel-package -o %t %slak_src/tests/lit/tools/Inputs/bad-lk.mlir 2>&1 | FileCheck %s --check-prefix=BAD

// LOG: remark: no #slak.schedule: using the default schedule (tile=
// LOG: slak-translate: wrote 1 op(s) to

// MANIFEST: "format": "slak-kernel-package"
// MANIFEST: "name": "stage1_block0_lk"
// MANIFEST: "origin": "default"
// MANIFEST: "signature": "lk_conv.v1 C=124 H=56 W=56 T=f32 out=sum bias=1
// MANIFEST: "branches": [
// MANIFEST: "form": "dense"
// MANIFEST: "kernel": [
// MANIFEST-NEXT: 51,
// MANIFEST-NEXT: 5
// MANIFEST: "tap_table": {
// MANIFEST: "version": 1

// The same body behind two preludes.
// CUDA: extern "C" __global__
// CUDA: slak_lk_[[H:[0-9a-f]+]]_fwd(SLAK_GLOBAL const slak_f32_t
// CUDA: slak_lk_[[H]]_bwd_weight_reduce(
// OPENCL: __kernel
// OPENCL: slak_lk_[[H:[0-9a-f]+]]_fwd(SLAK_GLOBAL const slak_f32_t
// OPENCL: slak_lk_[[H]]_bwd_weight_reduce(

// NO-DIR: slak-translate: --emit-kernel-package needs an output folder: -o DIR
// NO-ACTION: slak-translate: nothing to do; pass --emit-kernel-package -o DIR
// BAD: bad-lk.mlir:3:8: error: 'slak.lk_conv' op weight of branch 0 has kernel size 4x5
func.func @f() {
  return
}

// KernelSpec: everything the code generator needs to know about one fused
// large-kernel depthwise convolution (a SLaK `lk_conv`), free of MLIR and
// LibTorch. The same spec drives the CUDA/OpenCL emitter, the Halide CPU
// pipelines, the autotuner and the runtime's JIT cache.
//
// Math (DESIGN.md section 1), NCHW, stride 1, dilation 1:
//   y[n,c,i,j] = bias[c] + sum_b sum_{(u,v) in taps_b(c)}
//                W_b[c,u,v] * x[n,c, i+u-padH_b, j+v-padW_b]
// Branch weights are dense [C, 1, KH_b, KW_b]; sparsity is expressed by a
// TapTable listing, per branch and channel, the live window positions.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace slak::codegen {

enum class ElementType { F32, F16, BF16 };

const char *elementTypeName(ElementType type); // "f32", "f16", "bf16"
int elementTypeBytes(ElementType type);

/// One parallel branch of the layer: a KH x KW depthwise window.
struct Branch {
  int kernelH = 1;
  int kernelW = 1;
  int padH = 0; // default "same": kernelH / 2
  int padW = 0;
  /// Dense: every window position of every channel is live and no tap table
  /// is read. Otherwise the kernel walks the branch's tap table.
  bool dense = true;

  static Branch same(int kh, int kw, bool dense = true) {
    return Branch{kh, kw, kh / 2, kw / 2, dense};
  }
  int windowSize() const { return kernelH * kernelW; }
};

/// How a kernel is laid out on the GPU (or CPU). Any legal schedule must give
/// correct results; only speed depends on it.
struct Schedule {
  // Forward / backward-data: one block computes a tileH x tileW output tile
  // of one (n, c) plane with blockH x blockW threads; each thread keeps
  // (tileH / blockH) x (tileW / blockW) outputs in registers.
  int tileH = 16;
  int tileW = 32;
  int blockH = 4;
  int blockW = 32;
  /// Stage the input tile plus halo in shared (local) memory.
  bool stageInput = true;
  /// Stage the channel's taps and weights in shared memory.
  bool stageTaps = true;
  /// Sparse branches walk their whole window like dense ones (rotating
  /// register rows) over a staged weight copy with zeros at dead taps, whose
  /// FMAs are skipped but whose input loads are not: faster than walking the
  /// tap table above ~30% density. Forward/backward-data need stageInput and
  /// stageTaps for it (they walk the table otherwise); backward-weight then
  /// computes the whole window blocked and zeroes the dead taps.
  bool maskedWalk = false;
  // Backward-weight: the N*H*W reduction for each (channel, tap) is split
  // into `weightSplit` partial sums (phase 1), reduced in a fixed order in
  // phase 2, so results are bit-identical run to run.
  int weightSplit = 8;
  int weightThreads = 256;
  // Backward-weight phase 1 walks its share of the N*Ho*Wo domain in
  // weightTileH x weightTileW tiles of dy (plus the x halo) staged in shared
  // memory.
  int weightTileH = 8;
  int weightTileW = 32;
  /// When every branch computes its whole window (dense, denseWeightGrad or
  /// maskedWalk), each thread owns this many vertically adjacent taps and
  /// reuses each loaded x value for all of them.
  int weightRowsPerThread = 8;

  int rowsPerThread() const { return tileH / blockH; }
  int colsPerThread() const { return tileW / blockW; }
  int threadsPerBlock() const { return blockH * blockW; }
  /// Empty when legal, otherwise a message naming the bad field.
  std::string validate() const;
  std::string str() const; // "tile=16x32 block=4x32 ..." for logs and keys
};

/// One fused large-kernel layer.
struct KernelSpec {
  int64_t channels = 0;
  /// Spatial size; -1 means dynamic (given at launch).
  int64_t height = -1;
  int64_t width = -1;
  std::vector<Branch> branches;
  /// Training with a BatchNorm per branch: write one output per branch
  /// instead of their sum (DESIGN section 1).
  bool perBranchOutputs = false;
  bool hasBias = false;
  /// Backward-weight computes every window position, not only live taps.
  bool denseWeightGrad = false;
  ElementType elementType = ElementType::F32;
  Schedule schedule;

  /// Output size for an input of the given size: the same for every branch
  /// (validate() checks that).
  int64_t outHeight(int64_t inH) const;
  int64_t outWidth(int64_t inW) const;
  bool anySparse() const;
  /// Empty when legal, otherwise a message naming the bad field and value.
  std::string validate() const;
  /// Stable text that identifies the generated code (cache keys, DB keys).
  std::string signature() const;
};

} // namespace slak::codegen

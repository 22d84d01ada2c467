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

#include "codegen/KernelWindow.h"
#include "codegen/Schedule.h"

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace slak::codegen {

enum class ElementType { F32, F16, BF16 };

/// How the image buffers (x, dx, y, dy) are laid out in memory: NCHW, or
/// channels-last NHWC (PyTorch's channels_last), whose kernels put channels
/// on the fastest thread dimension so that loads and stores coalesce across
/// channels. Weights, dW and the bias are the same in both.
enum class DataLayout { NCHW, NHWC };

const char *dataLayoutName(DataLayout layout); // "nchw", "nhwc"

const char *elementTypeName(ElementType type); // "f32", "f16", "bf16"
/// The type named "f32", "f16" or "bf16"; nothing for another name.
std::optional<ElementType> parseElementType(std::string_view name);
std::string elementTypeChoices(); // "f32, f16 or bf16"
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
  KernelWindow window() const { return {kernelH, kernelW, padH, padW}; }
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
  DataLayout layout = DataLayout::NCHW;
  Schedule schedule;

  /// Output size for an input of the given size: the same for every branch
  /// (validate() checks that).
  int64_t outHeight(int64_t inH) const;
  int64_t outWidth(int64_t inW) const;
  bool anySparse() const;
  /// Empty when legal, otherwise a message naming the bad field and value.
  std::string validate() const;
  bool channelsLast() const { return layout == DataLayout::NHWC; }
  /// Stable text that identifies the generated code (cache keys, DB keys);
  /// NHWC specs say "layout=nhwc", NCHW ones keep the text they always had.
  std::string signature() const;
};

} // namespace slak::codegen

// BufferLayout: how the emitted kernels see their buffers. Every buffer is a
// flat array of the spec's element type (f32, or f16/bf16 bit patterns)
// unless noted; the argument binder (codegen/KernelArguments.h) sizes each
// entry point's buffers with these functions, and the runtime, the OpenCL
// executor and the tests size and fill theirs with them.
//
//   x, dx            [N][C][H][W]            NHWC: [N][H][W][C]
//   y (summed)       [N][C][Ho][Wo]          NHWC: [N][Ho][Wo][C]
//                    (plus bias[c] when spec.hasBias)
//   y (per branch)   [B][N][C][Ho][Wo]       NHWC: [B][N][Ho][Wo][C]; branch-major
//   dy               like y: one image tensor, or B of them
// (spec.layout: NCHW, or NHWC = PyTorch's channels_last; the element
// counts are the same, only the order differs)
//   weights, dW      branches concatenated in branch order, each [C][KH_b][KW_b]
//   bias             [C]
//   tap table        TapTable::offsets ([B*C+1]) and TapTable::taps, int32
//   workspace        float [weightSplit][weightCount] (backward-weight partials)
#pragma once

#include <cstdint>

#include "codegen/KernelSpec.h"

namespace slak::codegen {

/// Offset of branch `branch`'s [C][KH][KW] block in the weight (and dW) buffer.
int64_t weightOffset(const KernelSpec &spec, int branch);
/// Elements of the concatenated weights of all branches.
int64_t weightCount(const KernelSpec &spec);
/// Elements of one output (or dy) tensor [N][C][Ho][Wo] for an N x H x W input.
int64_t outputPlaneCount(const KernelSpec &spec, int64_t n, int64_t h, int64_t w);
/// Elements of the forward output buffer: one or B output tensors.
int64_t outputCount(const KernelSpec &spec, int64_t n, int64_t h, int64_t w);
/// Elements of x (and dx).
int64_t inputCount(const KernelSpec &spec, int64_t n, int64_t h, int64_t w);
/// Element strides of one image tensor [C][h][w] (or [h][w][C]) in the
/// spec's layout: index = n * image + c * channel + y * row + x * pixel.
struct ImageStrides {
  int64_t image = 0, channel = 0, row = 0, pixel = 0;
};
ImageStrides imageStrides(const KernelSpec &spec, int64_t h, int64_t w);
/// Floats of the backward-weight workspace (phase-1 partial sums).
int64_t weightWorkspaceCount(const KernelSpec &spec);

} // namespace slak::codegen

// ChannelsLastWeightGrad: backward-weight for one tap group vectorised
// across channels, for CpuSchedule::channelsLast.
//
// Per block of vectorWidth channels (one parallel task each), for every n:
// x and dy are copied into planes of pixel vectors (x zero-padded), then for
// each block of weightTaps taps (of the union of the block's channels' live
// taps) every strip of weightVectors dy pixels is loaded once and multiplied
// with the input pixels under each tap, accumulating the taps' dW vectors
// (lane = channel) in registers; dy rows that no tap of the block reaches are
// skipped. Inputs are [C, W, H, N] with any strides (NHWC or NCHW memory).
#pragma once

#include "codegen/halide/CpuSchedule.h"

#include <Halide.h>

#include <cstdint>
#include <memory>

namespace slak::codegen::cpu {

/// Run-time inputs of one channels-last backward-weight call (one group).
struct ChannelsLastWeightGradCall {
  Halide::Buffer<float> x, dy;      // [C, W, H, N] and [C, Wo, Ho, N], any strides
  Halide::Buffer<int32_t> offsets;  // [blocks, channel blocks]: du * stride + dv of tap 0
  Halide::Buffer<int32_t> rows;     // [2, blocks, channel blocks]: dy rows the block reaches
  int padLeft = 0, stride = 0;      // x plane padded in columns, in pixels
  int dyStride = 0, stripCount = 0; // dy plane: stripCount strips per row
  int offsetMin = 0, offsetMax = 0;
  Halide::Buffer<float> output; // [vectorWidth, weightTaps, blocks, channel blocks]
};

class ChannelsLastWeightGradPipeline {
public:
  static std::shared_ptr<ChannelsLastWeightGradPipeline> get(bool transposed,
                                                             const CpuSchedule &schedule);
  ChannelsLastWeightGradPipeline(bool transposed, const CpuSchedule &schedule);
  ~ChannelsLastWeightGradPipeline();
  void run(ChannelsLastWeightGradCall &call);

private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

} // namespace slak::codegen::cpu

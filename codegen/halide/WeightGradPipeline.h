// WeightGradPipeline: the Halide pipeline of backward-weight for one tap
// group, JIT-compiled for the host and cached per orientation and
// code-shaping schedule fields.
//
// Per channel: for each block of weightTaps taps, every dy strip of
// weightVectors vectors is loaded once and multiplied with the (aligned)
// input vectors under each tap, accumulating all the taps' partial sums in
// registers; dy rows that no tap of the block can reach are skipped, and only
// live taps have blocks at all.
#pragma once

#include "codegen/halide/CpuSchedule.h"

#include <Halide.h>

#include <algorithm>
#include <cstdint>
#include <memory>

namespace slak::codegen::cpu {

/// Run-time inputs of one backward-weight pipeline call (one group).
struct WeightGradCall {
  Halide::Buffer<float> x, dy;             // [W, H, C, N] and [Wo, Ho, C, N]
  Halide::Buffer<int32_t> offsets;         // [weightTaps, blocks, C]
  Halide::Buffer<int32_t> rows;            // [2, blocks, C]: dy rows the block reaches
  int padTop = 0, padLeft = 0, stride = 0; // x plane
  int copyStride = 0;                      // shifted copies of it, as in ConvCall::Plane
  Halide::Buffer<int32_t> shifts;
  int dyStride = 0, stripCount = 0; // dy plane: stripCount strips per row
  int offsetMin = 0, offsetMax = 0;
  Halide::Buffer<float> output; // [weightTaps, blocks, C]
};

class WeightGradPipeline {
public:
  static std::shared_ptr<WeightGradPipeline> get(bool transposed, const CpuSchedule &schedule);
  WeightGradPipeline(bool transposed, const CpuSchedule &schedule);
  /// As ConvPipeline::alignment().
  static int alignment(const CpuSchedule &schedule) { return std::max(8, schedule.vectorWidth); }
  ~WeightGradPipeline();
  void run(WeightGradCall &call);

private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

} // namespace slak::codegen::cpu

// ConvPipeline: the Halide pipeline of the two conv passes, forward and
// backward-data (the same sum over taps; backward-data reads dy with flipped
// taps), JIT-compiled for the host and cached per group structure and
// code-shaping schedule fields. Image sizes, channel counts, kernel sizes
// and tap lists are run-time inputs.
//
// Per (n, c) plane, one parallel task each:
//   1. copy each input plane into a zero-padded flat plane (transposed for
//      transposed groups), so the tap loop never tests image bounds, and make
//      a few copies of it shifted by 1..7 floats, so that every tap's vector
//      loads are aligned (unaligned loads that straddle cache lines halve the
//      FMA rate on the AVX-512 machines we measured);
//   2. for every register tile of tileRows x tileWidth outputs, walk the
//      channel's live taps that can reach the tile's rows (a contiguous range
//      of the du-sorted tap list: masked taps are absent, out-of-image ones
//      are skipped) and add w * (input vector at the tap's offset) to every
//      vector of the tile; one broadcast weight feeds tileRows x tileVectors
//      FMAs and the tile stays in registers. With tapBlock P > 1 the walk is
//      over vertical blocks of P taps of one column: each input row vector
//      loaded for the block feeds up to P taps (dead ones at weight 0);
//   3. transposed groups are summed into a transposed plane, turned back with
//      8x8 block transposes and used as the start value of the other groups.
#pragma once

#include "codegen/halide/CpuSchedule.h"

#include <Halide.h>

#include <algorithm>
#include <cstdint>
#include <memory>
#include <vector>

namespace slak::codegen::cpu {

/// The group structure a conv pipeline is compiled for.
struct ConvGroupShape {
  int slot = 0;
  bool transposed = false;
};

/// Run-time inputs of one conv pipeline call.
struct ConvCall {
  // One input plane layout per (slot, orientation) the groups read, in the
  // order ConvPipeline::planes() lists them.
  struct Plane {
    int padTop = 0, padLeft = 0, stride = 0, rows = 0;
    // Shifted copies of the padded plane (rows x stride floats), copyStride
    // floats apart: copy k holds the plane shifted left by shifts(k) floats.
    int copyStride = 0;
    Halide::Buffer<int32_t> shifts;
  };
  struct Group {
    // [taps]: copy * copyStride + du * stride + dv - shift: where the tap's
    // aligned loads start in the plane's shifted copies.
    Halide::Buffer<int32_t> offsets;
    Halide::Buffer<float> weights; // [taps]
    // [2, tiles, C]: per band of tile rows, the range of tap blocks (of
    // CpuSchedule::tapBlock taps each; single taps when it is 1) that reach it.
    Halide::Buffer<int32_t> ranges;
    int offsetMin = 0, offsetMax = 0;
  };
  std::vector<Halide::Buffer<float>> inputs; // per slot, [W, H, C, N]
  std::vector<Plane> planes;
  std::vector<Group> groups;
  Halide::Buffer<float> bias; // [C] when compiled with a bias
  Halide::Buffer<float> output;
};

class ConvPipeline {
public:
  /// The cached pipeline for this structure (compiled on first use).
  static std::shared_ptr<ConvPipeline> get(const std::vector<ConvGroupShape> &groups, int numSlots,
                                           bool bias, const CpuSchedule &schedule);
  ConvPipeline(const std::vector<ConvGroupShape> &groups, int numSlots, bool bias,
               const CpuSchedule &schedule);
  ~ConvPipeline();

  /// (slot, transposed) of every input plane, in ConvCall::planes order.
  const std::vector<ConvGroupShape> &planes() const { return planes_; }
  /// The group index of each plane's tile count: rows of output tiles (in
  /// the group's orientation) that the pipeline may compute, for output
  /// planes of outH x outW. ConvCall::Group::ranges must cover this many.
  int tilesFor(bool transposed, int64_t outH, int64_t outW) const;
  /// Output rows / columns (in a plane's orientation) the pipeline may
  /// compute, which the padded input layout must cover.
  int64_t computedRows(bool transposed, int64_t outH, int64_t outW) const;
  int64_t computedCols(bool transposed, int64_t outH, int64_t outW) const;
  /// Floats per aligned vector load: plane strides and tile widths are
  /// multiples of it, and shifts lie in [0, alignment()).
  int alignment() const { return std::max(8, schedule_.vectorWidth); }
  void run(ConvCall &call);

private:
  struct Impl;
  int64_t computedExtent(bool transposed, int64_t along, int64_t across, int step,
                         int acrossStep) const;
  std::unique_ptr<Impl> impl_;
  std::vector<ConvGroupShape> groups_, planes_;
  CpuSchedule schedule_;
  bool hasN_ = false;
};

} // namespace slak::codegen::cpu

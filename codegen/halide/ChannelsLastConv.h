// ChannelsLastConv: the conv pipeline (forward, backward-data) vectorised
// across channels, for CpuSchedule::channelsLast. Small images with many
// channels (7- and 14-pixel rows, hundreds of channels) leave most lanes of a
// width-vectorised row idle; here every vector holds one pixel of
// vectorWidth channels, so any image size fills them.
//
// Per (block of vectorWidth channels, n), one parallel task each:
//   1. copy each input plane into a zero-padded plane of pixel vectors
//      (lane = channel within the block; transposed for transposed groups).
//      The input is [C, W, H, N] with any strides: NHWC memory gives one
//      vector load per pixel, NCHW memory a gather (the layout change happens
//      here, inside the task, not as a pass over the tensor);
//   2. for every register tile of tileRows x tileVectors pixels, walk the
//      block's live taps that reach the tile's rows (the union of its
//      channels' taps, sorted by row offset; out-of-image taps skipped) and
//      add (weight vector of the tap) * (input pixel vector) to every pixel
//      of the tile. With tapBlock P > 1 the walk is over vertical blocks of P
//      taps of one column, so each loaded input pixel feeds up to P taps;
//   3. groups are chained: a group's tiles start from the previous groups'
//      sum (read transposed where orientations differ: a pixel is a vector,
//      so no shuffles), the last group's tiles go straight to the output.
#pragma once

#include "codegen/halide/ConvPipeline.h"
#include "codegen/halide/CpuSchedule.h"

#include <Halide.h>

#include <cstdint>
#include <memory>
#include <vector>

namespace slak::codegen::cpu {

/// Run-time inputs of one channels-last conv pipeline call.
struct ChannelsLastConvCall {
  // One padded plane of pixels per (slot, orientation) read, in the order
  // ChannelsLastConvPipeline::planes() lists them.
  struct Plane {
    int padTop = 0, padLeft = 0, stride = 0, rows = 0;
  };
  struct Group {
    Halide::Buffer<int32_t> offsets; // [taps]: du * stride + dv, in pixels
    Halide::Buffer<float> weights;   // [vectorWidth, taps]: lane = channel in block
    // [2, tiles, blocks]: per band of tile rows and channel block, the range
    // of tap blocks (of tapBlock taps each) that reach it.
    Halide::Buffer<int32_t> ranges;
    int offsetMin = 0, offsetMax = 0;
  };
  std::vector<Halide::Buffer<float>> inputs; // per slot, [C, W, H, N], any strides
  std::vector<Plane> planes;
  std::vector<Group> groups;
  Halide::Buffer<float> bias;   // [blocks * vectorWidth] when compiled with a bias
  Halide::Buffer<float> output; // [C, Wo, Ho, N], any strides
};

class ChannelsLastConvPipeline {
public:
  /// The cached pipeline for this structure (compiled on first use).
  static std::shared_ptr<ChannelsLastConvPipeline> get(const std::vector<ConvGroupShape> &groups,
                                                       int numSlots, bool bias,
                                                       const CpuSchedule &schedule);
  ChannelsLastConvPipeline(const std::vector<ConvGroupShape> &groups, int numSlots, bool bias,
                           const CpuSchedule &schedule);
  ~ChannelsLastConvPipeline();

  /// (slot, transposed) of every input plane, in ChannelsLastConvCall::planes order.
  const std::vector<ConvGroupShape> &planes() const { return planes_; }
  /// Bands of tile rows (in a group's orientation) the pipeline may compute
  /// for outH x outW outputs: ChannelsLastConvCall::Group::ranges covers them.
  int tilesFor(bool transposed, int64_t outH, int64_t outW) const;
  /// Output rows / columns (in a plane's orientation) the pipeline may
  /// compute, which the padded input layout must cover.
  int64_t computedRows(bool transposed, int64_t outH, int64_t outW) const;
  int64_t computedCols(bool transposed, int64_t outH, int64_t outW) const;
  void run(ChannelsLastConvCall &call);

private:
  struct Impl;
  int64_t computedExtent(bool transposed, int64_t along, int64_t across, int step,
                         int acrossStep) const;
  std::unique_ptr<Impl> impl_;
  std::vector<ConvGroupShape> planes_;
  CpuSchedule schedule_;
  bool hasN_ = false;
};

} // namespace slak::codegen::cpu

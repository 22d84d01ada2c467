// CpuLkConv: the CPU backend of one large-kernel depthwise layer (a SLaK
// `lk_conv`): forward, backward-data, backward-weight and the bias gradient
// as Halide pipelines JIT-compiled for the host, on raw float pointers. No
// MLIR, no LibTorch.
//
// Layouts follow the reference oracle (codegen/reference/Reference.h): x, y,
// dy, dx are contiguous NCHW (or NHWC, Shape::channelsLast); branch weights and weight gradients
// are dense [C, 1, KH_b, KW_b]; bias is [C]. Element type f32 (f16/bf16 specs are rejected: convert
// at the boundary).
//
// The object keeps the current tap table (setTaps when masks change) and, per
// pass and image size, the taps regrouped for the pipelines; the compiled
// pipelines themselves are cached process-wide per (group structure,
// CpuSchedule), with every size dynamic. Calls on one object are serialised.
#pragma once

#include "codegen/KernelSpec.h"
#include "codegen/TapTable.h"
#include "codegen/halide/CpuSchedule.h"
#include "codegen/halide/TapPlan.h"

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <tuple>
#include <vector>

namespace slak::codegen::cpu {

/// Input size of a call (NCHW order) and the memory layout of its image
/// tensors (x, y, dy, dx; per-branch outputs and dy one tensor each).
struct Shape {
  int64_t n = 1, c = 1, h = 1, w = 1;
  /// NHWC memory (PyTorch's channels_last) instead of NCHW. Schedules with
  /// CpuSchedule::channelsLast read and write either layout in place; the
  /// others need NCHW (the runtime converts for them).
  bool channelsLast = false;
  int64_t numel() const { return n * c * h * w; }
};

class CpuLkConv {
public:
  /// Throws std::invalid_argument when the spec or schedule is illegal or
  /// the spec's element type is not f32.
  CpuLkConv(const KernelSpec &spec, const CpuSchedule &schedule);
  /// Without a schedule: defaultCpuSchedule(spec, h, w) for each image size
  /// h x w it meets (a 7x7 image gets a narrower tile than a 56x56 one).
  explicit CpuLkConv(const KernelSpec &spec);
  ~CpuLkConv();

  const KernelSpec &spec() const { return spec_; }
  /// The fixed schedule (or, without one, the default for 56x56 images).
  const CpuSchedule &schedule() const { return schedule_; }
  /// The schedule used for images of height x width.
  CpuSchedule scheduleFor(int64_t height, int64_t width) const;

  /// The live taps of the sparse branches (Branch::dense = false), from
  /// buildTapTable(spec, masks). Needed before any call when a branch is
  /// sparse; dense branches never read it. Does not recompile anything.
  void setTaps(const TapTable &table);

  /// Forward. Summed: outputs = {y} (+ bias when spec.hasBias). Per-branch
  /// outputs: one pointer per branch, no bias. `threads` <= 0: all cores.
  void forward(const Shape &in, const float *x, const std::vector<const float *> &weights,
               const float *bias, const std::vector<float *> &outputs, int threads = 0);
  /// Backward-data: dx from one dy per branch (per-branch outputs) or one
  /// shared dy; each dy has the output shape.
  void backwardData(const Shape &in, const std::vector<const float *> &dy,
                    const std::vector<const float *> &weights, float *dx, int threads = 0);
  /// Backward-weight: one dW per branch, [C, 1, KH, KW]; masked taps get 0
  /// unless spec.denseWeightGrad. dy as in backwardData.
  void backwardWeight(const Shape &in, const float *x, const std::vector<const float *> &dy,
                      const std::vector<float *> &weightGrads, int threads = 0);
  /// dbias[c] = sum over n, i, j of all dy.
  void backwardBias(const Shape &in, const std::vector<const float *> &dy, float *dbias,
                    int threads = 0);

  /// Compiles (or fetches) the pipelines a pass needs at this size and
  /// regroups the taps, so that a later call only runs.
  void prepare(Pass pass, int64_t height, int64_t width);

private:
  struct Prepared;
  Prepared &prepared(Pass pass, int64_t height, int64_t width);
  void prepareChannelsLast(Prepared &prep);
  void checkLayout(const char *fn, const Shape &in, const Prepared &prep) const;
  void checkShape(const char *fn, const Shape &in) const;
  void checkDy(const char *fn, const std::vector<const float *> &dy) const;

  KernelSpec spec_;
  CpuSchedule schedule_;
  bool autoSchedule_ = false;
  std::optional<TapTable> taps_;
  std::map<std::tuple<int, int64_t, int64_t>, std::unique_ptr<Prepared>> prepared_;
  std::mutex mutex_;
};

} // namespace slak::codegen::cpu

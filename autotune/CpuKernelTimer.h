// CpuKernelTimer: runs the CPU (Halide) pipelines of a spec for real on
// random data and times them, for the CPU tuner.
#pragma once

#include <memory>
#include <string>

#include "autotune/Device.h"
#include "autotune/Measure.h"
#include "autotune/Tuner.h"
#include "autotune/Workload.h"
#include "codegen/halide/CpuSchedule.h"

namespace slak::autotune {

using codegen::cpu::CpuSchedule;

/// Runs the Halide pipelines of a spec (random data, random masks of the
/// workload's density) and times them.
class CpuKernelTimer {
public:
  explicit CpuKernelTimer(int threads = 0);
  ~CpuKernelTimer();
  CpuDevice device() const { return cpu_; }
  /// Times `kind` of `spec` with `schedule` on `workload`; the first call per
  /// schedule compiles the pipelines (not timed: warm-up).
  Timing time(const KernelSpec &spec, const CpuSchedule &schedule, const Workload &workload,
              KernelKind kind, const MeasureOptions &options);
  /// Sets of random input / output data made so far: one per (problem,
  /// workload) in a row; every call on the same one reuses it (only the last
  /// set is kept, so memory stays flat across layers).
  int dataSetsCreated() const { return dataSetsCreated_; }

private:
  struct Buffers;
  Buffers &buffers(const KernelSpec &spec, const Workload &workload);
  CpuDevice cpu_;
  std::string buffersKey_;
  std::unique_ptr<Buffers> buffers_;
  int dataSetsCreated_ = 0;
};

} // namespace slak::autotune

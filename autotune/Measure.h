// Measure: timing kernels for real. A timer runs one kernel kind of a spec
// with a given schedule on a workload (random masks of the workload's
// density, random data), after warm-up runs, and reports every sample and
// their median. The CPU timer (Halide) lives in CpuTuning.h; the GPU timer
// is an interface the runtime implements (CUDA through the driver API) and
// registers, so autotune needs no CUDA and no LibTorch.
#pragma once

#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "autotune/Device.h"
#include "autotune/Workload.h"

namespace slak::autotune {

struct MeasureOptions {
  int warmup = 1;
  int repeats = 5;
  /// Stop repeating once this many seconds were spent on one kernel (at
  /// least 3 samples are always taken).
  double maxSecondsPerKernel = 5.0;
  /// CPU worker threads (<= 0: every core).
  int threads = 0;
  /// Wall: elapsed time (what a user sees). ProcessCpu: CPU time of this
  /// process, all threads together; on a machine shared with other jobs it
  /// is far less noisy than wall time (use one thread: idle pool threads may
  /// spin and add to it).
  enum class Clock { Wall, ProcessCpu } clock = Clock::Wall;
};

struct Timing {
  double medianMs = 0;
  std::vector<double> samplesMs;
};

/// Runs `once` options.warmup times, then repeats it, returning the median
/// of the wall-clock samples in milliseconds.
Timing timeMedian(const std::function<void()> &once, const MeasureOptions &options);
double median(std::vector<double> values);

/// Kendall's tau-b between two equally long lists (1: same order, -1:
/// reversed); pairs tied in either list count as neither.
double kendallTau(const std::vector<double> &a, const std::vector<double> &b);

/// Thrown where a measurement cannot run here (no GPU, no driver, a build
/// without the backend); the message says why and what to do.
class MeasurementUnavailable : public std::runtime_error {
public:
  using std::runtime_error::runtime_error;
};

/// Times emitted kernels on the local GPU; implemented by the runtime.
class GpuKernelTimer {
public:
  virtual ~GpuKernelTimer() = default;
  /// The device as the model sees it (SMs, shared memory, ... read from the
  /// driver; name = canonicalGpuName of the driver's name).
  virtual GpuDevice device() const = 0;
  /// Times `kind` of `spec` (with spec.schedule; BackwardWeight includes its
  /// reduction) on `workload`, with randomTapTable(spec, workload.density,
  /// workload.seed) as the tap table. Throws std::runtime_error on failure.
  virtual Timing time(const KernelSpec &spec, const Workload &workload, KernelKind kind,
                      const MeasureOptions &options) = 0;
};

/// Opens a timer on the local GPU, or throws MeasurementUnavailable naming
/// the reason (no CUDA driver, no device, ...).
using GpuTimerFactory = std::function<std::unique_ptr<GpuKernelTimer>()>;
/// The runtime's CUDA backend calls this once (e.g. from
/// slak::runtime::registerGpuTimer()); later calls replace the factory.
void setGpuTimerFactory(GpuTimerFactory factory);
/// A timer on the local GPU; throws MeasurementUnavailable when no factory
/// is registered in this binary or the factory finds no usable GPU.
std::unique_ptr<GpuKernelTimer> openLocalGpuTimer();

} // namespace slak::autotune

// LayerTuner: tunes layer after layer for one target, the way slak-autotune
// (single-layer form, and the MLIR form: one KernelSpec per slak.lk_conv)
// uses it. The target is a named GPU (model only), the local GPU (measured
// through the registered GPU timer) or the host CPU (Halide, measured, or
// model only). Timers are opened once and reused for every layer.
#pragma once

#include <memory>
#include <string>

#include "autotune/Tuner.h"

namespace slak::autotune {

struct TuneTarget {
  enum class Kind { NamedGpu, LocalGpu, Cpu };
  Kind kind = Kind::NamedGpu;
  std::string gpu;     // NamedGpu: a gpuTable() name
  bool measure = true; // Cpu: measure (true) or rank with the model only
  int threads = 0;     // Cpu: worker threads (<= 0: every core)

  /// "--gpu a100" / "--gpu local" / "--cpu" as a target. Throws
  /// std::invalid_argument listing the known GPUs for an unknown name.
  static TuneTarget fromGpuName(const std::string &name);
  static TuneTarget cpu(bool measure = true, int threads = 0);
};

class LayerTuner {
public:
  /// Opens what the target needs. Throws MeasurementUnavailable (local GPU
  /// without a GPU or a GPU timer; CPU in a build without Halide) and
  /// std::invalid_argument (unknown GPU).
  explicit LayerTuner(const TuneTarget &target);
  ~LayerTuner();

  /// The database device key results are stored under.
  std::string device() const;
  KernelFamily backend() const;
  /// Tunes one layer; options.measure is set from the target.
  TuningResult tune(const KernelSpec &spec, const Workload &workload, TuneOptions options);

  /// Re-measures `result`'s default and chosen schedules alternately,
  /// `rounds` times per kind (one repeat each time), so that load from other
  /// jobs hits both alike; medians per kind. Needs a measuring target.
  struct Verification {
    KindTimes defaultMs{kNoTime, kNoTime, kNoTime};
    KindTimes chosenMs{kNoTime, kNoTime, kNoTime};
    int rounds = 0;
  };
  Verification verify(const KernelSpec &spec, const Workload &workload, const TuningResult &result,
                      int rounds, MeasureOptions options);

  /// The default schedule's text for `spec` on this target's backend.
  std::string defaultSchedule(const KernelSpec &spec, const Workload &workload) const;

  /// Times each of `schedules` (schedule text of this target's backend)
  /// for each of `kinds`, round-robin `rounds` times (one repeat each), so
  /// that load from other jobs hits all alike; medians per schedule and kind.
  std::vector<KindTimes> compare(const KernelSpec &spec, const Workload &workload,
                                 const std::vector<KernelKind> &kinds,
                                 const std::vector<std::string> &schedules, int rounds,
                                 MeasureOptions options);

private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

} // namespace slak::autotune

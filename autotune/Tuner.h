// Tuner: the search. A TuningProblem (one spec, one workload, one device and
// backend) lists the legal schedules of each part (ScheduleSpace.h), predicts
// them with its cost model and, where the device is here, measures them. The
// search is the same for every backend:
//
//   1. enumerate each part needed by the requested kernel kinds (conv:
//      forward/backward-data, weight: backward-weight; the other part stays
//      at the default schedule) and predict every candidate;
//   2. model only: per coupling key (fields both parts read, e.g. the GPU's
//      maskedWalk), take each part's best predicted candidate; the key with
//      the smallest predicted total wins (origin "model");
//   3. measuring: a part with at most `exhaustiveLimit` candidates is
//      measured whole, otherwise the model's top `measureTop`, the two best
//      of every coupling key and the anchors (the default and its variants
//      in the coupled fields); the measured best combination wins (origin
//      "measured"). The default is always measured, so a measured choice is
//      never slower than it;
//   4. `evaluateModel` > 0 also measures that many candidates spread evenly
//      over the model's ranking and reports Kendall's tau per kind.
//
// Progress (enumeration, measurements, with an ETA) goes to
// TuneOptions::progress (stderr in slak-autotune).
#pragma once

#include <array>
#include <cmath>
#include <limits>
#include <ostream>
#include <string>
#include <vector>

#include "autotune/Device.h"
#include "autotune/Measure.h"
#include "autotune/ScheduleSpace.h"
#include "autotune/TuningDatabase.h"
#include "autotune/Workload.h"

namespace slak::autotune {

/// Which kernels a schedule is for: the generated GPU kernels or the Halide
/// CPU pipelines.
enum class KernelFamily { Cuda, Cpu };
const char *backendName(KernelFamily backend); // "cuda", "cpu"

/// The code generator and backend compiler a schedule was tuned with: a
/// schedule tuned by another version may no longer be the best (or legal).
/// "slak 0.1.0 cuda lk_conv.v1", "slak 0.1.0 cpu halide-14 lk_conv.v1".
std::string compilerVersion(KernelFamily backend);

constexpr double kNoTime = std::numeric_limits<double>::quiet_NaN();
using KindTimes = std::array<double, 3>; // indexed by kindIndex(); NaN = not timed

struct TuneOptions {
  std::vector<KernelKind> kinds = {kTunedKinds.begin(), kTunedKinds.end()};
  bool measure = false;
  int measureTop = 8;
  int exhaustiveLimit = 16;
  int evaluateModel = 0;
  /// Ranked candidates kept per part in TuningResult::ranked.
  int keepRanked = 10;
  MeasureOptions measureOptions;
  std::ostream *progress = nullptr;
};

struct RankedCandidate {
  std::string schedule; // full schedule text (the other part at the default)
  int coupling = 0;
  bool isDefault = false;
  KindTimes predictedMs{kNoTime, kNoTime, kNoTime};
  KindTimes measuredMs{kNoTime, kNoTime, kNoTime};
  double predictedScore = 0; // sum over the requested kinds of the part
  double measuredScore = kNoTime;
};

struct TuningResult {
  KernelFamily backend = KernelFamily::Cuda;
  TuningKey key;
  std::string workload;
  std::vector<KernelKind> kinds;
  std::string schedule;
  ScheduleOrigin origin = ScheduleOrigin::Model;
  KindTimes predictedMs{kNoTime, kNoTime, kNoTime};
  KindTimes measuredMs{kNoTime, kNoTime, kNoTime};
  std::string defaultSchedule;
  KindTimes defaultPredictedMs{kNoTime, kNoTime, kNoTime};
  KindTimes defaultMeasuredMs{kNoTime, kNoTime, kNoTime};
  std::array<size_t, 2> spaceSize{};                  // per SchedulePart
  std::array<std::vector<RankedCandidate>, 2> ranked; // best predicted first, per part
  std::vector<MeasurementRecord> measurements;
  KindTimes kendallTau{kNoTime, kNoTime, kNoTime};
  std::array<int, 3> tauSamples{};

  /// Sum over the requested kinds (NaN when one is missing).
  double total(const KindTimes &times) const;
  /// What the database stores for this result.
  StoredChoice choice() const;
};

/// One spec on one device: what the search needs from a backend.
class TuningProblem {
public:
  virtual ~TuningProblem() = default;
  virtual KernelFamily backend() const = 0;
  virtual TuningKey key() const = 0;
  virtual std::string workload() const = 0;
  /// Enumerates `part`'s candidates (needed = some requested kind reads the
  /// part; otherwise the default and its coupling variants only). Index 0
  /// must be the default schedule's part. Returns the count.
  virtual size_t enumerate(SchedulePart part, bool needed, const ProgressCallback &progress) = 0;
  virtual std::string text(SchedulePart part, size_t index) const = 0;
  /// Candidates always measured: the default and its variants in the
  /// coupled fields, so each coupling's best is never worse than them.
  virtual std::vector<size_t> anchors(SchedulePart part) const {
    (void)part;
    return {0};
  }
  virtual int coupling(SchedulePart part, size_t index) const = 0;
  virtual double predict(SchedulePart part, size_t index, KernelKind kind) = 0;
  virtual bool canMeasure() const = 0;
  virtual Timing measure(SchedulePart part, size_t index, KernelKind kind,
                         const MeasureOptions &options) = 0;
  /// The conv fields of conv candidate `conv` with the weight fields of
  /// weight candidate `weight`, as schedule text.
  virtual std::string combine(size_t conv, size_t weight) const = 0;
};

TuningResult search(TuningProblem &problem, const TuneOptions &options);

/// GPU tuning for `device`: model only without a timer, measured with one
/// (the timer's device then names the key).
TuningResult tuneGpu(const KernelSpec &spec, const Workload &workload, const GpuDevice &device,
                     const TuneOptions &options, GpuKernelTimer *timer = nullptr);

/// Stores the measurements and the choice of `result` in one transaction;
/// returns whether the choice was stored (a model pick never replaces a
/// measured one unless `replaceMeasured`).
bool recordResult(TuningDatabase &db, const TuningResult &result, bool replaceMeasured = false);

} // namespace slak::autotune

#include "autotune/Measure.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <ctime>
#include <mutex>

namespace slak::autotune {
namespace {

std::mutex &factoryMutex() {
  static std::mutex mutex;
  return mutex;
}

GpuTimerFactory &factory() {
  static GpuTimerFactory f;
  return f;
}

} // namespace

double median(std::vector<double> values) {
  if (values.empty())
    return 0;
  std::sort(values.begin(), values.end());
  const size_t n = values.size();
  return n % 2 ? values[n / 2] : 0.5 * (values[n / 2 - 1] + values[n / 2]);
}

Timing timeMedian(const std::function<void()> &once, const MeasureOptions &options) {
  using Clock = std::chrono::steady_clock;
  auto cpuMs = [] {
    timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec * 1e-6;
  };
  const bool cpu = options.clock == MeasureOptions::Clock::ProcessCpu;
  for (int i = 0; i < options.warmup; ++i)
    once();
  Timing t;
  const auto start = Clock::now();
  const int repeats = std::max(1, options.repeats);
  for (int i = 0; i < repeats; ++i) {
    const auto a = Clock::now();
    const double ca = cpu ? cpuMs() : 0;
    once();
    const double cb = cpu ? cpuMs() : 0;
    const auto b = Clock::now();
    t.samplesMs.push_back(cpu ? cb - ca : std::chrono::duration<double, std::milli>(b - a).count());
    const double spent = std::chrono::duration<double>(b - start).count();
    if (i + 1 >= std::min(3, repeats) && spent > options.maxSecondsPerKernel)
      break;
  }
  t.medianMs = median(t.samplesMs);
  return t;
}

double kendallTau(const std::vector<double> &a, const std::vector<double> &b) {
  if (a.size() != b.size())
    throw std::invalid_argument("kendallTau: lists of " + std::to_string(a.size()) + " and " +
                                std::to_string(b.size()) + " values");
  double concordant = 0, discordant = 0, tiesA = 0, tiesB = 0;
  for (size_t i = 0; i < a.size(); ++i)
    for (size_t j = i + 1; j < a.size(); ++j) {
      const double da = a[i] - a[j], db = b[i] - b[j];
      if (da == 0 && db == 0)
        continue;
      if (da == 0)
        ++tiesA;
      else if (db == 0)
        ++tiesB;
      else if ((da > 0) == (db > 0))
        ++concordant;
      else
        ++discordant;
    }
  const double denom =
      std::sqrt((concordant + discordant + tiesA) * (concordant + discordant + tiesB));
  return denom > 0 ? (concordant - discordant) / denom : 0.0;
}

void setGpuTimerFactory(GpuTimerFactory f) {
  std::lock_guard<std::mutex> lock(factoryMutex());
  factory() = std::move(f);
}

std::unique_ptr<GpuKernelTimer> openLocalGpuTimer() {
  GpuTimerFactory f;
  {
    std::lock_guard<std::mutex> lock(factoryMutex());
    f = factory();
  }
  if (!f)
    throw MeasurementUnavailable(
        "measuring on the local GPU needs the runtime's CUDA backend, which this binary does "
        "not include (no GPU timer is registered); use --gpu <name> for model-only tuning "
        "(known GPUs: " +
        knownGpuNames() + ")");
  return f();
}

} // namespace slak::autotune

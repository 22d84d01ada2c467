#include "autotune/CpuTuning.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <stdexcept>

namespace slak::autotune {
namespace {

CpuSchedule combineCpu(const CpuSchedule &conv, const CpuSchedule &weight) {
  CpuSchedule s = conv;
  s.weightTaps = weight.weightTaps;
  s.weightVectors = weight.weightVectors;
  return s;
}

class CpuTuningProblem : public TuningProblem {
public:
  CpuTuningProblem(const KernelSpec &spec, const Workload &workload, const CpuDevice &cpu,
                   CpuKernelTimer *timer)
      : spec_(spec), workload_(workload), cpu_(cpu), timer_(timer), model_(spec, workload, cpu) {
    default_ = codegen::cpu::defaultCpuSchedule(spec, workload.height, workload.width);
  }

  KernelFamily backend() const override { return KernelFamily::Cpu; }
  TuningKey key() const override {
    return {problemSignature(spec_), cpu_.name, compilerVersion(KernelFamily::Cpu)};
  }
  std::string workload() const override { return workload_.str(); }

  size_t enumerate(SchedulePart part, bool needed, const ProgressCallback &progress) override {
    std::vector<CpuSchedule> &out = candidates_[static_cast<int>(part)];
    out = {default_};
    std::vector<CpuSchedule> space = cpuScheduleSpace(spec_, workload_, cpu_, part, default_);
    for (const CpuSchedule &s : space) {
      if (s == default_)
        continue;
      if (needed) {
        out.push_back(s);
        continue;
      }
      // Not tuned: only the default's fields with other coupled values.
      CpuSchedule variant = default_;
      variant.channelsLast = s.channelsLast;
      variant.vectorWidth = s.vectorWidth;
      variant.transposeWide = s.transposeWide;
      variant.alignLoads = s.alignLoads;
      if (variant.validate().empty() && std::find(out.begin(), out.end(), variant) == out.end())
        out.push_back(variant);
    }
    if (progress)
      progress(out.size(), out.size());
    predictions_[static_cast<int>(part)].assign(out.size(), KindTimes{kNoTime, kNoTime, kNoTime});
    return out.size();
  }
  std::string text(SchedulePart part, size_t i) const override { return at(part, i).str(); }
  std::vector<size_t> anchors(SchedulePart part) const override {
    const auto &list = candidates_[static_cast<int>(part)];
    std::vector<size_t> out = {0};
    for (size_t i = 1; i < list.size(); ++i) {
      CpuSchedule s = list[i];
      s.channelsLast = default_.channelsLast;
      s.vectorWidth = default_.vectorWidth;
      s.transposeWide = default_.transposeWide;
      s.alignLoads = default_.alignLoads;
      if (s == default_)
        out.push_back(i);
    }
    return out;
  }
  int coupling(SchedulePart part, size_t i) const override {
    const CpuSchedule &s = at(part, i);
    return (s.channelsLast ? 1000 : 0) + s.vectorWidth * 4 + (s.transposeWide ? 2 : 0) +
           (s.alignLoads ? 1 : 0);
  }
  double predict(SchedulePart part, size_t i, KernelKind kind) override {
    double &slot = predictions_[static_cast<int>(part)][i][kindIndex(kind)];
    if (std::isnan(slot))
      slot = model_.predict(at(part, i), kind).ms;
    return slot;
  }
  bool canMeasure() const override { return timer_ != nullptr; }
  Timing measure(SchedulePart part, size_t i, KernelKind kind,
                 const MeasureOptions &options) override {
    if (!timer_)
      throw MeasurementUnavailable("no CPU timer");
    return timer_->time(spec_, at(part, i), workload_, kind, options);
  }
  std::string combine(size_t conv, size_t weight) const override {
    return combineCpu(at(SchedulePart::Conv, conv), at(SchedulePart::Weight, weight)).str();
  }

private:
  const CpuSchedule &at(SchedulePart part, size_t i) const {
    return candidates_[static_cast<int>(part)].at(i);
  }
  KernelSpec spec_;
  Workload workload_;
  CpuDevice cpu_;
  CpuKernelTimer *timer_;
  CpuCostModel model_;
  CpuSchedule default_;
  std::array<std::vector<CpuSchedule>, 2> candidates_;
  std::array<std::vector<KindTimes>, 2> predictions_;
};

} // namespace

TuningResult tuneCpu(const KernelSpec &spec, const Workload &workload, const CpuDevice &cpu,
                     const TuneOptions &options, CpuKernelTimer *timer) {
  if (std::string err = checkWorkload(spec, workload); !err.empty())
    throw std::invalid_argument("tuneCpu: " + err);
  CpuTuningProblem problem(spec, workload, timer ? timer->device() : cpu, timer);
  TuneOptions o = options;
  o.measure = timer != nullptr;
  return search(problem, o);
}

} // namespace slak::autotune
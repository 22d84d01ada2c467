#include "autotune/LayerTuner.h"

#include "autotune/Device.h"
#include "autotune/Measure.h"
#include "autotune/ScheduleText.h"
#include "codegen/DefaultSchedule.h"
#include "codegen/halide/CpuSchedule.h"

#ifdef SLAK_AUTOTUNE_WITH_CPU
#include "autotune/CpuTuning.h"
#endif

namespace slak::autotune {

TuneTarget TuneTarget::fromGpuName(const std::string &name) {
  TuneTarget t;
  if (name == "local") {
    t.kind = Kind::LocalGpu;
    return t;
  }
  t.kind = Kind::NamedGpu;
  t.gpu = findGpu(name).name; // throws with the known names
  return t;
}

TuneTarget TuneTarget::cpu(bool measure, int threads) {
  TuneTarget t;
  t.kind = Kind::Cpu;
  t.measure = measure;
  t.threads = threads;
  return t;
}

struct LayerTuner::Impl {
  TuneTarget target;
  GpuDevice gpu;
  std::unique_ptr<GpuKernelTimer> gpuTimer;
#ifdef SLAK_AUTOTUNE_WITH_CPU
  CpuDevice cpu;
  std::unique_ptr<CpuKernelTimer> cpuTimer;
#endif
};

LayerTuner::LayerTuner(const TuneTarget &target) : impl_(std::make_unique<Impl>()) {
  impl_->target = target;
  switch (target.kind) {
  case TuneTarget::Kind::NamedGpu:
    impl_->gpu = findGpu(target.gpu);
    break;
  case TuneTarget::Kind::LocalGpu:
    impl_->gpuTimer = openLocalGpuTimer();
    impl_->gpu = impl_->gpuTimer->device();
    break;
  case TuneTarget::Kind::Cpu:
#ifdef SLAK_AUTOTUNE_WITH_CPU
    impl_->cpu = hostCpu(target.threads);
    if (target.measure)
      impl_->cpuTimer = std::make_unique<CpuKernelTimer>(target.threads);
#else
    throw MeasurementUnavailable("this build has no CPU backend (Halide was not found at "
                                 "configure time): apt-get install libhalide14-0-dev and "
                                 "reconfigure");
#endif
    break;
  }
}

LayerTuner::~LayerTuner() = default;

std::string LayerTuner::device() const {
#ifdef SLAK_AUTOTUNE_WITH_CPU
  if (impl_->target.kind == TuneTarget::Kind::Cpu)
    return impl_->cpu.name;
#endif
  return impl_->gpu.name;
}

KernelFamily LayerTuner::backend() const {
  return impl_->target.kind == TuneTarget::Kind::Cpu ? KernelFamily::Cpu : KernelFamily::Cuda;
}

TuningResult LayerTuner::tune(const KernelSpec &spec, const Workload &workload,
                              TuneOptions options) {
  switch (impl_->target.kind) {
  case TuneTarget::Kind::NamedGpu:
    options.measure = false;
    return tuneGpu(spec, workload, impl_->gpu, options);
  case TuneTarget::Kind::LocalGpu:
    options.measure = true;
    return tuneGpu(spec, workload, impl_->gpu, options, impl_->gpuTimer.get());
  case TuneTarget::Kind::Cpu:
#ifdef SLAK_AUTOTUNE_WITH_CPU
    options.measure = impl_->target.measure;
    return tuneCpu(spec, workload, impl_->cpu, options, impl_->cpuTimer.get());
#else
    break;
#endif
  }
  throw MeasurementUnavailable("this build has no CPU backend");
}

LayerTuner::Verification LayerTuner::verify(const KernelSpec &spec, const Workload &workload,
                                            const TuningResult &result, int rounds,
                                            MeasureOptions options) {
  Verification v;
  v.rounds = rounds;
  if (rounds <= 0)
    return v;
  const std::vector<KindTimes> times = compare(
      spec, workload, result.kinds, {result.defaultSchedule, result.schedule}, rounds, options);
  v.defaultMs = times[0];
  v.chosenMs = times[1];
  return v;
}

std::string LayerTuner::defaultSchedule(const KernelSpec &spec, const Workload &workload) const {
  if (impl_->target.kind == TuneTarget::Kind::Cpu)
    return codegen::cpu::defaultCpuSchedule(spec, workload.height, workload.width).str();
  return codegen::defaultSchedule(spec, spec.anySparse() ? workload.density : -1.0).str();
}

std::vector<KindTimes> LayerTuner::compare(const KernelSpec &spec, const Workload &workload,
                                           const std::vector<KernelKind> &kinds,
                                           const std::vector<std::string> &schedules, int rounds,
                                           MeasureOptions options) {
  std::vector<KindTimes> out(schedules.size(), KindTimes{kNoTime, kNoTime, kNoTime});
  if (rounds <= 0)
    return out;
  options.repeats = 1;
  std::function<Timing(const std::string &, KernelKind)> time;
  switch (impl_->target.kind) {
  case TuneTarget::Kind::NamedGpu:
    throw MeasurementUnavailable("cannot time schedules on " + impl_->gpu.name +
                                 ": it is not here (model-only target)");
  case TuneTarget::Kind::LocalGpu:
    time = [&](const std::string &text, KernelKind kind) {
      KernelSpec s = spec;
      s.schedule = parseSchedule(text);
      return impl_->gpuTimer->time(s, workload, kind, options);
    };
    break;
  case TuneTarget::Kind::Cpu:
#ifdef SLAK_AUTOTUNE_WITH_CPU
    if (!impl_->cpuTimer)
      throw MeasurementUnavailable("cannot time schedules with a model-only CPU target "
                                   "(--model-only)");
    time = [&](const std::string &text, KernelKind kind) {
      return impl_->cpuTimer->time(spec, parseCpuSchedule(text), workload, kind, options);
    };
#endif
    break;
  }
  if (!time)
    throw MeasurementUnavailable("this build has no CPU backend");
  for (KernelKind k : kinds) {
    std::vector<std::vector<double>> samples(schedules.size());
    for (int r = 0; r < rounds; ++r)
      for (size_t i = 0; i < schedules.size(); ++i)
        samples[i].push_back(time(schedules[i], k).medianMs);
    for (size_t i = 0; i < schedules.size(); ++i)
      out[i][kindIndex(k)] = median(samples[i]);
  }
  return out;
}

} // namespace slak::autotune

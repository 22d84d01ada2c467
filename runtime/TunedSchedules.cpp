// Where the runtime's schedules come from: the tuning database that
// slak-autotune and --slak-apply-schedules share (autotune/Lookup.h,
// autotune/CpuScheduleLookup.h), else the default heuristics. Lookups never
// fail a kernel: a corrupt or foreign database gives one warning and the
// default schedules.
#include <c10/util/Exception.h>

#include <cstdio>
#include <map>
#include <mutex>

#include "autotune/CpuScheduleLookup.h"
#include "autotune/Device.h"
#include "autotune/Lookup.h"
#include "codegen/DefaultSchedule.h"
#include "runtime/LkConvBackend.h"
#include "runtime/Log.h"
#include "runtime/cuda/CudaDriver.h"

namespace slak::runtime {
namespace {

struct ScheduleMemo {
  std::mutex mutex;
  ScheduleProvider provider;
  std::map<std::string, codegen::Schedule> gpu;
  std::map<std::string, std::pair<std::optional<codegen::cpu::CpuSchedule>, std::string>> cpu;
};

ScheduleMemo &memo() {
  static ScheduleMemo *m = new ScheduleMemo();
  return *m;
}

void warnUnusable(const std::string &path, const std::string &error) {
  logOnce("tuning-db " + path, "warning: cannot use the tuning database (" + error +
                                   "); using the default schedules. Move the file away or "
                                   "point $SLAK_TUNING_DB at another one");
}

} // namespace

std::string tuningDatabasePath() { return autotune::defaultDatabasePath(); }

std::string scheduleDeviceKey(BackendKind kind, const c10::Device &device) {
  switch (kind) {
  case BackendKind::Cuda:
    try {
      const int index = device.has_index() ? device.index() : 0;
      return autotune::canonicalGpuName(cuda::CudaDriver::get().deviceName(index));
    } catch (const std::exception &) {
      return "cuda";
    }
  case BackendKind::OpenCL:
    return "opencl";
  default:
    return "cpu";
  }
}

void setScheduleProvider(ScheduleProvider provider) {
  ScheduleMemo &m = memo();
  std::lock_guard<std::mutex> lock(m.mutex);
  m.provider = std::move(provider);
  m.gpu.clear();
  m.cpu.clear();
}

codegen::Schedule chooseSchedule(const codegen::KernelSpec &spec, double sparseDensity,
                                 const std::string &deviceKey) {
  ScheduleMemo &m = memo();
  codegen::KernelSpec plain = spec;
  plain.schedule = codegen::Schedule{};
  char density[32];
  std::snprintf(density, sizeof density, "%.6f", sparseDensity);
  const std::string key = plain.signature() + " density=" + density + " device=" + deviceKey;
  ScheduleProvider provider;
  {
    std::lock_guard<std::mutex> lock(m.mutex);
    auto it = m.gpu.find(key);
    if (it != m.gpu.end())
      return it->second;
    provider = m.provider;
  }
  codegen::Schedule schedule;
  if (provider) {
    try {
      schedule = provider(plain, sparseDensity);
    } catch (const std::invalid_argument &e) {
      TORCH_CHECK(false, "slak: no schedule fits this layer: ", e.what());
    }
    logDebug("GPU schedule from the schedule provider: " + schedule.str());
  } else {
    const std::string path = tuningDatabasePath();
    std::string error;
    const autotune::ScheduleChoice choice =
        autotune::lookupScheduleNoThrow(path, plain, deviceKey, sparseDensity, &error);
    if (!error.empty())
      warnUnusable(path, error);
    if (choice.origin == autotune::ScheduleOrigin::Default) {
      try {
        schedule = codegen::defaultSchedule(plain, sparseDensity);
      } catch (const std::invalid_argument &e) {
        TORCH_CHECK(false, "slak: no schedule fits this layer: ", e.what());
      }
    } else {
      schedule = choice.schedule;
    }
    if (debugLogging())
      logDebug("GPU schedule for " + plain.signature() + " on '" + deviceKey + "': " +
               (choice.origin == autotune::ScheduleOrigin::Default
                    ? "the default heuristic (" + choice.note + ")"
                    : std::string(autotune::originName(choice.origin)) + " from " + path +
                          " (key " + choice.device + ")") +
               ": " + schedule.str());
  }
  plain.schedule = schedule;
  if (std::string err = plain.validate(); !err.empty())
    TORCH_CHECK(false, "slak: the schedule provider gave an illegal schedule (", schedule.str(),
                "): ", err);
  std::lock_guard<std::mutex> lock(m.mutex);
  m.gpu.emplace(key, schedule);
  return schedule;
}

std::optional<codegen::cpu::CpuSchedule> tunedCpuSchedule(const codegen::KernelSpec &spec,
                                                          int threads, std::string *description) {
  ScheduleMemo &m = memo();
  const std::string key = autotune::problemSignature(spec) + " threads=" + std::to_string(threads);
  {
    std::lock_guard<std::mutex> lock(m.mutex);
    auto it = m.cpu.find(key);
    if (it != m.cpu.end()) {
      if (description)
        *description = it->second.second;
      return it->second.first;
    }
  }
  const std::string path = tuningDatabasePath();
  std::string error;
  const int64_t h = spec.height > 0 ? spec.height : 56, w = spec.width > 0 ? spec.width : 56;
  const autotune::CpuScheduleChoice choice =
      autotune::lookupCpuScheduleNoThrow(path, spec, autotune::hostCpuKeys(threads), h, w, &error);
  if (!error.empty())
    warnUnusable(path, error);
  std::optional<codegen::cpu::CpuSchedule> result;
  std::string text;
  if (choice.origin != autotune::ScheduleOrigin::Default) {
    result = choice.schedule;
    text =
        std::string(autotune::originName(choice.origin)) + ", " + path + ", key " + choice.device;
  } else {
    text = "default: " + choice.note;
  }
  logDebug("CPU schedule for " + autotune::problemSignature(spec) + ": " +
           (result ? result->str() + " (" + text + ")" : "the per-size default (" + text + ")"));
  if (description)
    *description = text;
  std::lock_guard<std::mutex> lock(m.mutex);
  m.cpu.emplace(key, std::make_pair(result, text));
  return result;
}

} // namespace slak::runtime

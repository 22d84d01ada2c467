#include "autotune/CpuScheduleLookup.h"

#include <stdexcept>
#include <sys/stat.h>
#include <thread>

#include "autotune/Device.h"
#include "autotune/ScheduleText.h"
#include "autotune/Tuner.h"
#include "autotune/Workload.h"

namespace slak::autotune {

std::vector<std::string> hostCpuKeys(int threads) {
  const CpuDevice host = hostCpu(threads);
  std::vector<std::string> keys = {host.name};
  const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  for (int t = 1; t <= cores; ++t)
    if (t != host.threads)
      keys.push_back(hostCpu(t).name);
  return keys;
}

CpuScheduleChoice lookupCpuSchedule(TuningDatabase *db, const KernelSpec &spec,
                                    const std::vector<std::string> &cpuDevices, int64_t height,
                                    int64_t width) {
  CpuScheduleChoice c;
  c.schedule = codegen::cpu::defaultCpuSchedule(spec, height, width);
  if (!db) {
    c.note = "no tuning database";
    return c;
  }
  const std::string signature = problemSignature(spec);
  const std::string compiler = compilerVersion(KernelFamily::Cpu);
  c.note = "no tuned CPU schedule for this layer on " +
           (cpuDevices.empty() ? std::string("this CPU") : cpuDevices.front());
  for (const std::string &device : cpuDevices) {
    const auto stored = db->findChoice({signature, device, compiler});
    if (!stored)
      continue;
    // The CPU cost model ranks candidates for the measured search; on its
    // own it is far off for small images (it misses the fixed cost of each
    // parallel task), so only measured picks replace the default.
    if (stored->origin == ScheduleOrigin::Model) {
      c.note = "the stored CPU schedule for " + device +
               " was picked by the cost model alone (slak-autotune --cpu --model-only); the "
               "runtime uses measured CPU picks only: run slak-autotune --cpu without "
               "--model-only";
      continue;
    }
    try {
      c.schedule = parseCpuSchedule(stored->schedule);
    } catch (const std::exception &e) {
      c.note = "stored CPU schedule for " + device + " is unusable (" + e.what() + ")";
      c.schedule = codegen::cpu::defaultCpuSchedule(spec, height, width);
      continue;
    }
    c.origin = stored->origin;
    c.predictedMs = stored->predictedMs;
    c.measuredMs = stored->measuredMs;
    c.device = device;
    c.note.clear();
    return c;
  }
  return c;
}

CpuScheduleChoice lookupCpuSchedule(TuningDatabase *db, const KernelSpec &spec,
                                    const std::string &cpuDevice, int64_t height, int64_t width) {
  return lookupCpuSchedule(db, spec, std::vector<std::string>{cpuDevice}, height, width);
}

CpuScheduleChoice lookupCpuScheduleNoThrow(const std::string &dbPath, const KernelSpec &spec,
                                           const std::vector<std::string> &cpuDevices,
                                           int64_t height, int64_t width,
                                           std::string *error) noexcept {
  auto fallback = [&](const std::string &what) {
    if (error)
      *error = what;
    CpuScheduleChoice c;
    try {
      c.schedule = codegen::cpu::defaultCpuSchedule(spec, height, width);
    } catch (...) {
    }
    c.note = what;
    return c;
  };
  try {
    struct stat st;
    if (dbPath.empty() || stat(dbPath.c_str(), &st) != 0) {
      CpuScheduleChoice c = lookupCpuSchedule(nullptr, spec, cpuDevices, height, width);
      c.note = "no tuning database at " + (dbPath.empty() ? std::string("(none)") : dbPath);
      return c;
    }
    TuningDatabase db(dbPath, TuningDatabase::Access::ReadOnly);
    return lookupCpuSchedule(&db, spec, cpuDevices, height, width);
  } catch (const std::exception &e) {
    return fallback(e.what());
  } catch (...) {
    return fallback("unknown error while reading the tuning database " + dbPath);
  }
}

} // namespace slak::autotune

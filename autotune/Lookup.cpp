#include "autotune/Lookup.h"

#include <cstdlib>
#include <memory>
#include <sys/stat.h>

#include "autotune/ScheduleSpace.h"
#include "autotune/ScheduleText.h"
#include "codegen/DefaultSchedule.h"

namespace slak::autotune {
namespace {

ScheduleChoice fallback(const KernelSpec &spec, const std::string &device, double density,
                        std::string note) {
  ScheduleChoice c;
  c.schedule = codegen::defaultSchedule(spec, density);
  c.origin = ScheduleOrigin::Default;
  c.device = device;
  c.note = std::move(note);
  return c;
}

/// The device keys a lookup tries: the name, then its table family.
std::vector<std::string> deviceKeys(const std::string &device) {
  std::vector<std::string> keys = {device};
  try {
    const GpuDevice &d = findGpu(device);
    if (d.name != device)
      keys.push_back(d.name);
    if (d.family != d.name && d.family != device)
      keys.push_back(d.family);
  } catch (const std::invalid_argument &) {
  }
  return keys;
}

} // namespace

std::string defaultDatabasePath() {
  if (const char *env = std::getenv("SLAK_TUNING_DB"); env && *env)
    return env;
  if (const char *xdg = std::getenv("XDG_CACHE_HOME"); xdg && *xdg)
    return std::string(xdg) + "/slak/tuning.db";
  if (const char *home = std::getenv("HOME"); home && *home)
    return std::string(home) + "/.cache/slak/tuning.db";
  return "slak-tuning.db";
}

ScheduleChoice lookupSchedule(TuningDatabase *db, const KernelSpec &spec, const std::string &device,
                              double density) {
  if (!db)
    return fallback(spec, device, density, "no tuning database");
  const std::string signature = problemSignature(spec);
  const std::string compiler = compilerVersion(KernelFamily::Cuda);
  std::string note = "no tuned schedule for this layer on " + device;
  for (const std::string &key : deviceKeys(device)) {
    const auto stored = db->findChoice({signature, key, compiler});
    if (!stored)
      continue;
    KernelSpec probe = spec;
    try {
      probe.schedule = parseSchedule(stored->schedule);
      describeSchedule(probe); // still legal for this code generator?
    } catch (const std::exception &e) {
      note = "stored schedule for " + key + " is unusable (" + e.what() + ")";
      continue;
    }
    ScheduleChoice c;
    c.schedule = probe.schedule;
    c.origin = stored->origin;
    c.predictedMs = stored->predictedMs;
    c.measuredMs = stored->measuredMs;
    c.device = key;
    return c;
  }
  return fallback(spec, device, density, note);
}

ScheduleChoice lookupSchedule(const std::string &dbPath, const KernelSpec &spec,
                              const std::string &device, double density) {
  struct stat st;
  if (stat(dbPath.c_str(), &st) != 0)
    return fallback(spec, device, density, "no tuning database at " + dbPath);
  TuningDatabase db(dbPath, TuningDatabase::Access::ReadOnly);
  return lookupSchedule(&db, spec, device, density);
}

ScheduleChoice bestSchedule(TuningDatabase *db, const KernelSpec &spec, const std::string &device,
                            const Workload &workload, const TuneOptions &options) {
  const double density = spec.anySparse() ? workload.density : -1.0;
  ScheduleChoice found = lookupSchedule(db, spec, device, density);
  if (found.origin != ScheduleOrigin::Default)
    return found;
  const GpuDevice *gpu = nullptr;
  try {
    gpu = &findGpu(device);
  } catch (const std::invalid_argument &) {
    return found; // not a named GPU: nothing to model
  }
  TuneOptions modelOnly = options;
  modelOnly.measure = false;
  const TuningResult result = tuneGpu(spec, workload, *gpu, modelOnly);
  if (db)
    recordResult(*db, result);
  ScheduleChoice c;
  c.schedule = parseSchedule(result.schedule);
  c.origin = ScheduleOrigin::Model;
  c.predictedMs = result.total(result.predictedMs);
  c.device = result.key.device;
  return c;
}

namespace {

ScheduleChoice safeDefault(const KernelSpec &spec, const std::string &device, double density,
                           const std::string &what, std::string *error) noexcept {
  if (error)
    *error = what;
  try {
    return fallback(spec, device, density, what);
  } catch (...) {
    ScheduleChoice c;
    c.device = device;
    c.note = what;
    return c;
  }
}

} // namespace

ScheduleChoice lookupScheduleNoThrow(const std::string &dbPath, const KernelSpec &spec,
                                     const std::string &device, double density,
                                     std::string *error) noexcept {
  try {
    return lookupSchedule(dbPath, spec, device, density);
  } catch (const std::exception &e) {
    return safeDefault(spec, device, density, e.what(), error);
  } catch (...) {
    return safeDefault(spec, device, density, "unknown error", error);
  }
}

ScheduleChoice bestScheduleNoThrow(const std::string &dbPath, const KernelSpec &spec,
                                   const std::string &device, const Workload &workload,
                                   std::string *error) noexcept {
  const double density = spec.anySparse() ? workload.density : -1.0;
  try {
    std::unique_ptr<TuningDatabase> db;
    if (!dbPath.empty())
      db = std::make_unique<TuningDatabase>(dbPath);
    return bestSchedule(db.get(), spec, device, workload);
  } catch (const std::exception &e) {
    return safeDefault(spec, device, density, e.what(), error);
  } catch (...) {
    return safeDefault(spec, device, density, "unknown error", error);
  }
}

} // namespace slak::autotune

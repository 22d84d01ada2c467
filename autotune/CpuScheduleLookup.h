// CpuScheduleLookup: "which CPU (Halide) schedule for this spec on this
// host?" from the tuning database (its text: ScheduleText.h). Halide-free,
// so the runtime's library can ask without linking Halide; the CPU tuner
// itself (CpuTuning.h) needs the Halide backend.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "autotune/ScheduleText.h"
#include "autotune/TuningDatabase.h"
#include "codegen/KernelSpec.h"
#include "codegen/halide/CpuSchedule.h"

namespace slak::autotune {

using codegen::KernelSpec;
using codegen::cpu::CpuSchedule;

struct CpuScheduleChoice {
  CpuSchedule schedule;
  ScheduleOrigin origin = ScheduleOrigin::Default;
  std::optional<double> predictedMs, measuredMs;
  std::string device; // the key the answer was found under (empty: default)
  std::string note;   // why the default was used, for logs
};

/// The database keys of this host's CPU, best first: `threads` worker
/// threads (<= 0: every core), then the other thread counts up to the core
/// count (a schedule tuned on one thread is still the best guess on two).
std::vector<std::string> hostCpuKeys(int threads = 0);

/// The stored CPU schedule for `spec` under the first of `cpuDevices` that
/// has one, else defaultCpuSchedule(spec, height, width). `db` may be null.
CpuScheduleChoice lookupCpuSchedule(TuningDatabase *db, const KernelSpec &spec,
                                    const std::vector<std::string> &cpuDevices, int64_t height = 56,
                                    int64_t width = 56);
CpuScheduleChoice lookupCpuSchedule(TuningDatabase *db, const KernelSpec &spec,
                                    const std::string &cpuDevice, int64_t height = 56,
                                    int64_t width = 56);

/// The same through a database file, never throwing: a missing file gives
/// the default with a note; a corrupt or foreign one, or any other error,
/// the default with `*error` (when not null) set to the message.
CpuScheduleChoice lookupCpuScheduleNoThrow(const std::string &dbPath, const KernelSpec &spec,
                                           const std::vector<std::string> &cpuDevices,
                                           int64_t height, int64_t width,
                                           std::string *error) noexcept;

} // namespace slak::autotune

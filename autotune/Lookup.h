// Lookup: "which schedule for this spec on this device?" for the runtime's
// JIT and the --slak-apply-schedules pass. The answer comes from the tuning
// database (a measured choice, or a model choice), and falls back to the
// codegen default when the database has none. bestSchedule() additionally
// tunes with the model (and records the pick) for named GPUs the database
// does not know yet.
#pragma once

#include <optional>
#include <string>

#include "autotune/Tuner.h"
#include "autotune/TuningDatabase.h"
#include "codegen/KernelSpec.h"

namespace slak::autotune {

/// $SLAK_TUNING_DB when set, else $XDG_CACHE_HOME/slak/tuning.db, else
/// $HOME/.cache/slak/tuning.db.
std::string defaultDatabasePath();

struct ScheduleChoice {
  codegen::Schedule schedule;
  ScheduleOrigin origin = ScheduleOrigin::Default;
  std::optional<double> predictedMs; // over the kinds it was tuned for
  std::optional<double> measuredMs;
  std::string device; // the key the answer was found under ("a100" for an "a100-80gb")
  std::string note;   // why the default was used, for logs
};

/// The stored GPU schedule for `spec` on `device` (exact device, then its
/// table family), else codegen::defaultSchedule(spec, sparseDensity). `db`
/// may be null. A stored schedule that no longer parses or fits the spec is
/// skipped with a note.
ScheduleChoice lookupSchedule(TuningDatabase *db, const KernelSpec &spec, const std::string &device,
                              double sparseDensity = -1.0);
/// The same through a file: a missing file gives the default (with a note);
/// a corrupt or foreign file throws TuningDatabaseError naming it.
ScheduleChoice lookupSchedule(const std::string &dbPath, const KernelSpec &spec,
                              const std::string &device, double sparseDensity = -1.0);

/// lookupSchedule, and for a named GPU without a stored choice: tune with
/// the model on `workload`, record the pick in `db` (when not null) and
/// return it (origin model). Other devices get the default.
ScheduleChoice bestSchedule(TuningDatabase *db, const KernelSpec &spec, const std::string &device,
                            const Workload &workload, const TuneOptions &options = {});

/// For callers built without exceptions (MLIR passes run -fno-exceptions):
/// these never throw. On any error (corrupt or foreign database, a spec the
/// code generator rejects, ...) they set `*error` (when not null) to the
/// message and return the default schedule (or, when even that fails, a
/// default-constructed one with origin Default).
ScheduleChoice lookupScheduleNoThrow(const std::string &dbPath, const KernelSpec &spec,
                                     const std::string &device, double sparseDensity,
                                     std::string *error) noexcept;
/// bestSchedule through a database file (opened read-write, created when
/// missing; an empty path means no database), without exceptions.
ScheduleChoice bestScheduleNoThrow(const std::string &dbPath, const KernelSpec &spec,
                                   const std::string &device, const Workload &workload,
                                   std::string *error) noexcept;

} // namespace slak::autotune

// TuningDatabase: the SQLite file shared by slak-autotune, the
// --slak-apply-schedules pass and the runtime's JIT. Keyed by (problem
// signature, device, compiler version), it keeps every measurement and one
// chosen schedule per key with its origin (measured, or predicted by the
// model).
//
// Several processes may use one file at once: it runs in WAL mode, waits on
// locks (busy timeout) and writes in BEGIN IMMEDIATE transactions, so a
// tuning run's measurements and choice land together or not at all. The
// file is identified by PRAGMA application_id and a schema-version table;
// anything else (another program's database, a corrupt or non-SQLite file,
// a newer schema) is refused with an error naming the file, and the file
// is left exactly as it was.
//
// Schema version 1:
//   slak_schema(key TEXT PRIMARY KEY, value TEXT)  -- format, schema_version
//   measurements(id, signature, device, compiler, backend, kind, schedule,
//                workload, predicted_ms, measured_ms, samples, host, created_at)
//   choices(signature, device, compiler, backend, schedule, origin, kinds,
//           workload, predicted_ms, measured_ms, default_predicted_ms,
//           default_measured_ms, updated_at,
//           PRIMARY KEY (signature, device, compiler))
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

struct sqlite3;

namespace slak::autotune {

/// Where a schedule came from. Default never lands in the database: it is
/// what a lookup answers when the database has nothing.
enum class ScheduleOrigin { Measured, Model, Default };
const char *originName(ScheduleOrigin origin); // "measured", "model", "default"
ScheduleOrigin parseOrigin(const std::string &name);

/// A database that cannot be used: corrupt, foreign, newer schema, locked
/// for longer than the busy timeout. The message names the file.
class TuningDatabaseError : public std::runtime_error {
public:
  using std::runtime_error::runtime_error;
};

struct TuningKey {
  std::string signature; // problemSignature(spec)
  std::string device;    // "a100", "h100", "cpu:<model>:<threads>t", ...
  std::string compiler;  // compilerVersion(backend)
};

struct MeasurementRecord {
  TuningKey key;
  std::string backend;  // "cuda", "cpu"
  std::string kind;     // "forward", "backward-data", "backward-weight"
  std::string schedule; // schedule text
  std::string workload; // Workload::str()
  std::optional<double> predictedMs;
  std::optional<double> measuredMs; // median
  std::vector<double> samplesMs;
  std::string host;
};

struct StoredChoice {
  TuningKey key;
  std::string backend;
  std::string schedule;
  ScheduleOrigin origin = ScheduleOrigin::Model;
  std::string kinds; // "forward,backward-data,backward-weight"
  std::string workload;
  std::optional<double> predictedMs, measuredMs;
  std::optional<double> defaultPredictedMs, defaultMeasuredMs;
  std::string updatedAt; // set by the database
};

class TuningDatabase {
public:
  enum class Access { ReadWrite, ReadOnly };
  static constexpr int kSchemaVersion = 1;
  static constexpr int32_t kApplicationId = 0x534c4b54; // "SLKT"

  /// Opens (ReadWrite: creating file and parent folders when missing) and
  /// checks the file. Throws TuningDatabaseError naming the file when it is
  /// not a usable slak tuning database.
  explicit TuningDatabase(const std::string &path, Access access = Access::ReadWrite,
                          int busyTimeoutMs = 30000);
  ~TuningDatabase();
  TuningDatabase(const TuningDatabase &) = delete;
  TuningDatabase &operator=(const TuningDatabase &) = delete;

  const std::string &path() const { return path_; }
  int schemaVersion() const { return schemaVersion_; }

  std::optional<StoredChoice> findChoice(const TuningKey &key);
  /// Every stored choice, by key.
  std::vector<StoredChoice> choices();
  std::vector<MeasurementRecord> measurements(const TuningKey &key);
  int64_t measurementCount();

  /// Adds `measurements` and stores `choice` (if any) in one transaction. A
  /// model choice does not replace a measured one unless `replaceMeasured`;
  /// returns whether the choice was stored.
  bool record(const std::vector<MeasurementRecord> &measurements,
              const std::optional<StoredChoice> &choice, bool replaceMeasured = false);

private:
  void open(Access access, int busyTimeoutMs);
  void initialiseOrCheck(Access access);
  int switchToWal();
  [[noreturn]] void fail(const std::string &what) const;

  std::string path_;
  sqlite3 *db_ = nullptr;
  int schemaVersion_ = 0;
  int busyTimeoutMs_ = 0;
};

} // namespace slak::autotune

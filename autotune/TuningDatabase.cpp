#include "autotune/TuningDatabase.h"

#include "codegen/EnumNames.h"

#include <sqlite3.h>

#include <chrono>
#include <cstring>
#include <fstream>
#include <sstream>
#include <sys/stat.h>
#include <thread>
#include <unistd.h>

namespace slak::autotune {
namespace {

constexpr const char *kFormat = "slak-tuning-db";

const char *kSchemaV1 = R"sql(
CREATE TABLE IF NOT EXISTS slak_schema(
  key TEXT PRIMARY KEY,
  value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS measurements(
  id INTEGER PRIMARY KEY,
  signature TEXT NOT NULL,
  device TEXT NOT NULL,
  compiler TEXT NOT NULL,
  backend TEXT NOT NULL,
  kind TEXT NOT NULL,
  schedule TEXT NOT NULL,
  workload TEXT NOT NULL,
  predicted_ms REAL,
  measured_ms REAL,
  samples TEXT NOT NULL DEFAULT '',
  host TEXT NOT NULL DEFAULT '',
  created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')));
CREATE INDEX IF NOT EXISTS measurements_by_key ON measurements(signature, device, compiler);
CREATE TABLE IF NOT EXISTS choices(
  signature TEXT NOT NULL,
  device TEXT NOT NULL,
  compiler TEXT NOT NULL,
  backend TEXT NOT NULL,
  schedule TEXT NOT NULL,
  origin TEXT NOT NULL CHECK (origin IN ('measured', 'model')),
  kinds TEXT NOT NULL,
  workload TEXT NOT NULL,
  predicted_ms REAL,
  measured_ms REAL,
  default_predicted_ms REAL,
  default_measured_ms REAL,
  updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
  PRIMARY KEY (signature, device, compiler));
INSERT OR IGNORE INTO slak_schema(key, value) VALUES ('format', 'slak-tuning-db');
INSERT OR IGNORE INTO slak_schema(key, value) VALUES ('schema_version', '1');
)sql";

bool fileExists(const std::string &path, off_t *size = nullptr) {
  struct stat st;
  if (stat(path.c_str(), &st) != 0)
    return false;
  if (size)
    *size = st.st_size;
  return true;
}

void makeParents(const std::string &path) {
  for (size_t slash = path.find('/', 1); slash != std::string::npos;
       slash = path.find('/', slash + 1))
    mkdir(path.substr(0, slash).c_str(), 0755); // existing folders are fine
}

std::string hostName() {
  char buffer[256] = {0};
  if (gethostname(buffer, sizeof buffer - 1) != 0)
    return {};
  return buffer;
}

std::string joinSamples(const std::vector<double> &samples) {
  std::ostringstream os;
  os.precision(6);
  for (size_t i = 0; i < samples.size(); ++i)
    os << (i ? "," : "") << samples[i];
  return os.str();
}

std::vector<double> splitSamples(const std::string &text) {
  std::vector<double> out;
  std::istringstream in(text);
  for (std::string item; std::getline(in, item, ',');)
    if (!item.empty())
      out.push_back(std::stod(item));
  return out;
}

/// A prepared statement that finalizes itself.
class Statement {
public:
  Statement(sqlite3 *db, const char *sql) {
    rc_ = sqlite3_prepare_v2(db, sql, -1, &stmt_, nullptr);
  }
  /// `select` over the rows of one problem, then `order`.
  Statement(sqlite3 *db, const std::string &select, const TuningKey &key,
            const std::string &order = "")
      : Statement(
            db,
            (select + " WHERE signature = ?1 AND device = ?2 AND compiler = ?3" + order).c_str()) {
    if (ok())
      bindAll(key.signature, key.device, key.compiler);
  }
  ~Statement() { sqlite3_finalize(stmt_); }
  bool ok() const { return rc_ == SQLITE_OK; }
  int rc() const { return rc_; }
  void bind(int i, const std::string &s) {
    sqlite3_bind_text(stmt_, i, s.c_str(), static_cast<int>(s.size()), SQLITE_TRANSIENT);
  }
  void bind(int i, const std::optional<double> &v) {
    if (v)
      sqlite3_bind_double(stmt_, i, *v);
    else
      sqlite3_bind_null(stmt_, i);
  }
  /// Binds ?1, ?2, ... to `values` in order.
  template <typename... T> void bindAll(const T &...values) {
    int i = 0;
    (bind(++i, values), ...);
  }
  int step() { return sqlite3_step(stmt_); }
  void reset() {
    sqlite3_reset(stmt_);
    sqlite3_clear_bindings(stmt_);
  }
  std::string text(int col) const {
    const unsigned char *t = sqlite3_column_text(stmt_, col);
    return t ? reinterpret_cast<const char *>(t) : "";
  }
  std::optional<double> real(int col) const {
    if (sqlite3_column_type(stmt_, col) == SQLITE_NULL)
      return std::nullopt;
    return sqlite3_column_double(stmt_, col);
  }
  int64_t integer(int col) const { return sqlite3_column_int64(stmt_, col); }
  /// Reads columns 0, 1, ... into `fields` in order.
  template <typename... T> void read(T &...fields) const {
    int col = 0;
    ((fields = column(col++, fields)), ...);
  }

private:
  std::string column(int col, const std::string &) const { return text(col); }
  std::optional<double> column(int col, const std::optional<double> &) const { return real(col); }
  sqlite3_stmt *stmt_ = nullptr;
  int rc_ = SQLITE_OK;
};

bool isCorruption(int rc) {
  const int primary = rc & 0xff;
  return primary == SQLITE_CORRUPT || primary == SQLITE_NOTADB;
}

constexpr codegen::Named<ScheduleOrigin> kOrigins[] = {{"measured", ScheduleOrigin::Measured},
                                                       {"model", ScheduleOrigin::Model},
                                                       {"default", ScheduleOrigin::Default}};

} // namespace

const char *originName(ScheduleOrigin origin) { return codegen::nameOf(kOrigins, origin); }

ScheduleOrigin parseOrigin(const std::string &name) {
  if (std::optional<ScheduleOrigin> origin = codegen::valueOf(kOrigins, name))
    return *origin;
  throw std::invalid_argument("unknown schedule origin '" + name + "'; expected " +
                              codegen::nameList(kOrigins));
}

TuningDatabase::TuningDatabase(const std::string &path, Access access, int busyTimeoutMs)
    : path_(path) {
  try {
    open(access, busyTimeoutMs);
    initialiseOrCheck(access);
  } catch (...) {
    if (db_)
      sqlite3_close_v2(db_);
    db_ = nullptr;
    throw;
  }
}

TuningDatabase::~TuningDatabase() {
  if (db_)
    sqlite3_close_v2(db_);
}

void TuningDatabase::fail(const std::string &what) const {
  throw TuningDatabaseError("tuning database " + path_ + ": " + what);
}

void TuningDatabase::open(Access access, int busyTimeoutMs) {
  if (path_.empty())
    throw TuningDatabaseError("tuning database: empty path; pass --db <file> or set "
                              "SLAK_TUNING_DB");
  off_t size = 0;
  const bool exists = fileExists(path_, &size);
  if (!exists && access == Access::ReadOnly)
    fail("does not exist");
  // Refuse anything that is not SQLite before SQLite touches it.
  if (exists && size > 0) {
    char header[16] = {0};
    std::ifstream in(path_, std::ios::binary);
    in.read(header, sizeof header);
    if (!in || std::memcmp(header, "SQLite format 3", 16) != 0)
      fail("is not an SQLite file (corrupt, or some other kind of file); it was left "
           "untouched: move it away or pass another --db");
  }
  if (!exists)
    makeParents(path_);
  const int flags = access == Access::ReadOnly ? SQLITE_OPEN_READONLY
                                               : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE;
  const int rc = sqlite3_open_v2(path_.c_str(), &db_, flags | SQLITE_OPEN_FULLMUTEX, nullptr);
  if (rc != SQLITE_OK)
    fail(std::string("cannot be opened: ") + (db_ ? sqlite3_errmsg(db_) : sqlite3_errstr(rc)));
  // Before anything else, so that even the first statements wait on locks.
  busyTimeoutMs_ = busyTimeoutMs;
  sqlite3_busy_timeout(db_, busyTimeoutMs);
  sqlite3_extended_result_codes(db_, 1);
}

int TuningDatabase::switchToWal() {
  // Changing the journal mode needs an exclusive lock, and SQLite does not
  // wait for one here when another process holds the database (it could
  // deadlock), so retry until the busy timeout.
  const auto start = std::chrono::steady_clock::now();
  for (;;) {
    int rc = SQLITE_OK;
    std::string mode;
    {
      Statement st(db_, "PRAGMA journal_mode=WAL");
      rc = st.ok() ? st.step() : st.rc();
      if (rc == SQLITE_ROW) {
        mode = st.text(0);
        rc = SQLITE_OK;
      }
    }
    if (rc == SQLITE_OK && mode != "wal")
      return SQLITE_ERROR;
    if ((rc & 0xff) != SQLITE_BUSY && (rc & 0xff) != SQLITE_LOCKED)
      return rc;
    const double waited =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
    if (waited > busyTimeoutMs_)
      return rc;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

void TuningDatabase::initialiseOrCheck(Access access) {
  auto scalarInt = [&](const char *sql, int64_t &out) {
    Statement st(db_, sql);
    int rc = st.ok() ? st.step() : st.rc();
    if (rc == SQLITE_ROW) {
      out = st.integer(0);
      return SQLITE_OK;
    }
    return rc == SQLITE_DONE ? SQLITE_OK : rc;
  };
  auto check = [&](int rc, const char *what) {
    if (rc == SQLITE_OK)
      return;
    if (isCorruption(rc))
      fail(std::string("is corrupt (SQLite: ") + sqlite3_errstr(rc) +
           "); it was left untouched: move it away or pass another --db (tuning results can "
           "be regenerated)");
    if ((rc & 0xff) == SQLITE_BUSY)
      fail(std::string("stayed locked by another process for longer than the busy timeout (") +
           what + ")");
    fail(std::string(what) + " failed: " + sqlite3_errmsg(db_));
  };

  // One statement, one snapshot: another process may be creating the
  // schema (tables and application id in one transaction) right now.
  int64_t appId = 0, tables = 0;
  {
    Statement st(db_, "SELECT (SELECT application_id FROM pragma_application_id), "
                      "(SELECT count(*) FROM sqlite_master)");
    const int rc = st.ok() ? st.step() : st.rc();
    if (rc != SQLITE_ROW)
      check(rc == SQLITE_DONE ? SQLITE_ERROR : rc, "reading the application id");
    appId = st.integer(0);
    tables = st.integer(1);
  }
  if (appId != kApplicationId && (appId != 0 || tables != 0)) {
    std::ostringstream os;
    os << "is not a slak tuning database (application id 0x" << std::hex << appId << std::dec
       << ", " << tables << " schema objects); it was left untouched: pass another --db";
    fail(os.str());
  }
  // Integrity first: a damaged page must not be written over.
  {
    Statement st(db_, "PRAGMA quick_check(1)");
    int rc = st.ok() ? st.step() : st.rc();
    if (rc == SQLITE_ROW && st.text(0) != "ok")
      fail("is corrupt (quick_check: " + st.text(0) +
           "); it was left untouched: move it away or pass another --db");
    if (rc != SQLITE_ROW)
      check(rc, "checking integrity");
  }

  if (appId == 0) {
    if (access == Access::ReadOnly)
      fail("is empty (no slak tuning tables yet)");
    check(switchToWal(), "switching to WAL mode");
    check(sqlite3_exec(db_, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr), "creating the schema");
    // Another process may have created it while we waited for the lock.
    int64_t again = 0, appAgain = 0;
    int rc = scalarInt("SELECT count(*) FROM sqlite_master", again);
    if (rc == SQLITE_OK) // inside the write transaction: a stable view
      rc = scalarInt("PRAGMA application_id", appAgain);
    if (rc == SQLITE_OK && again != 0 && appAgain != kApplicationId) {
      sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
      fail("was filled by another program while opening; it was left untouched");
    }
    if (rc == SQLITE_OK)
      rc = sqlite3_exec(db_, kSchemaV1, nullptr, nullptr, nullptr);
    if (rc == SQLITE_OK) {
      const std::string ids = "PRAGMA application_id=" + std::to_string(kApplicationId) +
                              "; PRAGMA user_version=" + std::to_string(kSchemaVersion) + ";";
      rc = sqlite3_exec(db_, ids.c_str(), nullptr, nullptr, nullptr);
    }
    if (rc == SQLITE_OK)
      rc = sqlite3_exec(db_, "COMMIT", nullptr, nullptr, nullptr);
    if (rc != SQLITE_OK) {
      sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
      check(rc, "creating the schema");
    }
  } else if (access == Access::ReadWrite) {
    check(switchToWal(), "switching to WAL mode");
  }

  // The schema version table is the authority (user_version mirrors it).
  Statement st(db_, "SELECT key, value FROM slak_schema");
  if (!st.ok())
    fail("has the slak application id but no slak_schema table (damaged?); it was left "
         "untouched: move it away or pass another --db");
  std::string format, version;
  for (int rc = st.step(); rc != SQLITE_DONE; rc = st.step()) {
    if (rc != SQLITE_ROW)
      check(rc, "reading the schema version");
    if (st.text(0) == "format")
      format = st.text(1);
    else if (st.text(0) == "schema_version")
      version = st.text(1);
  }
  if (format != kFormat)
    fail("has format '" + format + "', expected '" + kFormat + "'");
  try {
    schemaVersion_ = std::stoi(version);
  } catch (const std::exception &) {
    fail("has schema version '" + version + "', not a number");
  }
  if (schemaVersion_ > kSchemaVersion)
    fail("has schema version " + std::to_string(schemaVersion_) +
         ", newer than this build understands (" + std::to_string(kSchemaVersion) +
         "): use a newer slak, or another --db");
  if (schemaVersion_ < 1)
    fail("has schema version " + std::to_string(schemaVersion_) + ", expected 1..." +
         std::to_string(kSchemaVersion));
}

std::optional<StoredChoice> TuningDatabase::findChoice(const TuningKey &key) {
  Statement st(db_,
               "SELECT backend, schedule, origin, kinds, workload, predicted_ms, "
               "measured_ms, default_predicted_ms, default_measured_ms, updated_at FROM choices",
               key);
  if (!st.ok())
    fail(std::string("reading choices failed: ") + sqlite3_errmsg(db_));
  const int rc = st.step();
  if (rc == SQLITE_DONE)
    return std::nullopt;
  if (rc != SQLITE_ROW)
    fail(std::string("reading choices failed: ") + sqlite3_errmsg(db_));
  StoredChoice c;
  c.key = key;
  std::string origin;
  st.read(c.backend, c.schedule, origin, c.kinds, c.workload, c.predictedMs, c.measuredMs,
          c.defaultPredictedMs, c.defaultMeasuredMs, c.updatedAt);
  c.origin = parseOrigin(origin);
  return c;
}

std::vector<StoredChoice> TuningDatabase::choices() {
  Statement st(db_, "SELECT signature, device, compiler FROM choices "
                    "ORDER BY signature, device, compiler");
  std::vector<TuningKey> keys;
  for (int rc = st.step(); rc == SQLITE_ROW; rc = st.step())
    keys.push_back({st.text(0), st.text(1), st.text(2)});
  std::vector<StoredChoice> out;
  for (const TuningKey &k : keys)
    if (auto c = findChoice(k))
      out.push_back(*c);
  return out;
}

std::vector<MeasurementRecord> TuningDatabase::measurements(const TuningKey &key) {
  Statement st(db_,
               "SELECT backend, kind, schedule, workload, predicted_ms, measured_ms, "
               "samples, host FROM measurements",
               key, " ORDER BY id");
  if (!st.ok())
    fail(std::string("reading measurements failed: ") + sqlite3_errmsg(db_));
  std::vector<MeasurementRecord> out;
  for (int rc = st.step(); rc != SQLITE_DONE; rc = st.step()) {
    if (rc != SQLITE_ROW)
      fail(std::string("reading measurements failed: ") + sqlite3_errmsg(db_));
    MeasurementRecord m;
    m.key = key;
    std::string samples;
    st.read(m.backend, m.kind, m.schedule, m.workload, m.predictedMs, m.measuredMs, samples,
            m.host);
    m.samplesMs = splitSamples(samples);
    out.push_back(std::move(m));
  }
  return out;
}

int64_t TuningDatabase::measurementCount() {
  Statement st(db_, "SELECT count(*) FROM measurements");
  if (!st.ok() || st.step() != SQLITE_ROW)
    fail(std::string("counting measurements failed: ") + sqlite3_errmsg(db_));
  return st.integer(0);
}

bool TuningDatabase::record(const std::vector<MeasurementRecord> &measurements,
                            const std::optional<StoredChoice> &choice, bool replaceMeasured) {
  auto check = [&](int rc, const char *what) {
    if (rc == SQLITE_OK || rc == SQLITE_DONE || rc == SQLITE_ROW)
      return;
    const std::string msg = sqlite3_errmsg(db_);
    sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
    if ((rc & 0xff) == SQLITE_BUSY)
      fail(std::string("stayed locked by another process for longer than the busy timeout (") +
           what + "); nothing was written");
    if ((rc & 0xff) == SQLITE_READONLY)
      fail(std::string("is read-only (") + what + "); nothing was written");
    fail(std::string(what) + " failed: " + msg + "; nothing was written");
  };
  if (choice && choice->origin == ScheduleOrigin::Default)
    throw std::invalid_argument("TuningDatabase::record: a default schedule is not a choice; "
                                "store measured or model picks only");
  const int begin = sqlite3_exec(db_, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr);
  if (begin != SQLITE_OK) {
    if ((begin & 0xff) == SQLITE_BUSY)
      fail("stayed locked by another process for longer than the busy timeout; nothing was "
           "written");
    fail(std::string("cannot start a write transaction: ") + sqlite3_errmsg(db_));
  }
  const std::string host = hostName();
  {
    Statement ins(db_, "INSERT INTO measurements(signature, device, compiler, backend, kind, "
                       "schedule, workload, predicted_ms, measured_ms, samples, host) "
                       "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)");
    check(ins.rc(), "preparing a measurement insert");
    for (const MeasurementRecord &m : measurements) {
      ins.reset();
      ins.bindAll(m.key.signature, m.key.device, m.key.compiler, m.backend, m.kind, m.schedule,
                  m.workload, m.predictedMs, m.measuredMs, joinSamples(m.samplesMs),
                  m.host.empty() ? host : m.host);
      check(ins.step(), "adding a measurement");
    }
  }
  bool stored = false;
  if (choice) {
    bool keep = false;
    if (!replaceMeasured && choice->origin != ScheduleOrigin::Measured) {
      Statement st(db_, "SELECT origin FROM choices", choice->key);
      const int rc = st.step();
      check(rc, "reading the current choice");
      keep = rc == SQLITE_ROW && st.text(0) == "measured";
    }
    if (!keep) {
      Statement up(db_, "INSERT OR REPLACE INTO choices(signature, device, compiler, backend, "
                        "schedule, origin, kinds, workload, predicted_ms, measured_ms, "
                        "default_predicted_ms, default_measured_ms) "
                        "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)");
      up.bindAll(choice->key.signature, choice->key.device, choice->key.compiler, choice->backend,
                 choice->schedule, std::string(originName(choice->origin)), choice->kinds,
                 choice->workload, choice->predictedMs, choice->measuredMs,
                 choice->defaultPredictedMs, choice->defaultMeasuredMs);
      check(up.step(), "storing the choice");
      stored = true;
    }
  }
  check(sqlite3_exec(db_, "COMMIT", nullptr, nullptr, nullptr), "committing");
  return stored;
}

} // namespace slak::autotune

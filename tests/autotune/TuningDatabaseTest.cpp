// The SQLite tuning database: round trip, WAL mode and schema version, the
// measured-over-model rule, two processes writing at once, and corrupt,
// foreign and newer files refused with the file named and left untouched.
#include <gtest/gtest.h>

#include <sqlite3.h>

#include <cstdio>
#include <fstream>
#include <iterator>
#include <random>
#include <sys/wait.h>
#include <unistd.h>

#include "autotune/TuningDatabase.h"
#include "tests/autotune/AutotuneTestLayers.h"

namespace slak::autotune {
namespace {

std::string tempPath(const std::string &name) { return tempDatabasePath("slak_autotune", name); }

std::string readFile(const std::string &path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

void writeFile(const std::string &path, const std::string &bytes) {
  std::ofstream(path, std::ios::binary) << bytes;
}

void sql(const std::string &path, const std::string &statements) {
  sqlite3 *db = nullptr;
  ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
  char *err = nullptr;
  EXPECT_EQ(sqlite3_exec(db, statements.c_str(), nullptr, nullptr, &err), SQLITE_OK)
      << (err ? err : "");
  sqlite3_free(err);
  sqlite3_close(db);
}

MeasurementRecord measurement(const TuningKey &key, const std::string &schedule, double ms) {
  MeasurementRecord m;
  m.key = key;
  m.backend = "cuda";
  m.kind = "forward";
  m.schedule = schedule;
  m.workload = "N=8 H=56 W=56 density=0.6";
  m.predictedMs = ms * 0.9;
  m.measuredMs = ms;
  m.samplesMs = {ms, ms * 1.01, ms * 0.99};
  return m;
}

StoredChoice choice(const TuningKey &key, const std::string &schedule, ScheduleOrigin origin) {
  StoredChoice c;
  c.key = key;
  c.backend = "cuda";
  c.schedule = schedule;
  c.origin = origin;
  c.kinds = "forward";
  c.workload = "N=8 H=56 W=56 density=0.6";
  c.predictedMs = 1.5;
  if (origin == ScheduleOrigin::Measured)
    c.measuredMs = 1.25;
  c.defaultPredictedMs = 2.5;
  return c;
}

/// Expects `fn` to throw TuningDatabaseError naming `path` and containing `part`.
template <typename Fn> void expectRefused(Fn fn, const std::string &path, const std::string &part) {
  try {
    fn();
    FAIL() << "no error for " << path;
  } catch (const TuningDatabaseError &e) {
    const std::string what = e.what();
    EXPECT_NE(what.find(path), std::string::npos) << what;
    EXPECT_NE(what.find(part), std::string::npos) << what;
  }
}

TEST(TuningDatabaseTest, RoundTrip) {
  const std::string path = tempPath("roundtrip.db");
  const TuningKey key{"lk_conv.v1 C=124 ...", "a100", "slak 0.1.0 cuda lk_conv.v1"};
  {
    TuningDatabase db(path);
    EXPECT_EQ(db.schemaVersion(), TuningDatabase::kSchemaVersion);
    EXPECT_FALSE(db.findChoice(key));
    EXPECT_TRUE(db.record({measurement(key, "tile=A", 1.25), measurement(key, "tile=B", 2.0)},
                          choice(key, "tile=A", ScheduleOrigin::Measured)));
  }
  TuningDatabase db(path, TuningDatabase::Access::ReadOnly);
  const auto c = db.findChoice(key);
  ASSERT_TRUE(c);
  EXPECT_EQ(c->schedule, "tile=A");
  EXPECT_EQ(c->origin, ScheduleOrigin::Measured);
  EXPECT_EQ(c->kinds, "forward");
  EXPECT_DOUBLE_EQ(*c->measuredMs, 1.25);
  EXPECT_DOUBLE_EQ(*c->predictedMs, 1.5);
  EXPECT_DOUBLE_EQ(*c->defaultPredictedMs, 2.5);
  EXPECT_FALSE(c->defaultMeasuredMs);
  EXPECT_FALSE(c->updatedAt.empty());
  const auto ms = db.measurements(key);
  ASSERT_EQ(ms.size(), 2u);
  EXPECT_EQ(ms[1].schedule, "tile=B");
  EXPECT_DOUBLE_EQ(*ms[1].measuredMs, 2.0);
  ASSERT_EQ(ms[1].samplesMs.size(), 3u);
  EXPECT_NEAR(ms[1].samplesMs[1], 2.02, 1e-9);
  EXPECT_FALSE(ms[0].host.empty());
  // Other keys are separate.
  EXPECT_FALSE(db.findChoice({key.signature, "h100", key.compiler}));
  EXPECT_FALSE(db.findChoice({key.signature, "a100", "slak 9.9 cuda lk_conv.v2"}));
  EXPECT_EQ(db.choices().size(), 1u);
}

TEST(TuningDatabaseTest, WalModeAndVersionedSchema) {
  const std::string path = tempPath("wal.db");
  { TuningDatabase db(path); }
  sqlite3 *raw = nullptr;
  ASSERT_EQ(sqlite3_open(path.c_str(), &raw), SQLITE_OK);
  auto text = [&](const char *q) {
    sqlite3_stmt *st = nullptr;
    sqlite3_prepare_v2(raw, q, -1, &st, nullptr);
    std::string out;
    if (sqlite3_step(st) == SQLITE_ROW)
      out = reinterpret_cast<const char *>(sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
    return out;
  };
  EXPECT_EQ(text("PRAGMA journal_mode"), "wal");
  EXPECT_EQ(text("PRAGMA application_id"), std::to_string(TuningDatabase::kApplicationId));
  EXPECT_EQ(text("PRAGMA user_version"), "1");
  EXPECT_EQ(text("SELECT value FROM slak_schema WHERE key = 'schema_version'"), "1");
  EXPECT_EQ(text("SELECT value FROM slak_schema WHERE key = 'format'"), "slak-tuning-db");
  sqlite3_close(raw);
}

TEST(TuningDatabaseTest, ModelChoiceDoesNotReplaceMeasured) {
  const std::string path = tempPath("origin.db");
  const TuningKey key{"sig", "a100", "c"};
  TuningDatabase db(path);
  EXPECT_TRUE(db.record({}, choice(key, "measured-one", ScheduleOrigin::Measured)));
  EXPECT_FALSE(db.record({}, choice(key, "model-one", ScheduleOrigin::Model)));
  EXPECT_EQ(db.findChoice(key)->schedule, "measured-one");
  EXPECT_TRUE(db.record({}, choice(key, "model-one", ScheduleOrigin::Model), true));
  EXPECT_EQ(db.findChoice(key)->origin, ScheduleOrigin::Model);
  EXPECT_TRUE(db.record({}, choice(key, "measured-two", ScheduleOrigin::Measured)));
  EXPECT_EQ(db.findChoice(key)->schedule, "measured-two");
  EXPECT_THROW(db.record({}, choice(key, "x", ScheduleOrigin::Default)), std::invalid_argument);
  EXPECT_EQ(db.findChoice(key)->schedule, "measured-two"); // rolled back
}

TEST(TuningDatabaseTest, TwoProcessesWriteConcurrently) {
  const std::string path = tempPath("concurrent.db");
  constexpr int kTransactions = 60, kPerTransaction = 5;
  pid_t children[2];
  for (int p = 0; p < 2; ++p) {
    children[p] = fork();
    ASSERT_GE(children[p], 0);
    if (children[p] == 0) {
      int status = 0;
      try {
        // Both open (and the first creates) the same file at once.
        TuningDatabase db(path);
        for (int t = 0; t < kTransactions; ++t) {
          const TuningKey key{"sig" + std::to_string(t % 7), "gpu" + std::to_string(p), "c"};
          std::vector<MeasurementRecord> ms;
          for (int i = 0; i < kPerTransaction; ++i)
            ms.push_back(measurement(key, "p" + std::to_string(p) + "t" + std::to_string(t), t));
          db.record(ms, choice(key, "p" + std::to_string(p), ScheduleOrigin::Measured));
        }
      } catch (const std::exception &e) {
        std::fprintf(stderr, "child %d: %s\n", p, e.what());
        status = 1;
      }
      _exit(status);
    }
  }
  for (pid_t child : children) {
    int status = 0;
    ASSERT_EQ(waitpid(child, &status, 0), child);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "a writer failed";
  }
  TuningDatabase db(path);
  EXPECT_EQ(db.measurementCount(), 2 * kTransactions * kPerTransaction);
  EXPECT_EQ(db.choices().size(), 14u); // 7 signatures x 2 devices
  const auto last = db.findChoice({"sig3", "gpu1", "c"});
  ASSERT_TRUE(last);
  EXPECT_EQ(last->schedule, "p1");
  sqlite3 *raw = nullptr;
  ASSERT_EQ(sqlite3_open(path.c_str(), &raw), SQLITE_OK);
  sqlite3_stmt *st = nullptr;
  sqlite3_prepare_v2(raw, "PRAGMA integrity_check", -1, &st, nullptr);
  ASSERT_EQ(sqlite3_step(st), SQLITE_ROW);
  EXPECT_STREQ(reinterpret_cast<const char *>(sqlite3_column_text(st, 0)), "ok");
  sqlite3_finalize(st);
  sqlite3_close(raw);
}

TEST(TuningDatabaseTest, NonSqliteFileIsRefusedAndUntouched) {
  const std::string path = tempPath("garbage.db");
  std::string bytes(5000, '\0');
  std::mt19937 rng(1);
  for (char &c : bytes)
    c = static_cast<char>(rng());
  writeFile(path, bytes);
  expectRefused([&] { TuningDatabase db(path); }, path, "not an SQLite file");
  EXPECT_EQ(readFile(path), bytes);
}

TEST(TuningDatabaseTest, CorruptSqliteFileIsRefusedAndUntouched) {
  const std::string path = tempPath("corrupt.db");
  {
    TuningDatabase db(path);
    std::vector<MeasurementRecord> ms;
    for (int i = 0; i < 400; ++i)
      ms.push_back(measurement({"sig" + std::to_string(i), "a100", "c"}, std::string(200, 'x'), i));
    db.record(ms, std::nullopt);
  }
  sql(path, "PRAGMA wal_checkpoint(TRUNCATE); PRAGMA journal_mode=DELETE;");
  std::string bytes = readFile(path);
  ASSERT_GT(bytes.size(), 8192u);
  // Keep the header; scribble over the pages behind it.
  for (size_t i = 4096; i < bytes.size(); i += 7)
    bytes[i] = static_cast<char>(i * 31);
  writeFile(path, bytes);
  expectRefused([&] { TuningDatabase db(path); }, path, "corrupt");
  EXPECT_EQ(readFile(path), bytes);
}

TEST(TuningDatabaseTest, ForeignSqliteDatabaseIsRefusedAndUntouched) {
  const std::string path = tempPath("foreign.db");
  sql(path, "CREATE TABLE songs(title TEXT); INSERT INTO songs VALUES ('x');");
  const std::string before = readFile(path);
  expectRefused([&] { TuningDatabase db(path); }, path, "not a slak tuning database");
  EXPECT_EQ(readFile(path), before);
  // Another application id, no tables: still not ours.
  const std::string other = tempPath("otherapp.db");
  sql(other, "PRAGMA application_id = 1234; CREATE TABLE t(x);");
  expectRefused([&] { TuningDatabase db(other); }, other, "application id");
}

TEST(TuningDatabaseTest, NewerSchemaIsRefused) {
  const std::string path = tempPath("newer.db");
  { TuningDatabase db(path); }
  sql(path, "UPDATE slak_schema SET value = '7' WHERE key = 'schema_version';");
  expectRefused([&] { TuningDatabase db(path); }, path, "schema version 7");
  expectRefused([&] { TuningDatabase db(path, TuningDatabase::Access::ReadOnly); }, path,
                "newer than this build");
}

TEST(TuningDatabaseTest, MissingFileReadOnlyAndFolderCreation) {
  const std::string missing = tempPath("missing.db");
  expectRefused([&] { TuningDatabase db(missing, TuningDatabase::Access::ReadOnly); }, missing,
                "does not exist");
  const std::string nested =
      ::testing::TempDir() + "slak_autotune_" + std::to_string(getpid()) + "/a/b/tuning.db";
  TuningDatabase db(nested);
  EXPECT_EQ(db.path(), nested);
  EXPECT_EQ(db.measurementCount(), 0);
}

} // namespace
} // namespace slak::autotune

// The kernel-package reader on manifests with values of the wrong kind or
// size (LibTorch-free, so scripts/sanitize.sh runs it under ASan/UBSan; the
// runtime's KernelPackageTest covers the rest). Found by slak-fuzz-readers
// (docs/fuzzing.md): integer fields took floats and wide integers through
// nlohmann's unchecked casts (1e300 as an int is undefined behaviour,
// 4294967312 became 16), and a string "version" or a numeric "format"
// escaped as json::type_error instead of the promised runtime_error; a tap
// offset past the end was read before the offsets were checked.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <stdexcept>
#include <string>

#include "codegen/DefaultSchedule.h"
#include "codegen/KernelEmitter.h"
#include "codegen/TapTable.h"
#include "codegen/package/KernelPackage.h"
#include "tests/spec/ScheduleVariants.h"

namespace slak::codegen {
namespace {

namespace fs = std::filesystem;

class KernelPackageReaderTest : public ::testing::Test {
protected:
  void SetUp() override {
    std::string pattern = (fs::temp_directory_path() / "slak-package-reader-XXXXXX").string();
    ASSERT_NE(::mkdtemp(pattern.data()), nullptr);
    root_ = pattern;
    dir_ = root_ + "/pkg";
    KernelSpec spec;
    spec.channels = 3;
    spec.height = spec.width = 8;
    spec.branches = {Branch::same(3, 3), Branch::same(5, 1)};
    spec.schedule = defaultSchedule(spec);
    PackagedOp op;
    op.name = "layer";
    op.scheduleOrigin = "default";
    op.kernels = emitKernels(spec);
    writeKernelPackage(dir_, {op}, "KernelPackageReaderTest");
    std::ifstream in(dir_ + "/manifest.json");
    good_ = nlohmann::json::parse(in);
  }
  void TearDown() override { fs::remove_all(root_); }

  /// The reader's message for the package with `edit` applied to its
  /// manifest; fails the test on any other kind of exception.
  std::string errorWith(const std::function<void(nlohmann::json &)> &edit) {
    nlohmann::json j = good_;
    edit(j);
    std::ofstream(dir_ + "/manifest.json", std::ios::trunc) << j.dump(2);
    try {
      readKernelPackage(dir_);
    } catch (const std::runtime_error &e) {
      return e.what();
    } catch (const std::exception &e) {
      ADD_FAILURE() << "not a runtime_error: " << e.what();
    }
    return {};
  }

  std::string root_, dir_;
  nlohmann::json good_;
};

#define EXPECT_HAS(message, part)                                                                  \
  EXPECT_NE((message).find(part), std::string::npos) << "message: " << (message)

TEST_F(KernelPackageReaderTest, ReadsWhatTheWriterWrote) {
  EXPECT_EQ(errorWith([](nlohmann::json &) {}), "");
}

// Op names come from MLIR locations, which may hold any bytes (found by
// slak-fuzz-ir); the writer refuses a name JSON cannot hold and keeps the
// package that was there.
TEST_F(KernelPackageReaderTest, WriterRefusesOpNamesThatAreNotUtf8) {
  PackagedOp op;
  op.name = "stage\xC8";
  op.scheduleOrigin = "default";
  op.kernels = readKernelPackage(dir_).ops.at(0).kernels;
  try {
    writeKernelPackage(dir_, {op}, "KernelPackageReaderTest");
    ADD_FAILURE() << "a non-UTF-8 op name was written";
  } catch (const std::invalid_argument &e) {
    EXPECT_HAS(std::string(e.what()), "is not UTF-8 text");
  }
  KernelPackage kept = readKernelPackage(dir_);
  ASSERT_EQ(kept.ops.size(), 1u);
  EXPECT_EQ(kept.ops[0].name, "layer");
}

TEST_F(KernelPackageReaderTest, IntegersMustBeIntegersInRange) {
  EXPECT_HAS(
      errorWith([](nlohmann::json &j) { j["ops"][0]["schedule"]["weight_threads"] = 1e300; }),
      "\"schedule.weight_threads\" is 1e+300, expected an integer from -2147483648 to "
      "2147483647");
  EXPECT_HAS(
      errorWith([](nlohmann::json &j) { j["ops"][0]["schedule"]["weight_split"] = 4294967304ull; }),
      "\"schedule.weight_split\" is 4294967304, expected an integer");
  EXPECT_HAS(errorWith([](nlohmann::json &j) { j["ops"][0]["spec"]["channels"] = 2.5; }),
             "\"spec.channels\" is 2.5, expected an integer");
  EXPECT_HAS(errorWith([](nlohmann::json &j) {
               j["ops"][0]["schedule"]["tile"] = {4294967312ull, 32};
             }),
             "\"schedule.tile\" is [4294967312,32], expected [int, int]");
  EXPECT_HAS(errorWith([](nlohmann::json &j) {
               j["ops"][0]["launch"]["forward"]["shared_bytes"] = -1e30;
             }),
             "\"launch.<kind>.shared_bytes\" is -1e+30, expected an integer");
  // In range for int64_t, too large for the kernels' ints (KernelSpec::validate).
  EXPECT_HAS(errorWith([](nlohmann::json &j) { j["ops"][0]["spec"]["channels"] = 4294967296ll; }),
             "channels 4294967296, height 8 or width 8 is too large, at most 2147483647");
}

TEST_F(KernelPackageReaderTest, FormatAndVersionOfAnotherTypeAreRuntimeErrors) {
  EXPECT_HAS(errorWith([](nlohmann::json &j) { j["version"] = "1"; }),
             "package version \"1\", this reader understands version 1");
  EXPECT_HAS(errorWith([](nlohmann::json &j) { j["version"] = 1.5; }),
             "package version 1.5, this reader understands version 1");
  EXPECT_HAS(errorWith([](nlohmann::json &j) { j["format"] = 5; }),
             "\"format\" is not \"slak-kernel-package\"");
  EXPECT_EQ(errorWith([](nlohmann::json &j) { j["generator"] = 7; }), ""); // informative only
}

TEST_F(KernelPackageReaderTest, TapOffsetsAreCheckedBeforeAnyTapIsRead) {
  // An offset past the end (100 of 1 tap) between a valid first and last
  // one must be refused before any tap is read through it.
  KernelSpec spec;
  spec.channels = 2;
  spec.height = spec.width = 8;
  spec.branches = {Branch::same(3, 3, /*dense=*/false)};
  spec.schedule = defaultSchedule(spec);
  PackagedOp op;
  op.name = "bad_table";
  op.scheduleOrigin = "default";
  op.kernels = emitKernels(spec);
  op.table = TapTable{};
  op.table->channels = 2;
  op.table->numBranches = 1;
  op.table->offsets = {0, 100, 1};
  op.table->taps = {0};
  const std::string dir = root_ + "/bad";
  writeKernelPackage(dir, {op}, "KernelPackageReaderTest");
  std::string error;
  try {
    readKernelPackage(dir);
  } catch (const std::runtime_error &e) {
    error = e.what();
  }
  EXPECT_HAS(error, "op 'bad_table': tap table offsets decrease at branch 0 channel 1");
}

TEST_F(KernelPackageReaderTest, EveryScheduleFieldRoundTripsThroughTheManifest) {
  KernelSpec spec;
  spec.channels = 3;
  spec.height = spec.width = 8;
  spec.branches = {Branch::same(3, 3), Branch::same(5, 1)};
  const ScheduleTable<Schedule> &table = scheduleFields();
  const auto variants = testing::fieldVariants(table, Schedule{});
  ASSERT_EQ(variants.size(), table.size());
  for (const auto &variant : variants) {
    spec.schedule = variant.schedule;
    PackagedOp op;
    op.name = "layer";
    op.scheduleOrigin = "measured";
    op.kernels = emitKernels(spec);
    writeKernelPackage(dir_, {op}, "KernelPackageReaderTest");
    const KernelPackage back = readKernelPackage(dir_);
    ASSERT_EQ(back.ops.size(), 1u);
    EXPECT_EQ(back.ops[0].kernels.spec.schedule.str(), variant.schedule.str()) << variant.what;
    EXPECT_EQ(back.ops[0].scheduleOrigin, "measured");
  }
}

TEST_F(KernelPackageReaderTest, ScheduleKeysAreTheAttributeKeys) {
  // One key per table row, named as in #slak.schedule, plus the origin.
  const nlohmann::json &schedule = good_["ops"][0]["schedule"];
  EXPECT_EQ(schedule.size(), scheduleFields().fields.size() + 1);
  for (const ScheduleField<Schedule> &f : scheduleFields().fields)
    EXPECT_TRUE(schedule.contains(f.irKey)) << f.irKey;
  EXPECT_TRUE(schedule["tile"].is_array() && schedule["tile"].size() == 2) << schedule.dump();
  EXPECT_TRUE(schedule["stage_input"].is_boolean()) << schedule.dump();
  EXPECT_TRUE(schedule["weight_split"].is_number_integer()) << schedule.dump();
}

TEST_F(KernelPackageReaderTest, ScheduleFieldsOlderPackagesLackKeepTheirDefaults) {
  // masked_walk, weight_tile and weight_rows_per_thread came after the first
  // packages: without them the package reads, the rest must be there.
  EXPECT_EQ(errorWith([](nlohmann::json &j) {
              for (const char *key : {"masked_walk", "weight_tile", "weight_rows_per_thread"})
                j["ops"][0]["schedule"].erase(key);
            }),
            "");
  EXPECT_HAS(errorWith([](nlohmann::json &j) { j["ops"][0]["schedule"].erase("stage_taps"); }),
             "missing \"schedule.stage_taps\"");
  EXPECT_HAS(errorWith([](nlohmann::json &j) { j["ops"][0]["schedule"]["weight_threads"] = 96; }),
             "schedule weightThreads is 96, expected a power of two in 1..1024");
}

} // namespace
} // namespace slak::codegen

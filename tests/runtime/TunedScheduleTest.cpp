// The runtime's JIT reads schedules from the tuning database slak-autotune
// writes: a stored CPU choice changes the schedule the Halide kernel is
// built with (and it still computes the right thing), a stored GPU choice
// changes chooseSchedule's answer, and a missing or corrupt database falls
// back to the defaults with one warning, never an error.
#include <gtest/gtest.h>

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <unistd.h>

#include "autotune/CpuScheduleLookup.h"
#include "autotune/Device.h"
#include "autotune/Tuner.h"
#include "autotune/TuningDatabase.h"
#include "autotune/Workload.h"
#include "codegen/DefaultSchedule.h"
#include "runtime/LkConvOp.h"
#include "runtime/LkConvBackend.h"
#include "tests/runtime/RuntimeTestSupport.h"

namespace slak {
namespace {

using autotune::KernelFamily;
using autotune::ScheduleOrigin;
using autotune::StoredChoice;
using autotune::TuningDatabase;

/// The spec lk_conv builds for x [1, 3, 12, 12] and one dense 5x5 weight.
codegen::KernelSpec smallSpec() {
  codegen::KernelSpec spec;
  spec.channels = 3;
  spec.height = 12;
  spec.width = 12;
  spec.branches.push_back(codegen::Branch::same(5, 5, true));
  return spec;
}

/// Points $SLAK_TUNING_DB at a fresh path for one test and drops every
/// memoised schedule and compiled kernel before and after.
class TunedScheduleTest : public ::testing::Test {
protected:
  void SetUp() override {
    path_ = ::testing::TempDir() + "slak_tuned_" + std::to_string(getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name() + ".db";
    removeDb();
    setenv("SLAK_TUNING_DB", path_.c_str(), 1);
    reset();
  }
  void TearDown() override {
    unsetenv("SLAK_TUNING_DB");
    reset();
    removeDb();
  }
  static void reset() {
    runtime::setScheduleProvider(nullptr);
    runtime::clearKernelRegistry();
  }
  void removeDb() const {
    for (const char *suffix : {"", "-wal", "-shm"})
      std::remove((path_ + suffix).c_str());
  }
  void store(const codegen::KernelSpec &spec, const std::string &device, KernelFamily backend,
             const std::string &schedule) const {
    TuningDatabase db(path_);
    StoredChoice c;
    c.key = {autotune::problemSignature(spec), device, autotune::compilerVersion(backend)};
    c.backend = autotune::backendName(backend);
    c.schedule = schedule;
    c.origin = ScheduleOrigin::Measured;
    c.kinds = "forward";
    c.measuredMs = 1.0;
    ASSERT_TRUE(db.record({}, c, true));
  }
  std::string path_;
};

TEST_F(TunedScheduleTest, DatabaseEntryChangesTheHalideSchedule) {
  if (std::string(runtime::cpuBackendName()) != "halide")
    GTEST_SKIP() << "[SKIP] this build has no Halide CPU backend";
  const codegen::KernelSpec spec = smallSpec();
  const c10::Device cpu(c10::kCPU);
  const std::string byDefault =
      runtime::getKernel(runtime::BackendKind::Cpu, spec, cpu)->scheduleDescription();
  const codegen::cpu::CpuSchedule fallback = codegen::cpu::defaultCpuSchedule(spec, 12, 12);
  EXPECT_NE(byDefault.find(fallback.str()), std::string::npos) << byDefault;
  EXPECT_NE(byDefault.find("default"), std::string::npos) << byDefault;

  codegen::cpu::CpuSchedule tuned = fallback;
  tuned.tileRows = 3;
  tuned.tileVectors = 1;
  tuned.alignLoads = !fallback.alignLoads;
  ASSERT_NE(tuned.str(), fallback.str());
  store(spec, autotune::hostCpu(at::get_num_threads()).name, KernelFamily::Cpu, tuned.str());
  reset();
  const std::string fromDb =
      runtime::getKernel(runtime::BackendKind::Cpu, spec, cpu)->scheduleDescription();
  EXPECT_NE(fromDb.find(tuned.str()), std::string::npos) << fromDb;
  EXPECT_NE(fromDb.find("measured"), std::string::npos) << fromDb;
  EXPECT_NE(fromDb.find(path_), std::string::npos) << fromDb;

  // The tuned kernel is the one lk_conv runs, and it is right.
  at::manual_seed(3);
  const at::Tensor x = at::rand({1, 3, 12, 12});
  const at::Tensor w = at::rand({3, 1, 5, 5});
  const at::Tensor y = lk_conv(x, {w}, {});
  const auto ref = testing::torchReference(x, {w}, {}, std::nullopt, false, false,
                                           at::ones({1, 3, 12, 12}, at::kDouble));
  testing::expectClose(y, ref.y, 1e-5, "forward with the tuned CPU schedule");
  EXPECT_EQ(runtime::getKernel(runtime::BackendKind::Cpu, spec, cpu)->scheduleDescription(),
            fromDb);
}

TEST_F(TunedScheduleTest, DatabaseEntryChangesTheGpuSchedule) {
  codegen::KernelSpec spec = smallSpec();
  const codegen::Schedule fallback = codegen::defaultSchedule(spec, -1);
  EXPECT_EQ(runtime::chooseSchedule(spec, -1, "h100").str(), fallback.str());
  codegen::Schedule tuned = fallback;
  tuned.weightSplit = fallback.weightSplit == 3 ? 5 : 3;
  store(spec, "h100", KernelFamily::Cuda, tuned.str());
  reset();
  EXPECT_EQ(runtime::chooseSchedule(spec, -1, "h100").str(), tuned.str());
  // Another device has no entry: the default heuristic.
  EXPECT_EQ(runtime::chooseSchedule(spec, -1, "a100").str(), fallback.str());
  // An explicit provider still wins over the database.
  runtime::setScheduleProvider([&](const codegen::KernelSpec &, double) { return fallback; });
  EXPECT_EQ(runtime::chooseSchedule(spec, -1, "h100").str(), fallback.str());
}

TEST_F(TunedScheduleTest, CorruptDatabaseFallsBackWithAWarning) {
  {
    std::ofstream out(path_, std::ios::binary);
    out << "this is not a SQLite database, just some bytes that look nothing like one\n";
  }
  const codegen::KernelSpec spec = smallSpec();
  ::testing::internal::CaptureStderr();
  codegen::Schedule s;
  EXPECT_NO_THROW(s = runtime::chooseSchedule(spec, -1, "h100"));
  std::string why;
  std::optional<codegen::cpu::CpuSchedule> cpu;
  EXPECT_NO_THROW(cpu = runtime::tunedCpuSchedule(spec, 1, &why));
  const std::string log = ::testing::internal::GetCapturedStderr();
  EXPECT_EQ(s.str(), codegen::defaultSchedule(spec, -1).str());
  EXPECT_FALSE(cpu.has_value());
  EXPECT_NE(why.find("default"), std::string::npos) << why;
  EXPECT_NE(log.find("warning: cannot use the tuning database"), std::string::npos) << log;
  EXPECT_NE(log.find(path_), std::string::npos) << log;
  // The file is left as it was.
  std::ifstream in(path_);
  std::string first;
  std::getline(in, first);
  EXPECT_EQ(first.rfind("this is not a SQLite database", 0), 0u);
}

TEST_F(TunedScheduleTest, MissingDatabaseIsTheDefaultWithoutNoise) {
  const codegen::KernelSpec spec = smallSpec();
  ::testing::internal::CaptureStderr();
  const codegen::Schedule s = runtime::chooseSchedule(spec, -1, "h100");
  std::string why;
  const auto cpu = runtime::tunedCpuSchedule(spec, 1, &why);
  const std::string log = ::testing::internal::GetCapturedStderr();
  EXPECT_EQ(s.str(), codegen::defaultSchedule(spec, -1).str());
  EXPECT_FALSE(cpu.has_value());
  EXPECT_NE(why.find("no tuning database"), std::string::npos) << why;
  EXPECT_EQ(log.find("warning"), std::string::npos) << log;
}

} // namespace
} // namespace slak

// Schedule spaces: every enumerated GPU schedule is legal for its spec
// (validate), the emitter accepts it within the shared-memory limit, the
// recorded facts are the emitter's, and the device's limits hold; CPU
// spaces are legal CpuSchedules within the vector registers. Also the
// schedule texts round-trip, and an impossible device gives an empty space.
#include <gtest/gtest.h>

#include <random>

#include "autotune/ScheduleSpace.h"
#include "autotune/ScheduleText.h"
#include "codegen/DefaultSchedule.h"
#include "tests/autotune/AutotuneTestLayers.h"

#ifdef SLAK_AUTOTUNE_WITH_CPU
#include "autotune/CpuTuning.h"
#endif

namespace slak::autotune {
namespace {

using codegen::Schedule;

void checkSpace(const LayerDescription &layer, const GpuDevice &device, SchedulePart part,
                int reEmit) {
  const Schedule base =
      codegen::defaultSchedule(layer.spec, layer.spec.anySparse() ? layer.workload.density : -1);
  const auto space = gpuScheduleSpace(layer.spec, layer.workload, device, part, base);
  ASSERT_FALSE(space.empty()) << layer.text << " " << schedulePartName(part);
  std::mt19937 rng(3);
  std::set<std::string> seen;
  for (size_t i = 0; i < space.size(); ++i) {
    const GpuCandidate &c = space[i];
    KernelSpec spec = layer.spec;
    spec.schedule = c.schedule;
    ASSERT_EQ(spec.validate(), "") << c.schedule.str();
    EXPECT_TRUE(seen.insert(c.schedule.str()).second) << "duplicate " << c.schedule.str();
    for (int k = 0; k < codegen::kNumKernelKinds; ++k) {
      EXPECT_LE(c.sharedBytes[k], codegen::kMaxSharedBytes) << c.schedule.str();
      EXPECT_LE(c.threads[k], device.maxThreadsPerBlock) << c.schedule.str();
      EXPECT_LE(c.registers[k], registerBudget(c.threads[k])) << c.schedule.str();
    }
    EXPECT_EQ(checkFits(c, device), "") << c.schedule.str();
    // The other part is the base's.
    if (part == SchedulePart::Conv)
      EXPECT_EQ(combineParts(c.schedule, base).str(), c.schedule.str());
    else
      EXPECT_EQ(combineParts(base, c.schedule).str(), c.schedule.str());
    // Re-emit a sample and compare with the recorded facts.
    if (std::uniform_int_distribution<int>(0, static_cast<int>(space.size()) - 1)(rng) < reEmit) {
      const codegen::EmittedKernels e = codegen::emitKernels(spec);
      EXPECT_EQ(e.sharedBytes, c.sharedBytes) << c.schedule.str();
      EXPECT_EQ(e.threads, c.threads) << c.schedule.str();
    }
  }
}

TEST(ScheduleSpaceTest, SlakTinyStageSpacesAreLegalOnA100) {
  for (const LayerDescription &layer : testLayers())
    for (SchedulePart part : {SchedulePart::Conv, SchedulePart::Weight})
      checkSpace(layer, findGpu("a100"), part, 40);
}

TEST(ScheduleSpaceTest, SpacesHoldBothMaskedWalksAndManyTiles) {
  const LayerDescription stage1 = testLayers().front();
  const Schedule base = codegen::defaultSchedule(stage1.spec, stage1.workload.density);
  const auto conv =
      gpuScheduleSpace(stage1.spec, stage1.workload, findGpu("h100"), SchedulePart::Conv, base);
  std::set<std::string> tiles;
  int masked = 0, unstaged = 0;
  for (const GpuCandidate &c : conv) {
    tiles.insert(std::to_string(c.schedule.tileH) + "x" + std::to_string(c.schedule.tileW));
    masked += c.schedule.maskedWalk;
    unstaged += !c.schedule.stageInput;
  }
  EXPECT_GT(tiles.size(), 20u);
  EXPECT_GT(masked, 0);
  EXPECT_GT(unstaged, 0);
  EXPECT_GT(conv.size(), static_cast<size_t>(masked));
}

TEST(ScheduleSpaceTest, DenseLayersHaveNoMaskedWalk) {
  const LayerDescription dense = parseLayer("channels=96,size=56,branches=7x7,mode=infer");
  const auto conv =
      gpuScheduleSpace(dense.spec, dense.workload, findGpu("a100"), KernelKind::BackwardData);
  ASSERT_FALSE(conv.empty());
  for (const GpuCandidate &c : conv)
    EXPECT_FALSE(c.schedule.maskedWalk) << c.schedule.str();
}

TEST(ScheduleSpaceTest, ImpossibleDeviceGivesAnEmptySpace) {
  GpuDevice tiny = findGpu("a100");
  tiny.name = "tiny";
  tiny.sharedPerBlock = 1024; // no staged 51x5 tile fits
  tiny.maxThreadsPerBlock = 16;
  const LayerDescription layer = testLayers().front();
  const Schedule base = codegen::defaultSchedule(layer.spec, layer.workload.density);
  EXPECT_TRUE(gpuScheduleSpace(layer.spec, layer.workload, tiny, SchedulePart::Conv, base).empty());
  EXPECT_TRUE(
      gpuScheduleSpace(layer.spec, layer.workload, tiny, SchedulePart::Weight, base).empty());
}

TEST(ScheduleSpaceTest, RegisterBudgetFollowsLaunchBounds) {
  EXPECT_EQ(registerBudget(128), 128);
  EXPECT_EQ(registerBudget(256), 128);
  EXPECT_EQ(registerBudget(512), 128);
  EXPECT_EQ(registerBudget(1024), 64);
  KernelSpec spec = testLayers().front().spec;
  spec.schedule = codegen::defaultSchedule(spec, 0.6);
  spec.schedule.tileH = spec.schedule.blockH * 16;
  spec.schedule.tileW = spec.schedule.blockW * 2;
  EXPECT_GT(estimateRegisters(spec, KernelKind::Forward), 64);
}

TEST(ScheduleSpaceTest, GpuScheduleTextRoundTrips) {
  const LayerDescription layer = testLayers()[1];
  const Schedule base = codegen::defaultSchedule(layer.spec, layer.workload.density);
  for (SchedulePart part : {SchedulePart::Conv, SchedulePart::Weight})
    for (const GpuCandidate &c :
         gpuScheduleSpace(layer.spec, layer.workload, findGpu("a100"), part, base))
      ASSERT_EQ(parseSchedule(c.schedule.str()).str(), c.schedule.str());
  EXPECT_THROW(parseSchedule("tile=16x32 block=4x32"), std::invalid_argument);
  EXPECT_THROW(parseSchedule(base.str() + " newField=3"), std::invalid_argument);
  EXPECT_THROW(parseSchedule("tile=16x30 block=4x32 stageInput=1 stageTaps=1 maskedWalk=0 "
                             "weightSplit=8 weightThreads=256 weightTile=8x32 weightRows=8"),
               std::invalid_argument); // 30 is not a multiple of 32
}

#ifdef SLAK_AUTOTUNE_WITH_CPU
TEST(ScheduleSpaceTest, CpuSpacesAreLegal) {
  const CpuDevice cpu = hostCpu(2);
  for (const LayerDescription &layer : testLayers()) {
    const CpuSchedule base =
        codegen::cpu::defaultCpuSchedule(layer.spec, layer.workload.height, layer.workload.width);
    for (SchedulePart part : {SchedulePart::Conv, SchedulePart::Weight}) {
      const auto space = cpuScheduleSpace(layer.spec, layer.workload, cpu, part, base);
      ASSERT_FALSE(space.empty()) << layer.text;
      for (const CpuSchedule &s : space) {
        EXPECT_EQ(s.validate(), "") << s.str();
        EXPECT_LE(s.vectorWidth * 32, cpu.maxVectorBits) << s.str();
        if (part == SchedulePart::Conv)
          EXPECT_LE(s.tileRows * s.tileVectors, cpu.vectorRegisters - 4) << s.str();
        else
          EXPECT_LE(s.weightTaps + s.weightVectors + 2, cpu.vectorRegisters) << s.str();
        EXPECT_EQ(parseCpuSchedule(s.str()).str(), s.str());
      }
    }
  }
  EXPECT_THROW(parseCpuSchedule("vec=8 tile=4x7"), std::invalid_argument);
  EXPECT_THROW(parseCpuSchedule("vec=5 tile=4x7 transposeWide=1 mergeTaps=1 wtaps=8 wvec=4"),
               std::invalid_argument);
}
#endif

} // namespace
} // namespace slak::autotune

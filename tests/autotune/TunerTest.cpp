// The search and the lookups: model-only picks for the SLaK-T stages, the
// measured path (through a scripted GPU timer, and for real on the CPU
// backend), the GPU-timer registry, lookups with their fallbacks, layer
// descriptions, statistics and the progress bar.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <unistd.h>

#include "autotune/LayerTuner.h"
#include "autotune/Lookup.h"
#include "autotune/Measure.h"
#include "autotune/Progress.h"
#include "autotune/Report.h"
#include "autotune/ScheduleText.h"
#include "autotune/Tuner.h"
#include "codegen/DefaultSchedule.h"
#include "tests/autotune/AutotuneTestLayers.h"

#ifdef SLAK_AUTOTUNE_WITH_CPU
#include "autotune/CpuTuning.h"
#endif

namespace slak::autotune {
namespace {

std::string tempPath(const std::string &name) { return tempDatabasePath("slak_tuner", name); }

TEST(StatisticsTest, MedianAndKendallTau) {
  EXPECT_DOUBLE_EQ(median({3, 1, 2}), 2);
  EXPECT_DOUBLE_EQ(median({4, 1, 2, 3}), 2.5);
  EXPECT_DOUBLE_EQ(kendallTau({1, 2, 3, 4}, {10, 20, 30, 40}), 1.0);
  EXPECT_DOUBLE_EQ(kendallTau({1, 2, 3, 4}, {4, 3, 2, 1}), -1.0);
  // One discordant pair of six: (5 - 1) / 6.
  EXPECT_NEAR(kendallTau({1, 2, 3, 4}, {1, 3, 2, 4}), 4.0 / 6.0, 1e-12);
  EXPECT_THROW(kendallTau({1, 2}, {1}), std::invalid_argument);
  int calls = 0;
  MeasureOptions o;
  o.warmup = 2;
  o.repeats = 4;
  const Timing t = timeMedian([&] { ++calls; }, o);
  EXPECT_EQ(calls, 6);
  EXPECT_EQ(t.samplesMs.size(), 4u);
}

TEST(TunerTest, ModelPicksForSlakTinyStagesBeatTheDefault) {
  for (const char *gpu : {"a100", "h100"})
    for (const LayerDescription &layer : testLayers()) {
      const TuningResult r = tuneGpu(layer.spec, layer.workload, findGpu(gpu), TuneOptions{});
      EXPECT_EQ(r.origin, ScheduleOrigin::Model);
      EXPECT_EQ(r.key.device, gpu);
      EXPECT_EQ(r.key.signature, problemSignature(layer.spec));
      EXPECT_GT(r.spaceSize[0], 10u);
      EXPECT_GT(r.spaceSize[1], 50u);
      EXPECT_LE(r.total(r.predictedMs), r.total(r.defaultPredictedMs)) << layer.text;
      EXPECT_TRUE(std::isnan(r.total(r.measuredMs)));
      KernelSpec spec = layer.spec;
      spec.schedule = parseSchedule(r.schedule);
      EXPECT_NO_THROW(codegen::emitKernels(spec)) << r.schedule;
      for (int p = 0; p < 2; ++p)
        for (size_t i = 1; i < r.ranked[p].size(); ++i)
          EXPECT_LE(r.ranked[p][i - 1].predictedScore, r.ranked[p][i].predictedScore);
    }
}

TEST(TunerTest, ForwardOnlyKeepsTheDefaultWeightPart) {
  const LayerDescription layer = parseLayer("channels=124,size=56,density=0.6,mode=infer");
  TuneOptions options;
  options.kinds = layer.kinds;
  ASSERT_EQ(options.kinds.size(), 1u);
  const TuningResult r = tuneGpu(layer.spec, layer.workload, findGpu("a100"), options);
  const codegen::Schedule chosen = parseSchedule(r.schedule);
  const codegen::Schedule base = codegen::defaultSchedule(layer.spec, 0.6);
  EXPECT_EQ(chosen.weightSplit, base.weightSplit);
  EXPECT_EQ(chosen.weightTileW, base.weightTileW);
  EXPECT_EQ(r.spaceSize[1], 0u);
  EXPECT_TRUE(std::isnan(r.predictedMs[kindIndex(KernelKind::BackwardWeight)]));
  EXPECT_FALSE(std::isnan(r.predictedMs[kindIndex(KernelKind::Forward)]));
  std::ostringstream report;
  printReport(report, r, 3);
  EXPECT_NE(report.str().find("chosen (model)"), std::string::npos);
  EXPECT_EQ(report.str().find("weight part"), std::string::npos);
}

TEST(TunerTest, ImpossibleDeviceIsAnEmptySpaceError) {
  GpuDevice tiny = findGpu("a100");
  tiny.name = "tiny";
  tiny.sharedPerBlock = 1024;
  tiny.maxThreadsPerBlock = 16;
  const LayerDescription layer = testLayers().front();
  try {
    tuneGpu(layer.spec, layer.workload, tiny, TuneOptions{});
    FAIL() << "no error";
  } catch (const std::runtime_error &e) {
    EXPECT_NE(std::string(e.what()).find("is empty"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("tiny"), std::string::npos) << e.what();
  }
}

/// A GPU "measured" by a formula the model does not know: it likes wide
/// tiles and small splits. Counts its calls.
class ScriptedTimer : public GpuKernelTimer {
public:
  GpuDevice device() const override { return findGpu("a100"); }
  Timing time(const KernelSpec &spec, const Workload &, KernelKind kind,
              const MeasureOptions &) override {
    ++calls;
    const codegen::Schedule &s = spec.schedule;
    Timing t;
    t.medianMs = kind == KernelKind::BackwardWeight ? 1.0 + 0.01 * s.weightSplit
                                                    : 1.0 + 8.0 / s.tileW + 0.1 * s.maskedWalk;
    t.samplesMs = {t.medianMs};
    return t;
  }
  int calls = 0;
};

TEST(TunerTest, MeasuredSearchPicksTheMeasuredBest) {
  const LayerDescription layer = testLayers()[1];
  ScriptedTimer timer;
  TuneOptions options;
  options.measureTop = 4;
  options.exhaustiveLimit = 0;
  options.evaluateModel = 10;
  const TuningResult r = tuneGpu(layer.spec, layer.workload, findGpu("a100"), options, &timer);
  EXPECT_EQ(r.origin, ScheduleOrigin::Measured);
  EXPECT_GT(timer.calls, 20);
  EXPECT_EQ(static_cast<int>(r.measurements.size()), timer.calls);
  // The default is always measured, so the choice is never slower than it.
  for (KernelKind k : kTunedKinds) {
    EXPECT_FALSE(std::isnan(r.defaultMeasuredMs[kindIndex(k)]));
    EXPECT_EQ(r.tauSamples[kindIndex(k)], 10);
    EXPECT_FALSE(std::isnan(r.kendallTau[kindIndex(k)]));
  }
  EXPECT_LE(r.total(r.measuredMs), r.total(r.defaultMeasuredMs));
  // No measured candidate of a part beats the chosen one's part.
  const KernelSpec chosen = [&] {
    KernelSpec s = layer.spec;
    s.schedule = parseSchedule(r.schedule);
    return s;
  }();
  for (const MeasurementRecord &m : r.measurements) {
    if (m.kind == "backward-weight" &&
        parseSchedule(m.schedule).maskedWalk == chosen.schedule.maskedWalk) {
      EXPECT_GE(*m.measuredMs, r.measuredMs[2]) << m.schedule;
    }
  }
}

TEST(TunerTest, LocalGpuTimerRegistry) {
  setGpuTimerFactory({});
  try {
    openLocalGpuTimer();
    FAIL() << "no error without a registered timer";
  } catch (const MeasurementUnavailable &e) {
    EXPECT_NE(std::string(e.what()).find("--gpu <name>"), std::string::npos) << e.what();
  }
  EXPECT_THROW(LayerTuner(TuneTarget::fromGpuName("local")), MeasurementUnavailable);
  setGpuTimerFactory([] { return std::make_unique<ScriptedTimer>(); });
  LayerTuner tuner(TuneTarget::fromGpuName("local"));
  EXPECT_EQ(tuner.device(), "a100");
  setGpuTimerFactory([]() -> std::unique_ptr<GpuKernelTimer> {
    throw MeasurementUnavailable("[SKIP] no CUDA device (libcuda.so.1 not found)");
  });
  EXPECT_THROW(openLocalGpuTimer(), MeasurementUnavailable);
  setGpuTimerFactory({});
  EXPECT_THROW(TuneTarget::fromGpuName("gtx480"), std::invalid_argument);
}

TEST(LookupTest, FallsBackToTheDefaultAndFindsStoredChoices) {
  const LayerDescription layer = testLayers().front();
  const codegen::Schedule base = codegen::defaultSchedule(layer.spec, 0.6);
  ScheduleChoice none = lookupSchedule(nullptr, layer.spec, "a100", 0.6);
  EXPECT_EQ(none.origin, ScheduleOrigin::Default);
  EXPECT_EQ(none.schedule.str(), base.str());
  EXPECT_FALSE(none.note.empty());
  const ScheduleChoice missing =
      lookupSchedule(tempPath("does-not-exist.db"), layer.spec, "a100", 0.6);
  EXPECT_EQ(missing.origin, ScheduleOrigin::Default);
  EXPECT_NE(missing.note.find("no tuning database"), std::string::npos);

  const std::string path = tempPath("lookup.db");
  TuningDatabase db(path);
  EXPECT_EQ(lookupSchedule(&db, layer.spec, "a100", 0.6).origin, ScheduleOrigin::Default);
  const TuningResult r = tuneGpu(layer.spec, layer.workload, findGpu("a100"), TuneOptions{});
  EXPECT_TRUE(recordResult(db, r));
  const ScheduleChoice found = lookupSchedule(&db, layer.spec, "a100", 0.6);
  EXPECT_EQ(found.origin, ScheduleOrigin::Model);
  EXPECT_EQ(found.schedule.str(), r.schedule);
  EXPECT_NEAR(*found.predictedMs, r.total(r.predictedMs), 1e-9);
  // An A100 80GB finds the a100 entry through its family.
  const ScheduleChoice family = lookupSchedule(&db, layer.spec, "a100-80gb", 0.6);
  EXPECT_EQ(family.origin, ScheduleOrigin::Model);
  EXPECT_EQ(family.device, "a100");
  // Another layer, another device: nothing.
  EXPECT_EQ(lookupSchedule(&db, layer.spec, "h100", 0.6).origin, ScheduleOrigin::Default);
  // Through the file, read-only.
  EXPECT_EQ(lookupSchedule(path, layer.spec, "a100", 0.6).schedule.str(), r.schedule);
}

TEST(LookupTest, BestScheduleTunesAndRecordsNamedGpus) {
  const LayerDescription layer = testLayers()[2];
  const std::string path = tempPath("best.db");
  TuningDatabase db(path);
  const ScheduleChoice first = bestSchedule(&db, layer.spec, "h100", layer.workload);
  EXPECT_EQ(first.origin, ScheduleOrigin::Model);
  ASSERT_TRUE(first.predictedMs);
  EXPECT_GT(db.measurementCount(), 0);
  const ScheduleChoice again = bestSchedule(&db, layer.spec, "h100", layer.workload);
  EXPECT_EQ(again.schedule.str(), first.schedule.str());
  // Not a named GPU: the default, nothing recorded.
  EXPECT_EQ(bestSchedule(&db, layer.spec, "some-new-gpu", layer.workload).origin,
            ScheduleOrigin::Default);
}

TEST(LookupTest, NoThrowVariantsReportErrorsAndFallBack) {
  const LayerDescription layer = testLayers()[3];
  const std::string bad = tempPath("nothrow-bad.db");
  std::ofstream(bad) << "not a database";
  std::string error;
  const ScheduleChoice c = lookupScheduleNoThrow(bad, layer.spec, "a100", 0.6, &error);
  EXPECT_EQ(c.origin, ScheduleOrigin::Default);
  EXPECT_NE(error.find(bad), std::string::npos) << error;
  EXPECT_EQ(c.schedule.str(), codegen::defaultSchedule(layer.spec, 0.6).str());
  error.clear();
  const std::string good = tempPath("nothrow-good.db");
  const ScheduleChoice tuned =
      bestScheduleNoThrow(good, layer.spec, "a100", layer.workload, &error);
  EXPECT_EQ(error, "");
  EXPECT_EQ(tuned.origin, ScheduleOrigin::Model);
  EXPECT_EQ(lookupScheduleNoThrow(good, layer.spec, "a100", 0.6, &error).schedule.str(),
            tuned.schedule.str());
  KernelSpec broken = layer.spec;
  broken.channels = 0;
  const ScheduleChoice none = bestScheduleNoThrow(good, broken, "a100", layer.workload, &error);
  EXPECT_EQ(none.origin, ScheduleOrigin::Default);
  EXPECT_NE(error.find("channels"), std::string::npos) << error;
}

TEST(LookupTest, DefaultDatabasePathHonoursTheEnvironment) {
  const char *old = std::getenv("SLAK_TUNING_DB");
  const std::string saved = old ? old : "";
  setenv("SLAK_TUNING_DB", "/tmp/x/tuning.db", 1);
  EXPECT_EQ(defaultDatabasePath(), "/tmp/x/tuning.db");
  unsetenv("SLAK_TUNING_DB");
  setenv("HOME", "/home/someone", 1);
  unsetenv("XDG_CACHE_HOME");
  EXPECT_EQ(defaultDatabasePath(), "/home/someone/.cache/slak/tuning.db");
  if (old)
    setenv("SLAK_TUNING_DB", saved.c_str(), 1);
}

TEST(LayerTest, ParsesAndRejectsLayerDescriptions) {
  const LayerDescription l =
      parseLayer("channels=124,size=56,branches=51x5+5x51+5x5,density=0.6,batch=8");
  EXPECT_EQ(l.spec.channels, 124);
  EXPECT_EQ(l.spec.height, 56);
  ASSERT_EQ(l.spec.branches.size(), 3u);
  EXPECT_EQ(l.spec.branches[1].kernelW, 51);
  EXPECT_FALSE(l.spec.branches[0].dense);
  EXPECT_TRUE(l.spec.perBranchOutputs);
  EXPECT_EQ(l.kinds.size(), 3u);
  EXPECT_EQ(l.workload.batch, 8);
  EXPECT_DOUBLE_EQ(l.workload.density, 0.6);
  const LayerDescription infer =
      parseLayer("channels=96,size=56,branches=7x7,mode=infer,dynamic=1");
  EXPECT_TRUE(infer.spec.branches[0].dense);
  EXPECT_TRUE(infer.spec.hasBias);
  EXPECT_EQ(infer.spec.height, -1);
  EXPECT_EQ(infer.workload.height, 56);
  auto rejects = [](const std::string &text, const std::string &part) {
    try {
      parseLayer(text);
      ADD_FAILURE() << "accepted " << text;
    } catch (const std::invalid_argument &e) {
      EXPECT_NE(std::string(e.what()).find(part), std::string::npos) << e.what();
    }
  };
  rejects("size=56", "channels=");
  rejects("channels=4,colour=red", "unknown key 'colour'");
  rejects("channels=4,branches=51", "KHxKW");
  rejects("channels=4,branches=51x5+7x", "branch '7x' of branches=51x5+7x is not KHxKW");
  rejects("channels=4,branches=4x4", "odd");
  rejects("channels=4,density=1.5", "density=1.5");
  rejects("channels=4,batch=0", "batch=0");
  rejects("channels=4,mode=fast", "mode=fast");
  EXPECT_EQ(parseKernelKinds("bwd-weight,forward").front(), KernelKind::Forward);
  EXPECT_THROW(parseKernelKinds("sideways"), std::invalid_argument);
}

TEST(ProgressTest, PrintsDecilesWithEta) {
  std::ostringstream out;
  {
    ProgressBar bar(&out, "measure", 20);
    for (size_t i = 1; i <= 20; ++i)
      bar.update(i, "item " + std::to_string(i));
  }
  const std::string text = out.str();
  EXPECT_NE(text.find("measure ["), std::string::npos);
  EXPECT_NE(text.find("20/20"), std::string::npos);
  EXPECT_NE(text.find("ETA"), std::string::npos);
  EXPECT_LT(std::count(text.begin(), text.end(), '\n'), 15);
  EXPECT_EQ(ProgressBar::formatSeconds(65), "1:05");
  EXPECT_EQ(ProgressBar::formatSeconds(3723), "1:02:03");
}

#ifdef SLAK_AUTOTUNE_WITH_CPU
TEST(CpuTunerTest, MeasuresTheCpuBackendForReal) {
  // A small dense layer keeps compiles few: no wide branch, so the only
  // coupled field is the vector width.
  const LayerDescription layer = parseLayer("channels=8,size=12,branches=5x5,batch=2");
  CpuKernelTimer timer(1);
  TuneOptions options;
  options.measureTop = 1;
  options.exhaustiveLimit = 0;
  options.measureOptions.repeats = 3;
  options.measureOptions.threads = 1;
  const TuningResult r = tuneCpu(layer.spec, layer.workload, hostCpu(1), options, &timer);
  EXPECT_EQ(r.origin, ScheduleOrigin::Measured);
  EXPECT_EQ(r.key.device, hostCpu(1).name);
  EXPECT_NE(r.key.compiler.find("cpu"), std::string::npos);
  for (KernelKind k : kTunedKinds) {
    EXPECT_GT(r.measuredMs[kindIndex(k)], 0) << codegen::kernelKindName(k);
    EXPECT_GT(r.defaultMeasuredMs[kindIndex(k)], 0) << codegen::kernelKindName(k);
  }
  EXPECT_LE(r.total(r.measuredMs), r.total(r.defaultMeasuredMs));
  EXPECT_GE(r.measurements.size(), 6u);
  // Every measurement ran on one set of data, not one set per candidate.
  EXPECT_EQ(timer.dataSetsCreated(), 1);
  for (const MeasurementRecord &m : r.measurements) {
    ASSERT_TRUE(m.measuredMs);
    EXPECT_EQ(m.samplesMs.size(), 3u);
  }
  const std::string path = tempPath("cpu.db");
  TuningDatabase db(path);
  ASSERT_TRUE(recordResult(db, r));
  const CpuScheduleChoice c = lookupCpuSchedule(&db, layer.spec, r.key.device, 12, 12);
  EXPECT_EQ(c.origin, ScheduleOrigin::Measured);
  EXPECT_EQ(c.schedule.str(), r.schedule);
  EXPECT_EQ(lookupCpuSchedule(&db, layer.spec, "cpu:other:2t", 12, 12).origin,
            ScheduleOrigin::Default);
  // A pick of the cost model alone stays in the database but does not
  // replace the default on the CPU.
  TuningResult modelOnly = r;
  modelOnly.origin = ScheduleOrigin::Model;
  modelOnly.key.device = "cpu:model-only:1t";
  ASSERT_TRUE(recordResult(db, modelOnly));
  const CpuScheduleChoice m = lookupCpuSchedule(&db, layer.spec, modelOnly.key.device, 12, 12);
  EXPECT_EQ(m.origin, ScheduleOrigin::Default);
  EXPECT_EQ(m.schedule.str(), codegen::cpu::defaultCpuSchedule(layer.spec, 12, 12).str());
  EXPECT_NE(m.note.find("cost model alone"), std::string::npos) << m.note;
}

TEST(CpuTunerTest, TimerKeepsOneDataSetPerWorkload) {
  // Regression: the timer made (and leaked) a full set of layer data per
  // measurement, ~100 MB per candidate on a SLaK-T stage-1 layer.
  const LayerDescription layer = parseLayer("channels=4,size=8,branches=5x5,batch=1");
  const codegen::cpu::CpuSchedule schedule =
      codegen::cpu::defaultCpuSchedule(layer.spec, layer.workload.height, layer.workload.width);
  codegen::cpu::CpuSchedule other = schedule;
  other.alignLoads = !schedule.alignLoads;
  CpuKernelTimer timer(1);
  MeasureOptions options;
  options.repeats = 1;
  options.warmup = 0;
  options.threads = 1;
  for (int round = 0; round < 3; ++round)
    for (const codegen::cpu::CpuSchedule &s : {schedule, other})
      EXPECT_GT(timer.time(layer.spec, s, layer.workload, KernelKind::Forward, options).medianMs,
                0);
  EXPECT_EQ(timer.dataSetsCreated(), 1);
  Workload bigger = layer.workload;
  bigger.batch = 2;
  timer.time(layer.spec, schedule, bigger, KernelKind::Forward, options);
  timer.time(layer.spec, schedule, bigger, KernelKind::Forward, options);
  EXPECT_EQ(timer.dataSetsCreated(), 2);
}

TEST(CpuTunerTest, VerifiesAChoiceByAlternatingRuns) {
  const LayerDescription layer = parseLayer("channels=8,size=12,branches=5x5,batch=2,mode=infer");
  LayerTuner tuner(TuneTarget::cpu(true, 1));
  TuneOptions options;
  options.kinds = layer.kinds;
  options.measureTop = 1;
  options.exhaustiveLimit = 0;
  options.measureOptions.threads = 1;
  const TuningResult r = tuner.tune(layer.spec, layer.workload, options);
  const auto v = tuner.verify(layer.spec, layer.workload, r, 3, options.measureOptions);
  EXPECT_EQ(v.rounds, 3);
  EXPECT_GT(v.defaultMs[0], 0);
  EXPECT_GT(v.chosenMs[0], 0);
  EXPECT_TRUE(std::isnan(v.chosenMs[2])); // not tuned
  LayerTuner model(TuneTarget::fromGpuName("a100"));
  EXPECT_THROW(model.verify(layer.spec, layer.workload, r, 3, {}), MeasurementUnavailable);
}
#endif

} // namespace
} // namespace slak::autotune

// Trainer: stop + resume gives bit-identical weights, EMA and masks; the JSONL
// log; learning on synthetic data; parameter report; checkpoint checks.
#include "models/train/Trainer.h"
#include "tests/models/TestSupport.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include <filesystem>
#include <fstream>

using namespace slak;
using tests::expectSameTensors;
namespace fs = std::filesystem;

namespace {

fs::path freshDir(const std::string &name) { return tests::freshDir("slak-models-test", name); }

/// A small, fast sparse run on synthetic data: 4 optimizer steps per epoch
/// (batch 8, 2 accumulated micro-batches, 64 images), EMA and mask updates on.
train::TrainOptions smallRun(const fs::path &dir) {
  train::TrainOptions o = slak::tests::tinySyntheticRun(dir.string());
  o.overrides.dropPath = 0.1; // exercises the RNG state
  o.synthetic.size = 64;
  o.syntheticTestSize = 32;
  o.epochs = 3;
  o.batchSize = 8;
  o.accumSteps = 2;
  o.lr = 3e-3;
  o.warmupSteps = 2;
  o.emaDecay = 0.9;
  o.sparse.init = sparse::Init::Snip;
  o.sparse.updateFrequency = 3;
  o.sparse.pruneRate = 0.3;
  o.progress = false;
  o.threads = 1;
  o.seed = 11;
  return o;
}

std::vector<nlohmann::json> readLog(const fs::path &path) {
  std::vector<nlohmann::json> out;
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line))
    out.push_back(nlohmann::json::parse(line));
  return out;
}

} // namespace

void checkStopAndResume(const std::string &name, models::LkBackend backend, sparse::Growth growth) {
  auto dirA = freshDir(name + "-straight"), dirB = freshDir(name + "-resumed");
  auto configure = [&](const fs::path &dir) {
    auto o = smallRun(dir);
    o.overrides.backend = backend;
    o.sparse.growth = growth;
    return o;
  };
  train::Trainer straight(configure(dirA));
  auto ra = straight.run();
  EXPECT_EQ(ra.steps, 12);
  EXPECT_FALSE(ra.stoppedEarly);

  // Stop mid-epoch 2 (step 5 of 12, after the step-3 mask update).
  auto first = configure(dirB);
  first.maxSteps = 5;
  {
    train::Trainer t(first);
    auto r = t.run();
    EXPECT_TRUE(r.stoppedEarly);
    EXPECT_EQ(r.steps, 5);
  }
  auto second = configure(dirB);
  second.resume = (dirB / "checkpoint.pt").string();
  train::Trainer resumed(second);
  EXPECT_EQ(resumed.step(), 5);
  auto rb = resumed.run();
  EXPECT_EQ(rb.steps, 12);

  expectSameTensors(straight.model(), resumed.model(), "model");
  ASSERT_TRUE(straight.ema() && resumed.ema());
  expectSameTensors(*straight.ema(), *resumed.ema(), "EMA");
  ASSERT_TRUE(straight.masking() && resumed.masking());
  const auto &ma = straight.masking()->layers(), &mb = resumed.masking()->layers();
  ASSERT_EQ(ma.size(), mb.size());
  EXPECT_GT(ma.size(), 0u);
  for (size_t i = 0; i < ma.size(); ++i)
    EXPECT_TRUE(torch::equal(ma[i].mask, mb[i].mask)) << ma[i].name;
  EXPECT_DOUBLE_EQ(ra.testAccuracy, rb.testAccuracy);
  EXPECT_DOUBLE_EQ(ra.trainLoss, rb.trainLoss); // the epoch sums were checkpointed too
  EXPECT_FALSE(fs::exists(dirB / "checkpoint.pt.tmp"));
}

TEST(Trainer, StopAndResumeGivesIdenticalFinalState) {
  checkStopAndResume("torch", models::LkBackend::Torch, sparse::Growth::Random);
}

TEST(Trainer, StopAndResumeOnRuntimeWithGradientGrowth) {
  if (models::resolveLkBackend(models::LkBackend::Auto) != models::LkBackend::Runtime)
    GTEST_SKIP() << "[SKIP] no fast runtime backend in this build";
  checkStopAndResume("runtime", models::LkBackend::Runtime, sparse::Growth::Gradient);
}

TEST(Trainer, LogHasEveryEpochAndMaskUpdates) {
  auto dir = freshDir("log");
  auto o = smallRun(dir);
  o.epochs = 2;
  train::Trainer t(o);
  t.run();
  auto log = readLog(dir / "log.jsonl");
  int epochs = 0, updates = 0, inits = 0;
  for (const auto &r : log) {
    auto event = r.at("event").get<std::string>();
    if (event == "epoch") {
      ++epochs;
      EXPECT_EQ(r.at("epoch").get<int>(), epochs);
      for (const char *key : {"train_loss", "train_acc", "test_loss", "test_acc", "test_acc_ema",
                              "images_per_s", "lr", "density"})
        EXPECT_TRUE(r.contains(key)) << key;
    } else if (event == "mask_update") {
      ++updates;
      EXPECT_EQ(r.at("step").get<int>() % 3, 0);
      int largeKernelLayers = 0;
      for (const auto &[name, density] : r.at("layers").items()) {
        largeKernelLayers += name.find("large_kernel.branch") != std::string::npos;
        EXPECT_GT(density.get<double>(), 0.0) << name;
        EXPECT_LT(density.get<double>(), 0.99) << name;
      }
      EXPECT_GT(largeKernelLayers, 0);
      EXPECT_NEAR(r.at("density").get<double>(), 0.6, 0.05);
    } else if (event == "mask_init") {
      ++inits;
    }
  }
  EXPECT_EQ(epochs, 2);
  EXPECT_EQ(updates, 2); // steps 3 and 6 of 8
  EXPECT_EQ(inits, 1);
}

TEST(Trainer, LearnsSyntheticData) {
  auto dir = freshDir("learn");
  auto o = smallRun(dir);
  o.synthetic.size = 256;
  o.syntheticTestSize = 128;
  o.accumSteps = 1;
  o.batchSize = 32;
  o.epochs = 4;
  o.emaDecay = 0;
  o.overrides.dropPath = 0.0;
  o.overrides.widthFactor = 0.5;
  train::Trainer t(o);
  auto r = t.run();
  EXPECT_GT(r.testAccuracy, 0.5) << "10 classes: chance is 0.1";
  EXPECT_NEAR(r.density, 0.6, 0.05);
}

TEST(Trainer, ResumeRejectsADifferentModel) {
  auto dir = freshDir("mismatch");
  auto o = smallRun(dir);
  o.maxSteps = 1;
  train::Trainer(o).run();
  auto other = smallRun(dir);
  other.overrides.widthFactor = 0.5;
  other.resume = (dir / "checkpoint.pt").string();
  try {
    train::Trainer t(other);
    FAIL() << "expected an error";
  } catch (const std::runtime_error &e) {
    EXPECT_NE(std::string(e.what()).find("same --model"), std::string::npos) << e.what();
  }
  auto missing = smallRun(dir);
  missing.resume = (dir / "nope.pt").string();
  EXPECT_THROW(train::Trainer{missing}, std::runtime_error);
}

TEST(Trainer, ParameterReportCountsNonZeros) {
  sparse::Options s;
  s.init = sparse::Init::Uniform;
  auto r = train::parameterReport("slak_nano", {}, s);
  EXPECT_GT(r.total, r.maskable);
  // Uniform 0.4: every maskable layer keeps round(0.6 n) weights.
  EXPECT_NEAR(static_cast<double>(r.nonZero), static_cast<double>(r.total) - 0.4 * r.maskable,
              static_cast<double>(r.maskedLayers));
  EXPECT_EQ(r.denseLayers, 0);
  models::ModelOverrides dense;
  dense.sparsity = 0.0;
  auto d = train::parameterReport("slak_nano", dense, s);
  EXPECT_EQ(d.nonZero, d.total); // zero-initialised biases still count as parameters
  EXPECT_EQ(d.total, r.total);
}

// The training checkpoint (models/checkpoint): everything the trainer keeps
// (config, weights, EMA, masks, optimizer state, generators, epoch sums)
// comes back from the file as written, and a file that cannot be used is
// refused with one line naming the file and the fix.
#include "models/checkpoint/ConfigJson.h"
#include "models/checkpoint/TrainingCheckpoint.h"
#include "models/sparse/Masking.h"
#include "tests/models/TestSupport.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include <filesystem>
#include <fstream>
#include <functional>

using namespace slak;
using tests::expectSameTensors;
namespace fs = std::filesystem;

namespace {

fs::path freshDir(const std::string &name) { return tests::freshDir("slak-checkpoint-test", name); }

models::ModelConfig smallConfig(double widthFactor = 0.25) {
  models::ModelOverrides o;
  o.widthFactor = widthFactor;
  o.backend = models::LkBackend::Torch;
  o.sparsity = 0.4;
  o.numClasses = 10;
  o.inChannels = 1;
  return models::modelConfig("slak_nano", o);
}

std::shared_ptr<models::Classifier> model(const models::ModelConfig &config, uint64_t seed) {
  torch::manual_seed(seed);
  return models::createModel(config);
}

std::unique_ptr<torch::optim::AdamW> adamW(models::Classifier &m) {
  return std::make_unique<torch::optim::AdamW>(m.parameters(), torch::optim::AdamWOptions(1e-3));
}

sparse::Options uniform(uint64_t seed) {
  sparse::Options o;
  o.init = sparse::Init::Uniform;
  o.sparsity = 0.4;
  o.seed = seed;
  return o;
}

std::string errorOf(const std::function<void()> &f) {
  try {
    f();
  } catch (const std::exception &e) {
    return e.what();
  }
  return "(no error)";
}

#define EXPECT_HAS(text, part)                                                                     \
  EXPECT_NE(std::string(text).find(part), std::string::npos)                                       \
      << "expected \"" << (part) << "\" in: " << (text)

/// A trained-looking state: one optimizer step, masks, an EMA unlike the model.
struct TrainingState {
  models::ModelConfig config = smallConfig();
  std::shared_ptr<models::Classifier> net = model(config, 1), ema = model(config, 2);
  std::unique_ptr<torch::optim::AdamW> optimizer = adamW(*net);
  sparse::Masking masking{*net, uniform(5)};

  TrainingState() {
    masking.initialize();
    auto x = torch::randn({2, 1, 16, 16});
    auto loss = torch::nn::functional::cross_entropy(net->forward(x), torch::tensor({1, 7}));
    loss.backward();
    optimizer->step();
    masking.applyToWeights();
    masking.update(1, optimizer.get()); // moves the masks and the generator
  }

  checkpoint::Snapshot snapshot() const {
    checkpoint::Snapshot s;
    s.model = net.get();
    s.ema = ema.get();
    s.optimizer = optimizer.get();
    s.masking = &masking;
    s.cpuGenerators = {torch::tensor({1, 2, 3}, torch::kUInt8),
                       torch::tensor({4, 5, 6}, torch::kUInt8)};
    s.meta.step = 7;
    s.meta.worldSize = 2;
    s.meta.epoch = {12.5, 3.25, 9, 16};
    s.meta.config = checkpoint::configJson(config);
    return s;
  }
};

} // namespace

TEST(TrainingCheckpoint, RoundTripKeepsEverything) {
  TrainingState saved;
  const fs::path path = freshDir("round-trip") / "run" / "checkpoint.pt";
  checkpoint::write(path.string(), saved.snapshot());
  ASSERT_TRUE(fs::exists(path));
  EXPECT_FALSE(fs::exists(path.string() + ".tmp"));

  checkpoint::TrainingCheckpoint file(path.string(), checkpoint::Reader::Resume);
  const checkpoint::Meta &meta = file.meta();
  EXPECT_EQ(meta.format, checkpoint::kFormat);
  EXPECT_EQ(meta.step, 7);
  EXPECT_EQ(meta.worldSize, 2);
  EXPECT_EQ(meta.epoch.lossSum, 12.5);
  EXPECT_EQ(meta.epoch.trainSeconds, 3.25);
  EXPECT_EQ(meta.epoch.correct, 9);
  EXPECT_EQ(meta.epoch.seen, 16);
  EXPECT_EQ(meta.config, checkpoint::configJson(saved.config));
  EXPECT_TRUE(file.hasEma());
  EXPECT_TRUE(file.hasMasks());

  // Weights and EMA into models of other random weights.
  auto net = model(saved.config, 3), ema = model(saved.config, 4);
  file.readWeights(*net, /*ema=*/false);
  file.readWeights(*ema, /*ema=*/true);
  expectSameTensors(*saved.net, *net, "model");
  expectSameTensors(*saved.ema, *ema, "EMA");

  // Optimizer state by parameter name.
  auto optimizer = adamW(*net);
  file.readOptimizer(*net, *optimizer, torch::kCPU);
  auto savedParams = saved.net->named_parameters();
  int64_t states = 0;
  for (const auto &p : net->named_parameters()) {
    auto find = [](torch::optim::AdamW &o, const torch::Tensor &t) {
      auto it = o.state().find(t.unsafeGetTensorImpl());
      return it == o.state().end() ? nullptr
                                   : static_cast<torch::optim::AdamWParamState *>(it->second.get());
    };
    auto *want = find(*saved.optimizer, savedParams[p.key()]);
    auto *got = find(*optimizer, p.value());
    ASSERT_EQ(want == nullptr, got == nullptr) << p.key();
    if (!want)
      continue;
    ++states;
    EXPECT_EQ(got->step(), want->step()) << p.key();
    EXPECT_TRUE(torch::equal(got->exp_avg(), want->exp_avg())) << p.key();
    EXPECT_TRUE(torch::equal(got->exp_avg_sq(), want->exp_avg_sq())) << p.key();
  }
  EXPECT_EQ(states, static_cast<int64_t>(savedParams.size()));

  // Masks in the Masking's order, and its generator: the next update draws
  // the same regrowth.
  checkpoint::Masks masks = file.readMasks(*net);
  ASSERT_EQ(masks.layers.size(), saved.masking.layers().size());
  sparse::Masking masking(*net, uniform(99));
  masking.restore(masks.layers, masks.generator);
  for (size_t i = 0; i < masks.layers.size(); ++i) {
    EXPECT_EQ(masks.layers[i].first, saved.masking.layers()[i].name);
    EXPECT_TRUE(torch::equal(masking.layers()[i].mask, saved.masking.layers()[i].mask));
  }
  EXPECT_TRUE(torch::equal(masking.generatorState(), saved.masking.generatorState()));

  // Generators by rank.
  EXPECT_TRUE(torch::equal(file.cpuGenerator(0), torch::tensor({1, 2, 3}, torch::kUInt8)));
  EXPECT_TRUE(torch::equal(file.cpuGenerator(1), torch::tensor({4, 5, 6}, torch::kUInt8)));
  EXPECT_FALSE(file.cudaGenerator(0).defined());
}

TEST(TrainingCheckpoint, WritingAgainReplacesTheFile) {
  TrainingState saved;
  const fs::path path = freshDir("again") / "checkpoint.pt";
  auto snapshot = saved.snapshot();
  checkpoint::write(path.string(), snapshot);
  snapshot.meta.step = 8;
  snapshot.ema = nullptr;
  snapshot.masking = nullptr;
  checkpoint::write(path.string(), snapshot);
  checkpoint::TrainingCheckpoint file(path.string(), checkpoint::Reader::Tool);
  EXPECT_EQ(file.meta().step, 8);
  EXPECT_FALSE(file.hasEma());
  EXPECT_FALSE(file.hasMasks());
  auto net = model(saved.config, 3);
  EXPECT_TRUE(file.readMasks(*net).layers.empty());
}

TEST(ConfigJson, RecordedConfigRebuildsTheModel) {
  const models::ModelConfig config = smallConfig(0.5);
  const std::string recorded = checkpoint::configJson(config);
  const auto fields = nlohmann::json::parse(recorded);
  EXPECT_EQ(fields["name"], "slak_nano");
  EXPECT_EQ(fields["dims"], nlohmann::json(config.dims()));
  EXPECT_EQ(fields["sparsity"], 0.4);

  // No overrides: everything, the width factor too, comes from the record.
  models::ModelConfig rebuilt = checkpoint::configFromJson(recorded, "", {}, "x.pt");
  EXPECT_EQ(checkpoint::configJson(rebuilt), recorded);
  EXPECT_EQ(rebuilt.widthFactor, 0.5);

  // A record of what is known only (an official checkpoint's shapes).
  const auto known = nlohmann::json::parse(
      checkpoint::configJson(config, checkpoint::kKernelSizes | checkpoint::kStem));
  EXPECT_EQ(known.size(), 8u) << known.dump();
  EXPECT_FALSE(known.contains("sparsity"));
  EXPECT_FALSE(known.contains("num_classes"));
  EXPECT_EQ(known["stem_stride"], config.stemStride);

  // A record without stem_stride has a patchify stem.
  auto old = fields;
  old.erase("stem_stride");
  EXPECT_EQ(checkpoint::upgradeConfigJson(old.dump()), recorded);

  // Overrides that build another model are refused, naming the file.
  models::ModelOverrides wider;
  wider.widthFactor = 1.0;
  const std::string error =
      errorOf([&] { checkpoint::configFromJson(recorded, "", wider, "runs/x/checkpoint.pt"); });
  EXPECT_HAS(error, "runs/x/checkpoint.pt was written for model ");
  EXPECT_HAS(error, "pass the checkpoint's --model and overrides (or none)");
}

TEST(TrainingCheckpoint, RefusalsNameTheFileAndTheFix) {
  const fs::path dir = freshDir("refusals");
  TrainingState saved;
  const fs::path good = dir / "good.pt";
  checkpoint::write(good.string(), saved.snapshot());
  auto open = [](const fs::path &path, checkpoint::Reader reader) {
    return errorOf([&] { checkpoint::TrainingCheckpoint(path.string(), reader); });
  };

  // Missing, a folder, text.
  EXPECT_HAS(open(dir / "none.pt", checkpoint::Reader::Tool),
             "checkpoint " + (dir / "none.pt").string() + ": no such file");
  EXPECT_HAS(open(dir, checkpoint::Reader::Tool), "is a folder, not a checkpoint");
  const fs::path text = dir / "notes.pt";
  std::ofstream(text) << "not a checkpoint\n";
  const std::string textError = open(text, checkpoint::Reader::Resume);
  EXPECT_EQ(textError.rfind("--resume " + text.string() + " ", 0), 0u) << textError;
  EXPECT_HAS(textError, "start afresh without --resume");

  // Damaged after it was written: a flipped byte in the largest record.
  std::ifstream in(good, std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const fs::path damaged = dir / "damaged.pt";
  {
    std::string copy = bytes;
    copy[copy.size() / 2] ^= 0x40;
    std::ofstream(damaged, std::ios::binary) << copy;
  }
  const std::string damagedError = open(damaged, checkpoint::Reader::Tool);
  EXPECT_HAS(damagedError, "checkpoint " + damaged.string() + " is corrupt: record ");
  EXPECT_HAS(damagedError, "write or copy it again");
  EXPECT_HAS(open(damaged, checkpoint::Reader::Resume),
             "--resume " + damaged.string() + " is not an intact checkpoint: record ");

  // Truncated.
  const fs::path truncated = dir / "truncated.pt";
  std::ofstream(truncated, std::ios::binary) << bytes.substr(0, bytes.size() / 2);
  const std::string truncatedError = open(truncated, checkpoint::Reader::Resume);
  EXPECT_EQ(truncatedError.rfind("--resume " + truncated.string() + " ", 0), 0u) << truncatedError;
  EXPECT_HAS(truncatedError, "resume from an intact checkpoint");

  // Weights only (no meta/): a tool loads them, --resume cannot continue.
  const fs::path weightsOnly = dir / "weights.pt";
  {
    torch::serialize::OutputArchive root, weights;
    saved.net->save(weights);
    root.write("model", weights);
    root.save_to(weightsOnly.string());
  }
  EXPECT_EQ(open(weightsOnly, checkpoint::Reader::Tool), "(no error)");
  EXPECT_HAS(open(weightsOnly, checkpoint::Reader::Resume), "has no meta/ record");

  // Another format.
  const fs::path future = dir / "future.pt";
  {
    torch::serialize::OutputArchive root, meta;
    meta.write("format", torch::tensor(int64_t{2}));
    root.write("meta", meta);
    root.save_to(future.string());
  }
  const std::string futureError = open(future, checkpoint::Reader::Tool);
  EXPECT_HAS(futureError, "checkpoint " + future.string() + " is in checkpoint format 2");
  EXPECT_HAS(futureError, "use the slak build that wrote it");

  // Another model: the first misshapen tensor, the recorded model and the flags.
  checkpoint::TrainingCheckpoint file(good.string(), checkpoint::Reader::Tool);
  auto wider = model(smallConfig(0.5), 0);
  const std::string shapeError = errorOf([&] { file.readWeights(*wider, false); });
  EXPECT_HAS(shapeError, "checkpoint " + good.string() + ": model/");
  EXPECT_HAS(shapeError, "in the file,");
  EXPECT_HAS(shapeError, "pass the same --model, overrides and --lk-backend as the training run");
  EXPECT_HAS(errorOf([&] { file.readMasks(*wider); }), "has shape");
}

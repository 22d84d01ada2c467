// Multi-process data parallel training: slak-train --nproc 2 on this machine
// over loopback (Gloo), on the synthetic data with a tiny slak_nano run.
//   (a) after training both ranks hold identical weights, buffers and masks
//       (rank 1's state from --checkpoint-all-ranks), masks having moved;
//   (b) with per-sample layers only (no branch BN, drop path 0) two ranks of
//       batch B equal one process of batch 2B within float tolerance;
//   (c) a stopped and resumed two-rank run ends bit-identical to a straight one
//       (per-rank drop-path generators restored);
//   (d) a failing rank stops the other promptly and its exit code comes back;
//       an impossible rank set is refused with a message.
#include "models/train/Distributed.h"
#include "models/Models.h"
#include "models/checkpoint/TrainingCheckpoint.h"
#include "models/sparse/Masking.h"
#include "tests/models/TestSupport.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include <sys/wait.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

namespace {

using namespace slak;
namespace fs = std::filesystem;

fs::path freshDir(const std::string &name) {
  auto dir =
      fs::temp_directory_path() / ("slak-dist-test-" + name + "-" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

struct RunResult {
  int exitCode = -1;
  std::string output;
  double seconds = 0;
};

/// Runs slak-train with `args`; stdout and stderr go to <dir>/<name>.out.
RunResult slakTrain(const fs::path &dir, const std::string &name, const std::string &args) {
  const auto out = dir / (name + ".out");
  const std::string command =
      std::string(SLAK_TRAIN_PATH) + " " + args + " > " + out.string() + " 2>&1";
  auto t0 = std::chrono::steady_clock::now();
  int status = std::system(command.c_str());
  RunResult r;
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  r.exitCode = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  std::ifstream in(out);
  std::stringstream ss;
  ss << in.rdbuf();
  r.output = ss.str();
  return r;
}

/// The common run: slak_nano, 64 synthetic images, the LibTorch branches
/// (fast to start; the runtime's tap tables follow the same masks), one thread
/// per rank.
std::string common(const fs::path &dir, const std::string &extra) {
  return "--model slak_nano --dataset synthetic --synthetic-train 64 --synthetic-test 32 "
         "--epochs 2 --lk-backend torch --threads 1 --no-progress --out-dir " +
         dir.string() + " " + extra;
}

/// A checkpoint's model and masks, loaded into a fresh slak_nano.
struct State {
  std::shared_ptr<models::Classifier> model;
  std::unique_ptr<sparse::Masking> masking;
};

State loadState(const fs::path &path, bool branchBn) {
  models::ModelOverrides ov;
  ov.inChannels = 1;
  ov.numClasses = 10;
  ov.branchBatchNorm = branchBn;
  ov.backend = models::parseLkBackend("torch");
  State s;
  s.model = models::createModel(models::modelConfig("slak_nano", ov));
  checkpoint::TrainingCheckpoint file(path.string(), checkpoint::Reader::Tool);
  file.readWeights(*s.model, /*ema=*/false);
  auto masks = file.readMasks(*s.model);
  s.masking = std::make_unique<sparse::Masking>(*s.model, sparse::Options{});
  s.masking->restore(masks.layers, masks.generator);
  return s;
}

void expectIdentical(const State &a, const State &b) {
  tests::expectSameTensors(*a.model, *b.model, "model");
  const auto &ma = a.masking->layers(), &mb = b.masking->layers();
  ASSERT_EQ(ma.size(), mb.size());
  for (size_t i = 0; i < ma.size(); ++i)
    EXPECT_TRUE(torch::equal(ma[i].mask, mb[i].mask)) << "mask " << ma[i].name;
}

std::vector<nlohmann::json> logRecords(const fs::path &dir, const std::string &event) {
  std::vector<nlohmann::json> out;
  std::ifstream in(dir / "log.jsonl");
  for (std::string line; std::getline(in, line);) {
    auto j = nlohmann::json::parse(line);
    if (j.value("event", "") == event)
      out.push_back(j);
  }
  return out;
}

bool haveGloo() {
  if (train::distributedAvailable())
    return true;
  std::cout << "[SKIP] built without Gloo's headers (apt-get install libgloo-dev)\n";
  return false;
}

TEST(Distributed, TwoRanksHoldIdenticalWeightsAndMasks) {
  if (!haveGloo())
    GTEST_SKIP();
  auto dir = freshDir("identical");
  // BN per rank, drop path per rank, gradient regrowth every 2 steps.
  auto r = slakTrain(dir, "run",
                     common(dir, "--nproc 2 --batch-size 8 --drop-path 0.2 --growth gradient "
                                 "--update-frequency 2 --checkpoint-all-ranks"));
  ASSERT_EQ(r.exitCode, 0) << r.output;
  auto a = loadState(dir / "checkpoint.pt", true);
  auto b = loadState(dir / "checkpoint.pt.rank1", true);
  expectIdentical(a, b);

  // Rank 0 alone logs: one start record, saying two ranks over Gloo.
  auto starts = logRecords(dir, "start");
  ASSERT_EQ(starts.size(), 1u);
  EXPECT_EQ(starts[0]["ranks"], 2);
  EXPECT_EQ(starts[0]["process_group"], "gloo");
  EXPECT_EQ(starts[0]["global_batch"], 16);
  EXPECT_EQ(logRecords(dir, "epoch").size(), 2u);
  // 64 images / (8 x 2 ranks) = 4 steps per epoch: updates at 2, 4, 6, 8,
  // and they moved weights (so the identity above is not trivial).
  auto updates = logRecords(dir, "mask_update");
  ASSERT_EQ(updates.size(), 4u);
  EXPECT_GT(updates[0]["regrown"].get<int64_t>(), 0);
}

TEST(Distributed, TwoRanksEqualOneProcessWithTwiceTheBatch) {
  if (!haveGloo())
    GTEST_SKIP();
  auto dir2 = freshDir("two-ranks"), dir1 = freshDir("one-process");
  const std::string flags = "--branch-bn false --drop-path 0 --sparse-init uniform "
                            "--growth gradient --update-frequency 3";
  auto r2 = slakTrain(dir2, "run", common(dir2, flags + " --nproc 2 --batch-size 8"));
  ASSERT_EQ(r2.exitCode, 0) << r2.output;
  auto r1 = slakTrain(dir1, "run", common(dir1, flags + " --batch-size 16"));
  ASSERT_EQ(r1.exitCode, 0) << r1.output;

  auto a = loadState(dir2 / "checkpoint.pt", false);
  auto b = loadState(dir1 / "checkpoint.pt", false);
  auto pb = b.model->named_parameters();
  for (const auto &p : a.model->named_parameters()) {
    const auto &q = pb[p.key()];
    EXPECT_TRUE(torch::allclose(p.value(), q, 1e-4, 1e-5))
        << p.key() << ": max |diff| " << (p.value() - q).abs().max().item<double>();
  }
  const auto &ma = a.masking->layers(), &mb = b.masking->layers();
  ASSERT_EQ(ma.size(), mb.size());
  for (size_t i = 0; i < ma.size(); ++i)
    EXPECT_TRUE(torch::equal(ma[i].mask, mb[i].mask)) << "mask " << ma[i].name;

  // Global metrics: the same losses, accuracies and test results.
  auto ea = logRecords(dir2, "epoch"), eb = logRecords(dir1, "epoch");
  ASSERT_EQ(ea.size(), 2u);
  ASSERT_EQ(eb.size(), 2u);
  for (size_t e = 0; e < 2; ++e) {
    EXPECT_NEAR(ea[e]["train_loss"].get<double>(), eb[e]["train_loss"].get<double>(), 1e-5);
    EXPECT_EQ(ea[e]["train_acc"], eb[e]["train_acc"]);
    EXPECT_NEAR(ea[e]["test_loss"].get<double>(), eb[e]["test_loss"].get<double>(), 1e-5);
    EXPECT_EQ(ea[e]["test_acc"], eb[e]["test_acc"]);
  }
  EXPECT_EQ(logRecords(dir2, "mask_update").size(), logRecords(dir1, "mask_update").size());
}

TEST(Distributed, StopAndResumeGivesIdenticalFinalState) {
  if (!haveGloo())
    GTEST_SKIP();
  auto dirA = freshDir("straight"), dirB = freshDir("resumed");
  // Drop path and BN: per-rank generator states and rank 0's running stats
  // must come back from the checkpoint.
  const std::string flags = "--nproc 2 --batch-size 8 --drop-path 0.3 --update-frequency 3 "
                            "--checkpoint-all-ranks";
  auto straight = slakTrain(dirA, "run", common(dirA, flags));
  ASSERT_EQ(straight.exitCode, 0) << straight.output;
  auto first = slakTrain(dirB, "first", common(dirB, flags + " --max-steps 5"));
  ASSERT_EQ(first.exitCode, 0) << first.output;
  auto second = slakTrain(dirB, "second",
                          common(dirB, flags + " --resume " + (dirB / "checkpoint.pt").string()));
  ASSERT_EQ(second.exitCode, 0) << second.output;
  expectIdentical(loadState(dirA / "checkpoint.pt", true), loadState(dirB / "checkpoint.pt", true));
  expectIdentical(loadState(dirA / "checkpoint.pt.rank1", true),
                  loadState(dirB / "checkpoint.pt.rank1", true));

  // A two-rank checkpoint does not resume in one process.
  auto single = slakTrain(
      dirB, "single", common(dirB, "--batch-size 8 --resume " + (dirB / "checkpoint.pt").string()));
  EXPECT_EQ(single.exitCode, 1);
  EXPECT_NE(single.output.find("resume with --nproc 2"), std::string::npos) << single.output;
}

TEST(Distributed, FailingRankStopsTheOthers) {
  if (!haveGloo())
    GTEST_SKIP();
  auto dir = freshDir("failing");
  // Rank 1 cannot write its checkpoint at the first epoch end; rank 0 then
  // waits in the next allreduce until the launcher stops it.
  fs::create_directories(dir / "checkpoint.pt.rank1.tmp" / "blocker");
  auto r = slakTrain(dir, "run",
                     common(dir, "--nproc 2 --batch-size 8 --checkpoint-all-ranks "
                                 "--dist-timeout 300"));
  EXPECT_EQ(r.exitCode, 1) << r.output;
  EXPECT_NE(r.output.find("slak-train (rank 1): error: cannot write the checkpoint"),
            std::string::npos)
      << r.output;
  // Rank 1 fails first; rank 0 may see the closed connection and exit before
  // the launcher reaps rank 1, so either rank can be the one reported.
  EXPECT_NE(r.output.find("exited with code 1; stopping the other 1 rank(s)"), std::string::npos)
      << r.output;
  EXPECT_LT(r.seconds, 120.0) << "rank 0 was not stopped; it waited for the timeout";

  auto bad = slakTrain(dir, "bad", common(dir, "--batch-size 8 --world-size 2 --rank 5"));
  EXPECT_EQ(bad.exitCode, 1);
  EXPECT_NE(bad.output.find("rank 5 is outside [0, 2)"), std::string::npos) << bad.output;
}

} // namespace

// Helpers shared by the model, checkpoint and analysis tests: a fresh
// temporary folder per test, a tensor-by-tensor comparison of two modules and
// one intra-op thread.
#pragma once

#include "models/train/Trainer.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <unistd.h>

#include <filesystem>
#include <string>

namespace slak::tests {

/// <tmp>/<suite>-<pid>/<name>, empty.
inline std::filesystem::path freshDir(const std::string &suite, const std::string &name) {
  auto dir =
      std::filesystem::temp_directory_path() / (suite + "-" + std::to_string(::getpid())) / name;
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir;
}

/// Every parameter and buffer of `a` equals `b`'s of the same name, bit for bit.
inline void expectSameTensors(torch::nn::Module &a, torch::nn::Module &b, const std::string &what) {
  auto pa = a.named_parameters(), pb = b.named_parameters();
  ASSERT_EQ(pa.size(), pb.size());
  for (const auto &p : pa)
    EXPECT_TRUE(torch::equal(p.value(), pb[p.key()])) << what << " parameter " << p.key();
  auto ba = a.named_buffers(), bb = b.named_buffers();
  for (const auto &p : ba)
    EXPECT_TRUE(torch::equal(p.value(), bb[p.key()])) << what << " buffer " << p.key();
}

/// A small run: slak_nano at width 0.25 (dims 8, 16, 32), LibTorch large
/// kernels, synthetic 16x16 images, written to `dir`; callers set the sizes,
/// epochs and what they test.
inline train::TrainOptions tinySyntheticRun(const std::string &dir) {
  train::TrainOptions o;
  o.model = "slak_nano";
  o.overrides.widthFactor = 0.25;
  o.overrides.backend = models::LkBackend::Torch;
  o.dataset = "synthetic";
  o.synthetic.height = o.synthetic.width = 16;
  o.outDir = dir;
  return o;
}

/// One intra-op thread for every test of the binary that includes this:
/// ctest runs the cases in parallel on 2 cores.
[[maybe_unused]] static const bool kOneIntraOpThread = [] {
  at::set_num_threads(1);
  return true;
}();

} // namespace slak::tests

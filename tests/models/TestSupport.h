// Helpers shared by the model, checkpoint and analysis tests: a fresh
// temporary folder per test, a tensor-by-tensor comparison of two modules and
// one intra-op thread.
#pragma once

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

/// One intra-op thread for every test of the binary that includes this:
/// ctest runs the cases in parallel on 2 cores.
[[maybe_unused]] static const bool kOneIntraOpThread = [] {
  at::set_num_threads(1);
  return true;
}();

} // namespace slak::tests

// slak::sumOfNormedBranches: the fused CPU path (one autograd function over
// all branches) against LibTorch's BatchNorm2d modules plus adds, on both
// layouts the op writes (every branch channels-last, every branch NCHW),
// forward, the gradients of y, gamma and beta, and the running statistics.
#include "runtime/LKConv2d.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <string>
#include <vector>

namespace {

void expectClose(const torch::Tensor &got, const torch::Tensor &want, const std::string &what,
                 double tolerance = 2e-5) {
  ASSERT_TRUE(got.defined()) << what;
  ASSERT_EQ(got.sizes(), want.sizes()) << what;
  const double scale = want.abs().max().item<double>() + 1e-6;
  const double err = (got - want).abs().max().item<double>();
  EXPECT_LE(err, tolerance * scale) << what << ": max |error| " << err << ", max |value| " << scale;
}

struct Case {
  std::string name;
  int64_t branches, n, c, h, w;
  bool channelsLast;
  std::optional<double> momentum;
};

std::vector<torch::nn::BatchNorm2d> makeNorms(const Case &k, int seed) {
  torch::manual_seed(seed);
  std::vector<torch::nn::BatchNorm2d> norms;
  for (int64_t b = 0; b < k.branches; ++b) {
    auto options = torch::nn::BatchNormOptions(k.c);
    options.momentum(k.momentum);
    torch::nn::BatchNorm2d norm(options);
    torch::NoGradGuard noGrad;
    norm->weight.uniform_(0.5, 1.5);
    norm->bias.uniform_(-1, 1);
    norm->running_mean.uniform_(-0.2, 0.2);
    norm->running_var.uniform_(0.8, 1.2);
    norm->num_batches_tracked.fill_(b + 2);
    norm->train();
    norms.push_back(norm);
  }
  return norms;
}

/// Per-branch outputs in the layout lk_conv writes: [B, N, C, H, W] with
/// each branch channels-last (memory B, N, H, W, C) or NCHW.
torch::Tensor makeBranchOutputs(const Case &k) {
  torch::manual_seed(11);
  if (k.channelsLast)
    return (torch::randn({k.branches, k.n, k.h, k.w, k.c}) * 2 + 0.5).permute({0, 1, 4, 2, 3});
  return torch::randn({k.branches, k.n, k.c, k.h, k.w}) * 2 + 0.5;
}

class BranchNormCases : public ::testing::TestWithParam<Case> {};

TEST_P(BranchNormCases, FusedMatchesBatchNormModules) {
  const Case &k = GetParam();
  auto fused = makeNorms(k, 5), modules = makeNorms(k, 5);
  auto y = makeBranchOutputs(k).requires_grad_(true);
  auto yRef = y.detach().clone().requires_grad_(true);

  auto out = slak::sumOfNormedBranches(y, fused);
  torch::Tensor want;
  for (int64_t b = 0; b < k.branches; ++b) {
    auto normed = modules[b]->forward(yRef.select(0, b));
    want = want.defined() ? want + normed : normed;
  }
  expectClose(out, want, k.name + " forward");
  if (k.channelsLast) {
    EXPECT_TRUE(out.is_contiguous(torch::MemoryFormat::ChannelsLast)) << k.name;
  }

  // A non-uniform upstream gradient (a uniform one has zero dy).
  torch::manual_seed(13);
  auto probe = torch::randn(out.sizes());
  std::vector<torch::Tensor> inputs = {y}, inputsRef = {yRef};
  for (int64_t b = 0; b < k.branches; ++b) {
    inputs.push_back(fused[b]->weight);
    inputs.push_back(fused[b]->bias);
    inputsRef.push_back(modules[b]->weight);
    inputsRef.push_back(modules[b]->bias);
  }
  auto grads = torch::autograd::grad({(out * probe).sum()}, inputs);
  auto gradsRef = torch::autograd::grad({(want * probe).sum()}, inputsRef);
  expectClose(grads[0], gradsRef[0], k.name + " dy", 1e-4);
  for (size_t i = 1; i < grads.size(); ++i)
    expectClose(grads[i], gradsRef[i], k.name + " d" + (i % 2 ? "gamma" : "beta"), 1e-4);

  for (int64_t b = 0; b < k.branches; ++b) {
    expectClose(fused[b]->running_mean, modules[b]->running_mean, k.name + " running mean");
    expectClose(fused[b]->running_var, modules[b]->running_var, k.name + " running var");
    EXPECT_EQ(fused[b]->num_batches_tracked.item<int64_t>(),
              modules[b]->num_batches_tracked.item<int64_t>())
        << k.name;
  }
}

INSTANTIATE_TEST_SUITE_P(
    Layouts, BranchNormCases,
    ::testing::Values(Case{"channels_last_three", 3, 4, 19, 7, 7, true, 0.1},
                      Case{"nchw_three", 3, 2, 5, 9, 11, false, 0.1},
                      Case{"channels_last_two_wide", 2, 2, 40, 6, 5, true, 0.3},
                      Case{"cumulative_average", 3, 3, 8, 4, 4, true, std::nullopt},
                      Case{"one_image_one_row", 3, 1, 6, 1, 5, false, 0.1}),
    [](const auto &info) { return info.param.name; });

TEST(BranchNorm, EvalModulesUseTheirRunningStatistics) {
  Case k{"eval", 3, 2, 6, 5, 5, true, 0.1};
  auto norms = makeNorms(k, 3);
  auto y = makeBranchOutputs(k);
  for (auto &n : norms)
    n->eval();
  auto out = slak::sumOfNormedBranches(y, norms);
  torch::Tensor want;
  for (int64_t b = 0; b < k.branches; ++b) {
    auto normed = (y.select(0, b) - norms[b]->running_mean.view({1, -1, 1, 1})) /
                      torch::sqrt(norms[b]->running_var.view({1, -1, 1, 1}) + 1e-5) *
                      norms[b]->weight.view({1, -1, 1, 1}) +
                  norms[b]->bias.view({1, -1, 1, 1});
    want = want.defined() ? want + normed : normed;
  }
  expectClose(out.detach(), want.detach(), "eval");
}

TEST(BranchNorm, WrongBranchCountNamesTheShape) {
  Case k{"count", 3, 1, 4, 3, 3, false, 0.1};
  auto norms = makeNorms(k, 1);
  norms.pop_back();
  try {
    slak::sumOfNormedBranches(makeBranchOutputs(k), norms);
    FAIL() << "three branch outputs with two BatchNorms were accepted";
  } catch (const c10::Error &e) {
    EXPECT_NE(std::string(e.what()).find("for 2 BatchNorms"), std::string::npos) << e.what();
  }
}

} // namespace

// slak::LKConv2d: training (per-branch outputs + BatchNorm + sum) against
// LibTorch conv2d + batch_norm with autograd; eval (folded BatchNorms, the
// small kernel merged) equals the training-mode math with running
// statistics; the fold is the --slak-fuse-lk=mode=infer math and is cached
// until weights, statistics or masks change; mask updates re-upload tap
// tables without recompiling unless the kernel spec changes.
#include <gtest/gtest.h>

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>
#include <torch/autograd.h>

#include "runtime/LKConv2d.h"
#include "runtime/LayerTaps.h"
#include "runtime/LkConvBackend.h"
#include "tests/runtime/RuntimeTestSupport.h"

namespace slak::testing {
namespace {

using runtime::BackendKind;

at::Tensor rand(at::IntArrayRef shape) { return at::rand(shape, at::kFloat) * 2 - 1; }

/// A small SLaK block: 9x3 + 3x9 + 3x3 on 5 channels, masked strips.
LKConv2d makeBlock(const std::string &backend, bool bn = true, bool bias = false) {
  at::manual_seed(11);
  LKConv2d block(LKConv2dOptions(5, 9).width(3).small_kernel(3).bn(bn).bias(bias).backend(backend));
  const auto w = block->branch_weights();
  block->set_masks({randomMask(w[0], 0.5, 1), randomMask(w[1], 0.6, 2), at::Tensor()});
  // Non-trivial BatchNorm affine parameters.
  at::NoGradGuard noGrad;
  for (auto &norm : block->branch_norms()) {
    norm->weight.uniform_(0.5, 1.5);
    norm->bias.uniform_(-0.5, 0.5);
  }
  if (bias)
    block->named_parameters()["bias"].uniform_(-0.5, 0.5);
  return block;
}

/// The block's math in LibTorch (double): per-branch conv2d of the masked
/// weights, then batch_norm (training: batch statistics and running-stat
/// updates on the given copies; eval: running statistics), then the sum.
at::Tensor torchBlock(LKConv2d &block, const at::Tensor &x, bool training,
                      std::vector<at::Tensor> &runningMean, std::vector<at::Tensor> &runningVar,
                      std::vector<at::Tensor> *weightLeaves = nullptr) {
  const auto weights = block->branch_weights();
  const auto norms = block->branch_norms();
  at::Tensor sum;
  for (size_t b = 0; b < weights.size(); ++b) {
    at::Tensor w = weights[b].detach().to(at::kCPU, at::kDouble);
    if (weightLeaves) {
      w.requires_grad_(true);
      weightLeaves->push_back(w);
    }
    const at::Tensor &mask = block->masks()[b];
    const at::Tensor effective = mask.defined() ? w * mask.to(at::kDouble) : w;
    at::Tensor y =
        at::conv2d(x, effective, {}, {1, 1}, {w.size(2) / 2, w.size(3) / 2}, {1, 1}, x.size(1));
    if (!norms.empty()) {
      const auto &n = norms[b];
      y = at::batch_norm(y, n->weight.detach().to(at::kCPU, at::kDouble),
                         n->bias.detach().to(at::kCPU, at::kDouble), runningMean[b], runningVar[b],
                         training, n->options.momentum().value(), n->options.eps(), false);
    }
    sum = sum.defined() ? sum + y : y;
  }
  const auto params = block->named_parameters();
  if (params.contains("bias"))
    sum = sum + params["bias"].detach().to(at::kCPU, at::kDouble).view({1, -1, 1, 1});
  return sum;
}

void copyStats(LKConv2d &block, std::vector<at::Tensor> &mean, std::vector<at::Tensor> &var) {
  mean.clear();
  var.clear();
  for (auto &n : block->branch_norms()) {
    mean.push_back(n->running_mean.detach().to(at::kCPU, at::kDouble).clone());
    var.push_back(n->running_var.detach().to(at::kCPU, at::kDouble).clone());
  }
}

class LKConv2dTest : public ::testing::TestWithParam<BackendKind> {
protected:
  void SetUp() override {
    if (!backendAvailable(GetParam()))
      GTEST_SKIP() << "backend not available";
  }
  std::string backend() const { return runtime::backendKindName(GetParam()); }
  at::Device device() const { return deviceOf(GetParam()); }
};

TEST_P(LKConv2dTest, TrainingMatchesConvPlusBatchNormWithAutograd) {
  LKConv2d block = makeBlock(backend());
  block->to(device());
  block->train();
  at::manual_seed(12);
  const at::Tensor x = rand({3, 5, 10, 12});
  std::vector<at::Tensor> mean, var;
  copyStats(block, mean, var);
  const at::Tensor xd = x.to(at::kDouble).requires_grad_(true);
  std::vector<at::Tensor> leaves;
  const at::Tensor ref = torchBlock(block, xd, true, mean, var, &leaves);

  const at::Tensor xg = x.to(device()).requires_grad_(true);
  const at::Tensor y = block->forward(xg);
  expectClose(y, ref, 1e-4, "training forward");
  const at::Tensor dy = rand(y.sizes());
  y.backward(dy.to(device()));
  const auto grads = torch::autograd::grad({ref}, {xd}, {dy.to(at::kDouble)}, true);
  expectClose(xg.grad(), grads[0], 1e-4, "dx");
  const auto weights = block->branch_weights();
  for (size_t b = 0; b < weights.size(); ++b) {
    const auto dw = torch::autograd::grad({ref}, {leaves[b]}, {dy.to(at::kDouble)}, true);
    expectClose(weights[b].grad(), dw[0], 1e-4, "dW[" + std::to_string(b) + "]");
  }
  // BatchNorm parameters get gradients and the running statistics moved like torch's.
  for (size_t b = 0; b < weights.size(); ++b) {
    EXPECT_TRUE(block->branch_norms()[b]->weight.grad().defined());
    expectClose(block->branch_norms()[b]->running_mean, mean[b], 1e-5, "running mean");
    expectClose(block->branch_norms()[b]->running_var, var[b], 1e-5, "running var");
  }
}

TEST_P(LKConv2dTest, EvalEqualsTrainingMathWithRunningStatistics) {
  LKConv2d block = makeBlock(backend());
  block->to(device());
  block->train();
  at::manual_seed(13);
  for (int step = 0; step < 3; ++step)
    block->forward(rand({2, 5, 10, 12}).to(device()) * (step + 1));
  block->eval();
  const at::Tensor x = rand({2, 5, 10, 12});
  std::vector<at::Tensor> mean, var;
  copyStats(block, mean, var);
  const at::Tensor ref = torchBlock(block, x.to(at::kDouble), false, mean, var);
  at::NoGradGuard noGrad;
  const at::Tensor y = block->forward(x.to(device()));
  expectClose(y, ref, 1e-4, "eval forward");
  // Eval runs one summed op: two surviving branches, the 3x3 merged.
  EXPECT_EQ(block->folded().weights.size(), 2u);
}

TEST_P(LKConv2dTest, WithoutBatchNormEvalEqualsTraining) {
  LKConv2d block = makeBlock(backend(), /*bn=*/false, /*bias=*/true);
  block->to(device());
  at::manual_seed(14);
  const at::Tensor x = rand({1, 5, 6, 7}).to(device()); // kernels larger than the image
  at::NoGradGuard noGrad;
  block->train();
  const at::Tensor train = block->forward(x);
  block->eval();
  const at::Tensor eval = block->forward(x);
  expectClose(eval, train, 1e-5, "bn=false eval vs train");
  std::vector<at::Tensor> none;
  expectClose(train, torchBlock(block, x.cpu().to(at::kDouble), true, none, none), 1e-4,
              "bn=false vs torch");
}

INSTANTIATE_TEST_SUITE_P(Backends, LKConv2dTest,
                         ::testing::Values(BackendKind::Cpu, BackendKind::OpenCL,
                                           BackendKind::Cuda),
                         [](const ::testing::TestParamInfo<BackendKind> &info) {
                           return std::string(runtime::backendKindName(info.param));
                         });

TEST(LKConv2dFoldTest, FoldIsTheFuseLkInferMath) {
  LKConv2d block = makeBlock("cpu");
  {
    at::NoGradGuard noGrad;
    for (auto &n : block->branch_norms()) {
      n->running_mean.uniform_(-0.3, 0.3);
      n->running_var.uniform_(0.5, 2.0);
    }
  }
  block->eval();
  at::NoGradGuard noGrad;
  const FoldedLKConv f = block->folded();
  const auto w = block->branch_weights();
  const auto norms = block->branch_norms();
  auto scale = [&](size_t b) {
    const auto &n = norms[b];
    return (n->weight.to(at::kDouble) / at::sqrt(n->running_var.to(at::kDouble) + 1e-5))
        .view({5, 1, 1, 1});
  };
  auto shift = [&](size_t b) {
    const auto &n = norms[b];
    return n->bias.to(at::kDouble) - n->running_mean.to(at::kDouble) * scale(b).view({5});
  };
  // W' = W * mask * g / sqrt(v + eps); the 3x3 zero-padded into the 9x3 centre.
  at::Tensor expected0 = w[0].to(at::kDouble) * block->masks()[0].to(at::kDouble) * scale(0);
  expected0.narrow(2, 3, 3).add_(w[2].to(at::kDouble) * scale(2));
  const at::Tensor expected1 = w[1].to(at::kDouble) * block->masks()[1].to(at::kDouble) * scale(1);
  ASSERT_EQ(f.weights.size(), 2u);
  expectClose(f.weights[0], expected0, 1e-6, "folded lora1 + small");
  expectClose(f.weights[1], expected1, 1e-6, "folded lora2");
  expectClose(f.bias, shift(0) + shift(1) + shift(2), 1e-6, "folded bias");
  // The merged mask is the union: the dense 3x3 window is live in lora1.
  ASSERT_TRUE(f.masks[0].defined());
  EXPECT_EQ(f.masks[0].narrow(2, 3, 3).min().item<int>(), 1);
  EXPECT_TRUE(f.masks[0].narrow(2, 0, 3).equal(block->masks()[0].narrow(2, 0, 3)));
  EXPECT_EQ(f.paddings, (std::vector<std::pair<int64_t, int64_t>>{{4, 1}, {1, 4}}));
}

TEST(LKConv2dFoldTest, FoldIsCachedUntilWeightsStatisticsOrMasksChange) {
  LKConv2d block = makeBlock("cpu");
  block->eval();
  at::NoGradGuard noGrad;
  const FoldedLKConv a = block->folded();
  const FoldedLKConv b = block->folded();
  EXPECT_TRUE(a.weights[0].is_same(b.weights[0])) << "unchanged state: cached";
  EXPECT_EQ(a.taps.get(), b.taps.get());

  block->branch_weights()[1].add_(0.25); // an optimizer step
  const FoldedLKConv c = block->folded();
  EXPECT_FALSE(c.weights[1].is_same(a.weights[1]));
  EXPECT_FALSE(c.weights[1].equal(a.weights[1]));
  EXPECT_EQ(c.taps.get(), a.taps.get()) << "same masks: the merged taps stay";

  block->branch_norms()[0]->running_var.mul_(2); // statistics moved
  const FoldedLKConv d = block->folded();
  EXPECT_FALSE(d.weights[0].equal(c.weights[0]));

  const auto w = block->branch_weights();
  block->set_masks({randomMask(w[0], 0.2, 7), at::Tensor(), at::Tensor()});
  const FoldedLKConv e = block->folded();
  EXPECT_NE(e.taps.get(), d.taps.get()) << "new masks: new taps";
  EXPECT_FALSE(e.weights[0].equal(d.weights[0]));
  EXPECT_FALSE(e.masks[1].defined()) << "lora2 is dense now";
}

TEST(LKConv2dFoldTest, EvalGradientsFlowThroughTheFold) {
  LKConv2d block = makeBlock("cpu");
  block->eval();
  at::manual_seed(15);
  const at::Tensor x = rand({1, 5, 8, 8});
  std::vector<at::Tensor> mean, var;
  copyStats(block, mean, var);
  std::vector<at::Tensor> leaves;
  const at::Tensor ref = torchBlock(block, x.to(at::kDouble), false, mean, var, &leaves);
  const at::Tensor y = block->forward(x);
  expectClose(y, ref, 1e-4, "eval forward with grad");
  y.sum().backward();
  for (size_t b = 0; b < leaves.size(); ++b) {
    const auto dw = torch::autograd::grad({ref.sum()}, {leaves[b]}, {}, true);
    expectClose(block->branch_weights()[b].grad(), dw[0], 1e-4,
                "eval dW[" + std::to_string(b) + "]");
  }
  EXPECT_TRUE(block->branch_norms()[0]->weight.grad().defined());
}

TEST(LKConv2dMaskTest, MaskUpdatesReuploadWithoutRecompiling) {
  if (!backendAvailable(BackendKind::OpenCL))
    GTEST_SKIP() << "no OpenCL device";
  LKConv2d block = makeBlock("opencl");
  block->train();
  at::manual_seed(16);
  const at::Tensor x = rand({1, 5, 10, 12});
  const auto w = block->branch_weights();
  at::NoGradGuard noGrad;
  block->forward(x);
  const auto before = runtime::runtimeStats();
  // Same densities, other taps: new tables, same kernels.
  block->set_masks({randomMask(w[0], 0.5, 21), randomMask(w[1], 0.6, 22), at::Tensor()});
  std::vector<at::Tensor> mean, var;
  copyStats(block, mean, var);
  const at::Tensor ref = torchBlock(block, x.to(at::kDouble), true, mean, var);
  const at::Tensor y = block->forward(x);
  const auto after = runtime::runtimeStats();
  EXPECT_EQ(after.kernelsBuilt, before.kernelsBuilt) << "a mask update recompiled";
  EXPECT_EQ(after.tapUploads, before.tapUploads + 1) << "the new taps were not uploaded";
  expectClose(y, ref, 1e-4, "forward with the new masks");
  // Dense strips change the spec (no tap table): that compiles once.
  block->set_masks({});
  block->forward(x);
  EXPECT_EQ(runtime::runtimeStats().kernelsBuilt, after.kernelsBuilt + 1);
}

TEST(LKConv2dMaskTest, ErrorsNameTheMaskAndTheOption) {
  LKConv2d block(LKConv2dOptions(4, 7).width(3).small_kernel(0));
  EXPECT_EQ(block->num_branches(), 2);
  auto has = [](const std::string &message, const std::string &part) {
    EXPECT_NE(message.find(part), std::string::npos) << message;
  };
  has(errorOf([&] {
        block->set_masks({at::ones({4, 1, 3, 7}), at::Tensor()});
      }),
      "mask for lora1 (branch 0) has shape [4, 1, 3, 7], expected [4, 1, 7, 3]");
  has(errorOf([&] { block->set_masks({at::Tensor()}); }), "1 masks, expected 2");
  has(errorOf([&] { LKConv2d(LKConv2dOptions(4, 8)); }), "kernel_size is 8");
  has(errorOf([&] { LKConv2d(LKConv2dOptions(4, 7).bias(true)); }), "bias=true needs bn=false");
  has(errorOf([&] {
        block->forward(at::zeros({1, 3, 8, 8}));
      }),
      "weights[0] has 4 channels (shape [4, 1, 7, 3]), expected 3");
}

} // namespace
} // namespace slak::testing

// The oracle against LibTorch: each branch is torch::conv2d(x, W_b * mask_b,
// padding (padH, padW), groups = C) in double; forward, dx, dW (masked and
// dense) and dbias come from torch autograd.
#include "codegen/reference/Reference.h"
#include "tests/reference/LayerCases.h"

#include <ATen/Parallel.h>
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <gtest/gtest.h>
#include <ostream>
#include <random>
#include <string>
#include <torch/types.h>
#include <vector>

namespace slak::reference {
namespace {

using codegen::Branch;
using codegen::BranchMask;
using codegen::KernelSpec;

torch::Tensor toTorch(const std::vector<float> &v, std::vector<int64_t> shape) {
  return torch::from_blob(const_cast<float *>(v.data()), shape, torch::kFloat)
      .to(torch::kDouble); // a copy
}

torch::Tensor maskToTorch(const BranchMask &m, int64_t channels, const Branch &b) {
  if (m.empty())
    return torch::ones({channels, 1, b.kernelH, b.kernelW}, torch::kDouble);
  std::vector<float> live(m.begin(), m.end());
  for (float &e : live)
    e = e != 0.0f ? 1.0f : 0.0f;
  return toTorch(live, {channels, 1, b.kernelH, b.kernelW});
}

// |ours - torch| <= tol * (1 + |torch|) everywhere; ours is a double sum rounded
// to float, torch's is a double sum, so they agree to float precision.
void expectClose(const std::vector<float> &ours, const torch::Tensor &theirs,
                 const std::string &what) {
  torch::Tensor t = theirs.detach().contiguous().to(torch::kDouble).flatten();
  ASSERT_EQ(static_cast<int64_t>(ours.size()), t.numel()) << what;
  const double *p = t.data_ptr<double>();
  constexpr double kTolerance = 1e-5;
  for (size_t k = 0; k < ours.size(); ++k)
    ASSERT_NEAR(ours[k], p[k], kTolerance * (1.0 + std::abs(p[k])))
        << what << " at flat index " << k;
}

class ReferenceVsTorch : public ::testing::TestWithParam<LayerCase> {
protected:
  static void SetUpTestSuite() { at::set_num_threads(2); }
};

TEST_P(ReferenceVsTorch, ForwardAndBothBackwards) {
  const LayerCase &c = GetParam();
  std::mt19937 rng(seedOf(c.name));
  KernelSpec spec;
  spec.channels = c.in.c;
  spec.branches = c.branches;
  spec.perBranchOutputs = c.perBranchOutputs;
  spec.hasBias = c.hasBias;
  ASSERT_EQ(spec.validate(), "");
  const Shape in = c.in;
  const Shape out{in.n, in.c, spec.outHeight(in.h), spec.outWidth(in.w)};
  const size_t numBranches = spec.branches.size();

  const std::vector<float> x = uniform(rng, in.numel());
  Weights weights;
  std::vector<BranchMask> masks;
  for (size_t b = 0; b < numBranches; ++b) {
    const Branch &br = spec.branches[b];
    weights.push_back(uniform(rng, in.c * br.windowSize()));
    const bool masked = c.density < 1.0 && b + 1 < numBranches;
    masks.push_back(masked ? randomMask(rng, in.c * br.windowSize(), c.density) : BranchMask{});
  }
  const std::vector<float> bias = c.hasBias ? uniform(rng, in.c) : std::vector<float>{};
  std::vector<std::vector<float>> dy;
  for (size_t k = 0; k < (c.perBranchOutputs ? numBranches : 1); ++k)
    dy.push_back(uniform(rng, out.numel()));

  // Torch: w_b is the leaf (its grad is the masked dW), weff_b = w_b * mask_b
  // keeps its grad too (the dense dW).
  const std::vector<int64_t> inShape{in.n, in.c, in.h, in.w}, outShape{out.n, out.c, out.h, out.w};
  torch::Tensor tx = toTorch(x, inShape).requires_grad_(true);
  torch::Tensor tbias = c.hasBias ? toTorch(bias, {in.c}).requires_grad_(true) : torch::Tensor();
  std::vector<torch::Tensor> tw, tweff, ty;
  for (size_t b = 0; b < numBranches; ++b) {
    const Branch &br = spec.branches[b];
    tw.push_back(toTorch(weights[b], {in.c, 1, br.kernelH, br.kernelW}).requires_grad_(true));
    tweff.push_back(tw.back() * maskToTorch(masks[b], in.c, br));
    tweff.back().retain_grad();
    ty.push_back(torch::conv2d(tx, tweff.back(), {}, /*stride=*/1,
                               /*padding=*/{br.padH, br.padW}, /*dilation=*/1,
                               /*groups=*/in.c));
  }
  torch::Tensor loss = torch::zeros({}, torch::kDouble);
  if (c.perBranchOutputs) {
    for (size_t b = 0; b < numBranches; ++b)
      loss = loss + (ty[b] * toTorch(dy[b], outShape)).sum();
  } else {
    torch::Tensor sum = ty[0];
    for (size_t b = 1; b < numBranches; ++b)
      sum = sum + ty[b];
    if (c.hasBias)
      sum = sum + tbias.view({1, in.c, 1, 1});
    ty = {sum};
    loss = (sum * toTorch(dy[0], outShape)).sum();
  }
  loss.backward();

  const auto y = forward(spec, in, x, weights, masks, bias);
  ASSERT_EQ(y.size(), ty.size());
  for (size_t k = 0; k < y.size(); ++k)
    expectClose(y[k], ty[k], "y " + std::to_string(k));
  EXPECT_GT(ty[0].abs().max().item<double>(), 0.1) << "the case has no output to check";

  expectClose(backwardData(spec, in, dy, weights, masks), tx.grad(), "dx");

  const Weights dw = backwardWeight(spec, in, x, dy, masks);
  KernelSpec denseSpec = spec;
  denseSpec.denseWeightGrad = true;
  const Weights dwDense = backwardWeight(denseSpec, in, x, dy, masks);
  ASSERT_EQ(dw.size(), numBranches);
  for (size_t b = 0; b < numBranches; ++b) {
    expectClose(dw[b], tw[b].grad(), "dW of branch " + std::to_string(b));
    expectClose(dwDense[b], tweff[b].grad(), "dense dW of branch " + std::to_string(b));
  }

  if (c.hasBias)
    expectClose(backwardBias(spec, in, dy), tbias.grad(), "dbias");
}

// name, input [N, C, H, W], branches, mask density (every branch but the
// last), per-branch outputs, bias.
INSTANTIATE_TEST_SUITE_P(
    Shapes, ReferenceVsTorch,
    ::testing::Values(
        LayerCase{"Kernel13x5On7x7", {2, 3, 7, 7}, slakBranches(13, 5), 0.6, false, true},
        LayerCase{"Kernel51x5On7x9PerBranch", {1, 5, 7, 9}, slakBranches(51, 5), 0.5, true, false},
        LayerCase{"Channels125Stage4", {2, 125, 9, 10}, slakBranches(13, 5), 0.6, false, true},
        LayerCase{"Channels124Kernel51x5PerBranch",
                  {1, 124, 7, 9},
                  slakBranches(51, 5),
                  0.4,
                  true,
                  false},
        LayerCase{"DenseSingleChannel", {1, 1, 16, 12}, {Branch::same(7, 7)}, 1.0, false, true},
        LayerCase{"NonSamePaddingNonSquare",
                  {2, 7, 5, 11},
                  {Branch{5, 3, 1, 0}, Branch{3, 5, 0, 1}, Branch{3, 3, 0, 0}},
                  0.7,
                  false,
                  true},
        LayerCase{"ConvNeXt7x7Batch2", {2, 3, 12, 5}, {Branch::same(7, 7)}, 1.0, false, false}),
    caseName);

} // namespace
} // namespace slak::reference

// backwardData, backwardWeight and backwardBias checked against central
// differences of the forward, for loss = sum_b sum(y_b * r_b) with random r
// (accumulated in double). The layer is linear in x, in W and in the bias, so
// a unit step makes the central difference exact up to the float rounding of
// y: a wrong index, flip, mask or branch shows as an O(1) error.
#include "codegen/reference/Reference.h"
#include "tests/reference/LayerCases.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <gtest/gtest.h>
#include <ostream>
#include <random>
#include <string>
#include <vector>

namespace slak::reference {
namespace {

using codegen::Branch;
using codegen::BranchMask;
using codegen::KernelSpec;

class ReferenceGradient : public ::testing::TestWithParam<LayerCase> {
protected:
  void SetUp() override {
    const LayerCase &c = GetParam();
    std::mt19937 rng(seedOf(c.name));
    spec.channels = c.in.c;
    spec.branches = c.branches;
    spec.perBranchOutputs = c.perBranchOutputs;
    spec.hasBias = c.hasBias;
    ASSERT_EQ(spec.validate(), "");
    in = c.in;
    out = Shape{in.n, in.c, spec.outHeight(in.h), spec.outWidth(in.w)};
    x = uniform(rng, in.numel());
    for (const Branch &b : spec.branches) {
      weights.push_back(uniform(rng, in.c * b.windowSize()));
      masks.push_back(c.density < 1.0
                          ? randomMask(rng, in.c * b.windowSize(), c.density, /*anyNonZero=*/true)
                          : BranchMask{});
    }
    if (c.hasBias)
      bias = uniform(rng, in.c);
    const size_t numOutputs = c.perBranchOutputs ? spec.branches.size() : 1;
    for (size_t k = 0; k < numOutputs; ++k)
      r.push_back(uniform(rng, out.numel()));
  }

  double loss(const std::vector<float> &xs, const Weights &ws, const std::vector<BranchMask> &ms,
              const std::vector<float> &bs) const {
    const auto y = forward(spec, in, xs, ws, ms, bs);
    double sum = 0.0;
    for (size_t k = 0; k < y.size(); ++k)
      for (size_t e = 0; e < y[k].size(); ++e)
        sum += static_cast<double>(y[k][e]) * r[k][e];
    return sum;
  }

  // Central difference with a unit step of one float of `values`.
  template <typename Eval>
  static double centralDifference(std::vector<float> &values, size_t index, Eval eval) {
    const float saved = values[index];
    values[index] = saved + 1.0f;
    const double plus = eval();
    values[index] = saved - 1.0f;
    const double minus = eval();
    values[index] = saved;
    return (plus - minus) / 2.0;
  }

  static constexpr double kTolerance = 1e-4;

  KernelSpec spec;
  Shape in, out;
  std::vector<float> x, bias;
  Weights weights;
  std::vector<BranchMask> masks;
  std::vector<std::vector<float>> r;
};

TEST_P(ReferenceGradient, BackwardDataMatchesFiniteDifferences) {
  const std::vector<float> dx = backwardData(spec, in, r, weights, masks);
  ASSERT_EQ(static_cast<int64_t>(dx.size()), in.numel());
  std::vector<float> xs = x;
  double largest = 0.0;
  for (size_t k = 0; k < xs.size(); ++k) {
    const double fd = centralDifference(xs, k, [&] { return loss(xs, weights, masks, bias); });
    largest = std::max(largest, std::abs(fd));
    ASSERT_NEAR(dx[k], fd, kTolerance * (1.0 + std::abs(fd))) << "dx at flat index " << k;
  }
  EXPECT_GT(largest, 0.1) << "the case has no gradient to check";
}

TEST_P(ReferenceGradient, BackwardWeightMatchesFiniteDifferences) {
  const Weights dw = backwardWeight(spec, in, x, r, masks);
  ASSERT_EQ(dw.size(), spec.branches.size());
  Weights ws = weights;
  int64_t liveChecked = 0;
  for (size_t b = 0; b < ws.size(); ++b) {
    ASSERT_EQ(dw[b].size(), ws[b].size());
    for (size_t k = 0; k < ws[b].size(); ++k) {
      // The forward ignores masked weights, so their difference is exactly 0.
      const double fd = centralDifference(ws[b], k, [&] { return loss(x, ws, masks, bias); });
      ASSERT_NEAR(dw[b][k], fd, kTolerance * (1.0 + std::abs(fd)))
          << "dW of branch " << b << " at flat index " << k;
      liveChecked += fd != 0.0;
    }
  }
  EXPECT_GT(liveChecked, 0);
}

TEST_P(ReferenceGradient, DenseWeightGradIgnoresTheMask) {
  // With denseWeightGrad every tap gets the gradient it would have if live:
  // the difference of the forward without masks.
  KernelSpec dense = spec;
  dense.denseWeightGrad = true;
  const Weights dw = backwardWeight(dense, in, x, r, masks);
  const std::vector<BranchMask> noMasks(spec.branches.size());
  Weights ws = weights;
  int64_t maskedNonZero = 0;
  for (size_t b = 0; b < ws.size(); ++b)
    for (size_t k = 0; k < ws[b].size(); ++k) {
      const double fd = centralDifference(ws[b], k, [&] { return loss(x, ws, noMasks, bias); });
      ASSERT_NEAR(dw[b][k], fd, kTolerance * (1.0 + std::abs(fd)))
          << "dense dW of branch " << b << " at flat index " << k;
      maskedNonZero += !masks[b].empty() && masks[b][k] == 0 && fd != 0.0;
    }
  if (GetParam().density < 1.0) {
    EXPECT_GT(maskedNonZero, 0) << "no masked tap had a gradient to check";
  }
}

// name, input [N, C, H, W], branches, mask density, per-branch outputs, bias.
std::vector<LayerCase> allCases() {
  return {
      // SLaK-style M x N, N x M and 5x5, two images, odd channel count.
      {"Slak7x3Masked",
       {2, 3, 9, 8},
       {Branch::same(7, 3), Branch::same(3, 7), Branch::same(5, 5)},
       0.6,
       false,
       true},
      {"PerBranchNonSquare", {1, 5, 6, 11}, slakBranches(9, 3), 0.5, true, false},
      // Kernels larger than the image in one or both axes.
      {"Kernel13x5On7x7", {2, 3, 7, 7}, slakBranches(13, 5), 0.7, false, true},
      {"Kernel51x5On7x9PerBranch", {1, 3, 7, 9}, slakBranches(51, 5), 0.4, true, false},
      // Padding other than kernel / 2: both branches give a 3x4 output.
      {"NonSamePadding", {2, 2, 5, 6}, {Branch{5, 3, 1, 0}, Branch{3, 5, 0, 1}}, 0.8, false, true},
      {"DenseSingleBranch", {1, 7, 4, 13}, {Branch::same(7, 7)}, 1.0, false, true},
      // A 2x1 image under a 5x3 window: most taps never see it.
      {"SparseTinyImage2x1", {2, 7, 2, 1}, {Branch::same(5, 3)}, 0.5, false, true}};
}

std::vector<LayerCase> casesWithBias() {
  std::vector<LayerCase> cases;
  for (const LayerCase &c : allCases())
    if (c.hasBias)
      cases.push_back(c);
  return cases;
}

INSTANTIATE_TEST_SUITE_P(Shapes, ReferenceGradient, ::testing::ValuesIn(allCases()), caseName);

// Only the summed cases with a bias (a per-branch layer has none).
class ReferenceBiasGradient : public ReferenceGradient {};

TEST_P(ReferenceBiasGradient, BackwardBiasMatchesFiniteDifferences) {
  ASSERT_TRUE(spec.hasBias);
  const std::vector<float> db = backwardBias(spec, in, r);
  ASSERT_EQ(static_cast<int64_t>(db.size()), in.c);
  std::vector<float> bs = bias;
  for (size_t c = 0; c < bs.size(); ++c) {
    const double fd = centralDifference(bs, c, [&] { return loss(x, weights, masks, bs); });
    ASSERT_NEAR(db[c], fd, kTolerance * (1.0 + std::abs(fd))) << "dbias at channel " << c;
  }
}

INSTANTIATE_TEST_SUITE_P(Shapes, ReferenceBiasGradient, ::testing::ValuesIn(casesWithBias()),
                         caseName);

} // namespace
} // namespace slak::reference

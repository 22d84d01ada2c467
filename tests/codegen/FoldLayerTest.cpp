// codegen/Reparam.h on plain arrays: the nested-window merge plan and the
// fold's numbers against a direct evaluation of the layer's eval-mode sum
// on every tap offset.
#include "codegen/Reparam.h"

#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <random>

namespace slak::codegen {
namespace {

TEST(FoldLayerTest, SmallKernelNestsInTheFirstLargerWindowThatHoldsIt) {
  // SLaK's 51x5, 5x51 and 5x5: the 5x5 goes into 51x5 (first of the two
  // equal areas), the 5x51 survives on its own.
  const MergePlan plan = planNestedMerge({{51, 5, 25, 2}, {5, 51, 2, 25}, {5, 5, 2, 2}});
  EXPECT_EQ(plan.order, (std::vector<size_t>{0, 1, 2}));
  EXPECT_EQ(plan.survivors, (std::vector<size_t>{0, 1}));
  EXPECT_EQ(plan.host, (std::vector<size_t>{0, 1, 0}));

  // Larger areas first whatever the argument order; an off-centre window
  // that does not fit stays.
  const MergePlan other = planNestedMerge({{3, 3, 1, 1}, {7, 7, 3, 3}, {3, 3, 0, 0}});
  EXPECT_EQ(other.order, (std::vector<size_t>{1, 0, 2}));
  EXPECT_EQ(other.survivors, (std::vector<size_t>{1}));
  EXPECT_EQ(other.host, (std::vector<size_t>{0, 0, 0}));
  const MergePlan apart = planNestedMerge({{3, 3, 1, 1}, {1, 5, 0, 2}});
  EXPECT_EQ(apart.survivors, (std::vector<size_t>{0, 1}));
}

TEST(FoldLayerTest, OffsetOfNamesWhereTheInnerWindowLies) {
  const KernelWindow big{7, 5, 3, 2};
  ASSERT_TRUE(big.offsetOf({3, 3, 1, 1}));
  EXPECT_EQ(*big.offsetOf({3, 3, 1, 1}), std::make_pair(int64_t{2}, int64_t{1}));
  EXPECT_EQ(*big.offsetOf({7, 5, 3, 2}), std::make_pair(int64_t{0}, int64_t{0}));
  EXPECT_FALSE(big.offsetOf({3, 7, 1, 3}));
  EXPECT_FALSE(big.offsetOf({5, 3, 0, 1})); // offsets 0..4 reach below the big one
}

/// y[c] at tap offset (dy, dx) of the layer: sum over branches of
/// BN_b(conv_b) written out per tap, the weights a unit impulse sees.
struct Direct {
  std::map<std::tuple<int64_t, int, int>, double> weight;
  std::vector<double> bias;
};

Direct evaluate(int64_t channels, const std::vector<ArrayFoldBranch> &branches,
                const std::vector<double> &layerBias) {
  Direct d;
  d.bias = layerBias;
  for (const ArrayFoldBranch &b : branches)
    for (int64_t c = 0; c < channels; ++c) {
      double scale = 1.0, shift = b.hasBias ? b.bias[c] : 0.0;
      if (b.hasNorm) {
        scale = b.norm.gamma[c] / std::sqrt(b.norm.variance[c] + b.norm.epsilon);
        shift = (shift - b.norm.mean[c]) * scale + b.norm.beta[c];
      }
      d.bias[c] += shift;
      const KernelWindow &w = b.window;
      for (int64_t u = 0; u < w.kernelH; ++u)
        for (int64_t v = 0; v < w.kernelW; ++v) {
          const int64_t k = (c * w.kernelH + u) * w.kernelW + v;
          const bool live = b.mask.empty() || b.mask[k];
          d.weight[{c, static_cast<int>(u - w.padH), static_cast<int>(v - w.padW)}] +=
              live ? b.weight[k] * scale : 0.0;
        }
    }
  return d;
}

TEST(FoldLayerTest, FoldEqualsTheSumOfBatchNormedBranchesOnEveryTap) {
  std::mt19937 rng(7);
  std::uniform_real_distribution<double> uni(-1.0, 1.0), pos(0.2, 2.0);
  const int64_t C = 3;
  auto vec = [&](auto &dist) {
    std::vector<double> v(C);
    for (double &x : v)
      x = dist(rng);
    return v;
  };
  std::vector<ArrayFoldBranch> branches;
  for (KernelWindow w :
       {KernelWindow{7, 3, 3, 1}, KernelWindow{3, 7, 1, 3}, KernelWindow{3, 3, 1, 1}}) {
    ArrayFoldBranch b;
    b.window = w;
    b.weight.resize(C * w.area());
    for (double &x : b.weight)
      x = uni(rng);
    if (w.kernelH == 7) { // the tall branch sparse, the others dense
      b.mask.resize(b.weight.size());
      for (uint8_t &m : b.mask)
        m = uni(rng) > 0 ? 1 : 0;
    }
    if (w.kernelW == 7) { // the wide branch has a conv bias before its BatchNorm
      b.hasBias = true;
      b.bias = vec(uni);
    }
    b.hasNorm = true;
    b.norm = {vec(pos), vec(uni), vec(uni), vec(pos), 1e-3};
    branches.push_back(b);
  }
  const std::vector<double> layerBias = vec(uni);
  const Direct want = evaluate(C, branches, layerBias);

  const ArrayFoldedLayer got = foldLayer(C, branches, &layerBias);
  ASSERT_EQ(got.weights.size(), 2u); // 3x3 merged into 7x3
  ASSERT_TRUE(got.hasBias);
  std::map<std::tuple<int64_t, int, int>, double> sum;
  for (size_t f = 0; f < got.weights.size(); ++f) {
    const KernelWindow &w = got.windows[f];
    for (int64_t c = 0; c < C; ++c)
      for (int64_t u = 0; u < w.kernelH; ++u)
        for (int64_t v = 0; v < w.kernelW; ++v)
          sum[{c, static_cast<int>(u - w.padH), static_cast<int>(v - w.padW)}] +=
              got.weights[f][(c * w.kernelH + u) * w.kernelW + v];
  }
  ASSERT_EQ(sum.size(), want.weight.size());
  for (const auto &[key, value] : want.weight)
    EXPECT_NEAR(sum[key], value, 1e-12);
  for (int64_t c = 0; c < C; ++c)
    EXPECT_NEAR(got.bias[c], want.bias[c], 1e-12) << "channel " << c;

  // The merged host keeps its mask, with the dense 3x3 centre OR-ed in.
  const std::vector<uint8_t> &mask = got.masks[0];
  ASSERT_EQ(mask.size(), static_cast<size_t>(C * 21));
  for (int64_t c = 0; c < C; ++c)
    for (int64_t u = 0; u < 7; ++u)
      for (int64_t v = 0; v < 3; ++v) {
        const int64_t k = (c * 7 + u) * 3 + v;
        const bool inCentre = u >= 2 && u <= 4;
        EXPECT_EQ(mask[k], inCentre ? 1 : branches[0].mask[k]) << c << " " << u << " " << v;
      }
  EXPECT_TRUE(got.masks[1].empty());
}

TEST(FoldLayerTest, NoBatchNormAndNoBiasLeavesNoShift) {
  ArrayFoldBranch b;
  b.window = {3, 1, 1, 0};
  b.weight = {1, 2, 3, 4, 5, 6};
  const ArrayFoldedLayer got = foldLayer(2, {b}, nullptr);
  EXPECT_FALSE(got.hasBias);
  EXPECT_EQ(got.weights[0], b.weight);
}

} // namespace
} // namespace slak::codegen

// The oracle on tiny cases whose expected numbers are worked out by hand in
// the comments, plus its input validation.
#include "codegen/reference/Reference.h"

#include <functional>
#include <gtest/gtest.h>
#include <stdexcept>
#include <string>
#include <vector>

namespace slak::reference {
namespace {

using codegen::Branch;
using codegen::BranchMask;
using codegen::KernelSpec;

KernelSpec makeSpec(int64_t channels, std::vector<Branch> branches, bool hasBias = false) {
  KernelSpec spec;
  spec.channels = channels;
  spec.branches = std::move(branches);
  spec.hasBias = hasBias;
  return spec;
}

void expectValues(const std::vector<float> &actual, const std::vector<float> &expected) {
  ASSERT_EQ(actual.size(), expected.size());
  for (size_t k = 0; k < expected.size(); ++k)
    EXPECT_FLOAT_EQ(actual[k], expected[k]) << "at flat index " << k;
}

// x = [[1,2,3],[4,5,6],[7,8,9]], i.e. x[r][c] = 3r + c + 1.
const std::vector<float> kX3x3 = {1, 2, 3, 4, 5, 6, 7, 8, 9};
const Shape kShape3x3{1, 1, 3, 3};

// 3x3 kernel [[1,0,0],[0,1,0],[0,0,-1]], pad 1:
//   y[i,j] = x[i-1,j-1] + x[i,j] - x[i+1,j+1]
const std::vector<float> kW3x3 = {1, 0, 0, 0, 1, 0, 0, 0, -1};
// 1x3 kernel [1,2,3], pad 0x1: y[i,j] = x[i,j-1] + 2 x[i,j] + 3 x[i,j+1]
const std::vector<float> kW1x3 = {1, 2, 3};
// 3x1 kernel [1,0,-1]^T, pad 1x0: y[i,j] = x[i-1,j] - x[i+1,j]
const std::vector<float> kW3x1 = {1, 0, -1};
// [[1,2,3],[4,5,6],[7,8,9]]: no symmetry, so a flipped or transposed tap shows.
const std::vector<float> kW123 = {1, 2, 3, 4, 5, 6, 7, 8, 9};

TEST(ReferenceForward, Single3x3BranchWithZeroPadding) {
  KernelSpec spec = makeSpec(1, {Branch::same(3, 3)});
  // y[0,0] = 0 + 1 - 5 = -4   y[0,1] = 0 + 2 - 6 = -4   y[0,2] = 0 + 3 - 0 = 3
  // y[1,0] = 0 + 4 - 8 = -4   y[1,1] = 1 + 5 - 9 = -3   y[1,2] = 2 + 6 - 0 = 8
  // y[2,0] = 0 + 7 - 0 = 7    y[2,1] = 4 + 8 - 0 = 12   y[2,2] = 5 + 9 - 0 = 14
  auto y = forward(spec, kShape3x3, kX3x3, {kW3x3}, {}, {});
  ASSERT_EQ(y.size(), 1u);
  expectValues(y[0], {-4, -4, 3, -4, -3, 8, 7, 12, 14});
}

TEST(ReferenceForward, ThreeBranchesSummedWithBias) {
  KernelSpec spec =
      makeSpec(1, {Branch::same(3, 3), Branch::same(1, 3), Branch::same(3, 1)}, /*hasBias=*/true);
  // 1x3 branch: row 0: 0+2+6=8,   1+4+9=14,   2+6+0=8
  //             row 1: 0+8+15=23, 4+10+18=32, 5+12+0=17
  //             row 2: 0+14+24=38, 7+16+27=50, 8+18+0=26
  // 3x1 branch: row 0: -4,-5,-6; row 1: 1-7=-6 (each column); row 2: 4,5,6
  // sum + 0.5: (0,0) -4+8-4 = 0    (0,1) -4+14-5 = 5   (0,2) 3+8-6 = 5
  //            (1,0) -4+23-6 = 13  (1,1) -3+32-6 = 23  (1,2) 8+17-6 = 19
  //            (2,0) 7+38+4 = 49   (2,1) 12+50+5 = 67  (2,2) 14+26+6 = 46
  auto y = forward(spec, kShape3x3, kX3x3, {kW3x3, kW1x3, kW3x1}, {}, {0.5f});
  ASSERT_EQ(y.size(), 1u);
  expectValues(y[0], {0.5f, 5.5f, 5.5f, 13.5f, 23.5f, 19.5f, 49.5f, 67.5f, 46.5f});
}

TEST(ReferenceForward, PerBranchOutputsAreNotSummed) {
  KernelSpec spec = makeSpec(1, {Branch::same(3, 3), Branch::same(1, 3), Branch::same(3, 1)});
  spec.perBranchOutputs = true;
  auto y = forward(spec, kShape3x3, kX3x3, {kW3x3, kW1x3, kW3x1}, {{}, {}, {}}, {});
  ASSERT_EQ(y.size(), 3u);
  // The per-branch numbers worked out above.
  expectValues(y[0], {-4, -4, 3, -4, -3, 8, 7, 12, 14});
  expectValues(y[1], {8, 14, 8, 23, 32, 17, 38, 50, 26});
  expectValues(y[2], {-4, -5, -6, -6, -6, -6, 4, 5, 6});
}

TEST(ReferenceForward, MaskedTapsAreSkippedWhateverTheirWeight) {
  KernelSpec spec = makeSpec(1, {Branch::same(3, 3), Branch::same(1, 3)});
  spec.perBranchOutputs = true;
  // Branch 0: only the centre tap is live (mask value 7: any non-zero is live);
  // the other weights are large so using them would show.
  std::vector<float> w0 = {100, 100, 100, 100, 2, 100, 100, 100, 100};
  BranchMask m0 = {0, 0, 0, 0, 7, 0, 0, 0, 0};
  // Branch 1: tap v=2 (weight 3) masked: y[i,j] = x[i,j-1] + 2 x[i,j]
  //   row 0: 0+2=2, 1+4=5, 2+6=8; row 1: 8, 4+10=14, 5+12=17; row 2: 14, 7+16=23, 8+18=26
  BranchMask m1 = {1, 1, 0};
  auto y = forward(spec, kShape3x3, kX3x3, {w0, kW1x3}, {m0, m1}, {});
  ASSERT_EQ(y.size(), 2u);
  expectValues(y[0], {2, 4, 6, 8, 10, 12, 14, 16, 18});
  expectValues(y[1], {2, 5, 8, 8, 14, 17, 14, 23, 26});
}

TEST(ReferenceForward, ChannelsUseTheirOwnWeightsMaskAndBias) {
  // 2 channels, 1x1 images, a 3x3 kernel: only the centre tap sees the image.
  KernelSpec spec = makeSpec(2, {Branch::same(3, 3)}, /*hasBias=*/true);
  std::vector<float> w = {9, 9, 9, 9, 2,  9, 9, 9, 9,  // channel 0, centre 2
                          9, 9, 9, 9, -3, 9, 9, 9, 9}; // channel 1, centre -3
  // Channel 1's centre is masked, channel 0's is live.
  BranchMask m = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1, 1};
  // n=0: x = (5, 7); n=1: x = (-1, 4)
  // dense:  y = (2*5 + 1, -3*7 - 1) = (11, -22); n=1: (2*-1 + 1, -3*4 - 1) = (-1, -13)
  // masked: channel 1 reads nothing, y = bias = -1.
  Shape in{2, 2, 1, 1};
  std::vector<float> x = {5, 7, -1, 4};
  expectValues(forward(spec, in, x, {w}, {}, {1, -1})[0], {11, -22, -1, -13});
  expectValues(forward(spec, in, x, {w}, {m}, {1, -1})[0], {11, -1, -1, -1});
}

TEST(ReferenceForward, KernelLargerThanImage) {
  // 1x1 image, 5x3 kernel (pad 2x1): only tap (2,1) lands inside the image.
  KernelSpec spec = makeSpec(1, {Branch::same(5, 3)});
  std::vector<float> w(15, 100.0f);
  w[2 * 3 + 1] = -1.5f;
  expectValues(forward(spec, {1, 1, 1, 1}, {4}, {w}, {}, {})[0], {-6});
}

TEST(ReferenceForward, NonSamePaddingShrinksTheOutput) {
  // Branch 0: 3x3 kernel W = 1..9, no padding, on the 3x3 image: one output,
  //   sum_k k * k for k = 1..9 = 285.
  // Branch 1: 5x3 kernel, padding 1x0 (same 1x1 output): y = sum w[u,v] x[u-1, v].
  //   With w[u,v] = u, rows u = 1..3 read image rows 0..2 (sums 6, 15, 24) and
  //   rows u = 0, 4 fall outside: 1*6 + 2*15 + 3*24 = 108.
  KernelSpec spec = makeSpec(1, {Branch{3, 3, 0, 0}, Branch{5, 3, 1, 0}});
  std::vector<float> w1 = {0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3, 4, 4, 4};
  auto y = forward(spec, kShape3x3, kX3x3, {kW123, w1}, {}, {});
  expectValues(y[0], {285 + 108});
}

TEST(ReferenceForward, NonSamePaddingReadsTheRightWindow) {
  // Branch 0: 1x3 kernel (1, 10, 100), no padding: a 3x1 output,
  //   y[i,0] = x[i,0] + 10 x[i,1] + 100 x[i,2] = 321, 654, 987.
  // Branch 1: 3x5 kernel, padding 1x1 (also 3x1 out), only tap (0,1) live, weight 1:
  //   y[i,0] = x[i-1, 0] = 0 (row -1), 1, 4.
  KernelSpec spec = makeSpec(1, {Branch{1, 3, 0, 0}, Branch{3, 5, 1, 1}});
  std::vector<float> w1(15, 50.0f);
  BranchMask m1(15, 0);
  w1[0 * 5 + 1] = 1;
  m1[0 * 5 + 1] = 1;
  auto y = forward(spec, kShape3x3, kX3x3, {{1, 10, 100}, w1}, {{}, m1}, {});
  expectValues(y[0], {321 + 0, 654 + 1, 987 + 4});
}

// W = [[1,2,3],[4,5,6],[7,8,9]] on a 3x3 image, dy = 1 at (0,0) only.
// x[p,q] fed y[0,0] through tap (u,v) = (p+1, q+1), so dx[p,q] = W[p+1,q+1]:
//   dx = [[5,6,0],[8,9,0],[0,0,0]] (taps flipped relative to the forward).
const std::vector<float> kDyCorner = {1, 0, 0, 0, 0, 0, 0, 0, 0};

TEST(ReferenceBackwardData, SingleBranchFlipsTaps) {
  KernelSpec spec = makeSpec(1, {Branch::same(3, 3)});
  expectValues(backwardData(spec, kShape3x3, {kDyCorner}, {kW123}, {}),
               {5, 6, 0, 8, 9, 0, 0, 0, 0});
}

TEST(ReferenceBackwardData, SummedOutputSharesOneDy) {
  // Plus a 1x3 branch [1,2,3] (pad 0x1): x[0,q] fed y[0,0] through v = q + 1:
  //   dx[0,0] += 2, dx[0,1] += 3.
  KernelSpec spec = makeSpec(1, {Branch::same(3, 3), Branch::same(1, 3)});
  expectValues(backwardData(spec, kShape3x3, {kDyCorner}, {kW123, {1, 2, 3}}, {}),
               {7, 9, 0, 8, 9, 0, 0, 0, 0});
}

TEST(ReferenceBackwardData, PerBranchDyAndMask) {
  // Branch 0 (3x3) gets dy = 1 at (0,0) with tap (1,2) (weight 6) masked:
  //   dx = [[5,0,0],[8,9,0],[0,0,0]].
  // Branch 1 (1x3 [1,2,3]) gets dy = 1 at (2,2): x[2,q] fed it through v = q - 1:
  //   dx[2,1] += 1, dx[2,2] += 2.
  KernelSpec spec = makeSpec(1, {Branch::same(3, 3), Branch::same(1, 3)});
  spec.perBranchOutputs = true;
  BranchMask m0 = {1, 1, 1, 1, 1, 0, 1, 1, 1};
  std::vector<float> dy1 = {0, 0, 0, 0, 0, 0, 0, 0, 1};
  expectValues(backwardData(spec, kShape3x3, {kDyCorner, dy1}, {kW123, {1, 2, 3}}, {m0, {}}),
               {5, 0, 0, 8, 9, 0, 0, 1, 2});
}

TEST(ReferenceBackwardWeight, SumsShiftedWindowsOfX) {
  // dy = 1 everywhere: dW[u,v] = sum of x over rows (u-1)..(u+1), cols (v-1)..(v+1)
  // clipped to the image:
  //   dW[0,0] = 1+2+4+5 = 12    dW[0,1] = 1+..+6 = 21          dW[0,2] = 2+3+5+6 = 16
  //   dW[1,0] = 1+2+4+5+7+8 = 27  dW[1,1] = 45               dW[1,2] = 2+3+5+6+8+9 = 33
  //   dW[2,0] = 4+5+7+8 = 24    dW[2,1] = 4+..+9 = 39          dW[2,2] = 5+6+8+9 = 28
  KernelSpec spec = makeSpec(1, {Branch::same(3, 3)});
  std::vector<float> ones(9, 1.0f);
  auto dw = backwardWeight(spec, kShape3x3, kX3x3, {ones}, {});
  ASSERT_EQ(dw.size(), 1u);
  expectValues(dw[0], {12, 21, 16, 27, 45, 33, 24, 39, 28});
}

TEST(ReferenceBackwardWeight, MaskedTapsAreZeroUnlessDense) {
  KernelSpec spec = makeSpec(1, {Branch::same(3, 3)});
  std::vector<float> ones(9, 1.0f);
  BranchMask m = {0, 1, 1, 1, 1, 1, 1, 1, 0};
  expectValues(backwardWeight(spec, kShape3x3, kX3x3, {ones}, {m})[0],
               {0, 21, 16, 27, 45, 33, 24, 39, 0});
  spec.denseWeightGrad = true;
  expectValues(backwardWeight(spec, kShape3x3, kX3x3, {ones}, {m})[0],
               {12, 21, 16, 27, 45, 33, 24, 39, 28});
}

TEST(ReferenceBackwardWeight, PerBranchDyAndBatch) {
  // Two images: x and 2x. Branch 0 (1x3, pad 0x1) gets dy = 1 at (1,1) of image 0
  // and at (0,2) of image 1; branch 1 (3x1, pad 1x0) gets dy = 1 at (2,0) of image 1.
  // Branch 0: dW[v] = x[1, v] + 2 x[0, 1+v] = (4 + 4, 5 + 6, 6 + 0 (column 3 is outside))
  // Branch 1: dW[u] = 2 x[1+u, 0] = (8, 14, 0 (row 3 is outside))
  KernelSpec spec = makeSpec(1, {Branch::same(1, 3), Branch::same(3, 1)});
  spec.perBranchOutputs = true;
  std::vector<float> x = kX3x3;
  for (float v : kX3x3)
    x.push_back(2 * v);
  std::vector<float> dy0(18, 0.0f), dy1(18, 0.0f);
  dy0[1 * 3 + 1] = 1;
  dy0[9 + 0 * 3 + 2] = 1;
  dy1[9 + 2 * 3 + 0] = 1;
  auto dw = backwardWeight(spec, {2, 1, 3, 3}, x, {dy0, dy1}, {});
  ASSERT_EQ(dw.size(), 2u);
  expectValues(dw[0], {8, 11, 6});
  expectValues(dw[1], {8, 14, 0});
}

TEST(ReferenceBackwardBias, SumsOverBatchAndSpace) {
  // dy is 2x2x1x2: image 0 = (c0: 1, 2; c1: 3, 4), image 1 = (c0: 5, 6; c1: 7, 8).
  // dbias = (1+2+5+6, 3+4+7+8) = (14, 22).
  KernelSpec spec = makeSpec(2, {Branch::same(3, 3)}, /*hasBias=*/true);
  expectValues(backwardBias(spec, {2, 2, 1, 2}, {{1, 2, 3, 4, 5, 6, 7, 8}}), {14, 22});
}

TEST(ReferenceBackwardBias, PerBranchDyIsSummed) {
  // The bias of a summed layer sees the sum of the branch gradients:
  // (14, 22) + (-1 * 4, 10 * 4) = (10, 62).
  KernelSpec spec = makeSpec(2, {Branch::same(3, 3), Branch::same(1, 1)});
  spec.perBranchOutputs = true;
  expectValues(backwardBias(spec, {2, 2, 1, 2},
                            {{1, 2, 3, 4, 5, 6, 7, 8}, {-1, -1, 10, 10, -1, -1, 10, 10}}),
               {10, 62});
}

// Calls `fn`, expects std::invalid_argument whose message holds every piece.
void expectInvalid(const std::function<void()> &fn, const std::vector<std::string> &pieces) {
  try {
    fn();
  } catch (const std::invalid_argument &e) {
    const std::string message = e.what();
    for (const std::string &piece : pieces)
      EXPECT_NE(message.find(piece), std::string::npos)
          << "message \"" << message << "\" lacks \"" << piece << "\"";
    return;
  }
  ADD_FAILURE() << "no std::invalid_argument thrown";
}

TEST(ReferenceErrors, NamesTheArgumentTheValueAndTheExpectation) {
  KernelSpec spec = makeSpec(2, {Branch::same(3, 3), Branch::same(1, 5)}, /*hasBias=*/true);
  const Shape in{1, 2, 4, 4};
  const std::vector<float> x(32, 1.0f), w0(18, 1.0f), w1(10, 1.0f), bias(2, 0.0f);
  const std::vector<float> dy(32, 1.0f);

  // The well-formed call works: 2 channels, so its output has 32 values.
  EXPECT_EQ(forward(spec, in, x, {w0, w1}, {}, bias)[0].size(), 32u);

  expectInvalid(
      [&] {
        forward(spec, in, std::vector<float>(31), {w0, w1}, {}, bias);
      },
      {"forward", "x has 31 elements, expected 32", "1x2x4x4"});
  expectInvalid(
      [&] {
        forward(spec, {1, 3, 4, 4}, x, {w0, w1}, {}, bias);
      },
      {"3 channels", "expected 2"});
  expectInvalid([&] { forward(spec, in, x, {w0}, {}, bias); },
                {"weights for 1 branches", "expected 2"});
  expectInvalid(
      [&] {
        forward(spec, in, x, {w0, w0}, {}, bias);
      },
      {"weight of branch 1 has 18 elements, expected 10", "2x1x1x5"});
  expectInvalid(
      [&] {
        forward(spec, in, x, {w0, w1}, {{}, BranchMask(9, 1)}, bias);
      },
      {"mask of branch 1 has 9 elements, expected 10", "2x1x1x5"});
  expectInvalid(
      [&] {
        forward(spec, in, x, {w0, w1}, {{}}, bias);
      },
      {"masks for 1 branches", "expected 2"});
  expectInvalid(
      [&] {
        forward(spec, in, x, {w0, w1}, {}, {});
      },
      {"bias has 0 elements, expected 2"});
  KernelSpec noBias = spec;
  noBias.hasBias = false;
  expectInvalid(
      [&] {
        forward(noBias, in, x, {w0, w1}, {}, bias);
      },
      {"bias has 2 elements", "hasBias is false"});

  expectInvalid(
      [&] {
        backwardData(spec, in, {dy, dy}, {w0, w1}, {});
      },
      {"backwardData", "got 2 dy tensors, expected 1"});
  expectInvalid(
      [&] {
        backwardData(spec, in, {std::vector<float>(30)}, {w0, w1}, {});
      },
      {"dy 0 has 30 elements, expected 32"});
  KernelSpec perBranch = noBias;
  perBranch.perBranchOutputs = true;
  expectInvalid([&] { backwardWeight(perBranch, in, x, {dy}, {}); },
                {"backwardWeight", "got 1 dy tensors, expected 2", "one per branch"});
  expectInvalid(
      [&] {
        backwardBias(perBranch, in, {dy, std::vector<float>(33)});
      },
      {"backwardBias", "dy 1 has 33 elements, expected 32"});
}

TEST(ReferenceErrors, RejectsBadSpecsAndShapes) {
  const std::vector<float> x(16, 1.0f);
  KernelSpec even = makeSpec(1, {Branch::same(4, 3)});
  expectInvalid(
      [&] {
        forward(even, {1, 1, 4, 4}, x, {std::vector<float>(12)}, {}, {});
      },
      {"invalid spec", "4x3"});

  KernelSpec fixed = makeSpec(1, {Branch::same(3, 3)});
  fixed.height = 5;
  expectInvalid(
      [&] {
        forward(fixed, {1, 1, 4, 4}, x, {std::vector<float>(9)}, {}, {});
      },
      {"input height is 4, expected 5"});

  // 5x5 without padding on a 4x4 image leaves no output.
  KernelSpec valid = makeSpec(1, {Branch{5, 5, 0, 0}});
  expectInvalid([&] { backwardBias(valid, {1, 1, 4, 4}, {{}}); }, {"empty output", "1x1x0x0"});
  expectInvalid([&] { backwardBias(fixed, {0, 1, 4, 4}, {{}}); }, {"0x1x4x4", "non-positive"});
}

} // namespace
} // namespace slak::reference

// models/Linear: the blocks' linear layers on oneDNN against torch::linear,
// forward and the three gradients, over the layouts the blocks pass (2-D,
// NHWC from a channels-last tensor, a permuted NCHW tensor) and both shapes
// of the weight gradient (fewer or more input than output features), plus
// the fused GELU and scale-and-residual forms and the block MLP (forward and
// all seven gradients against the unfused chain).
#include "models/Linear.h"
#include "models/Gelu.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <string>

using namespace slak;

namespace {

void expectClose(const torch::Tensor &got, const torch::Tensor &want, const std::string &what) {
  ASSERT_TRUE(got.defined()) << what;
  ASSERT_EQ(got.sizes(), want.sizes()) << what;
  // fp32 sums over at most a few hundred terms in another order.
  const double scale = want.abs().max().item<double>() + 1e-6;
  const double err = (got - want).abs().max().item<double>();
  EXPECT_LE(err, 2e-5 * scale) << what << ": max |error| " << err << " against max |value| "
                               << scale;
}

struct Case {
  std::string name;
  std::vector<int64_t> shape; // input shape, features last
  int64_t out;
  bool bias;
  int layout; // 0 contiguous, 1 NHWC view of channels-last, 2 NHWC view of NCHW
};

torch::Tensor makeInput(const Case &c) {
  if (c.layout == 0)
    return torch::randn(c.shape);
  // shape is N, H, W, C: build the NCHW tensor and view it NHWC.
  auto nchw = torch::randn({c.shape[0], c.shape[3], c.shape[1], c.shape[2]});
  if (c.layout == 1)
    nchw = nchw.contiguous(torch::MemoryFormat::ChannelsLast);
  return nchw.permute({0, 2, 3, 1});
}

class LinearCases : public ::testing::TestWithParam<Case> {};

TEST_P(LinearCases, ForwardAndGradientsMatchTorchLinear) {
  const Case &c = GetParam();
  torch::manual_seed(7);
  auto x = makeInput(c).requires_grad_(true);
  ASSERT_TRUE(models::oneDnnLinearApplies(x)) << "this LibTorch has no oneDNN linear";
  const int64_t in = c.shape.back();
  auto w = (torch::randn({c.out, in}) / std::sqrt(double(in))).requires_grad_(true);
  auto b = c.bias ? torch::randn({c.out}).requires_grad_(true) : torch::Tensor();
  // A non-uniform, non-contiguous upstream gradient.
  auto probe = torch::randn(c.shape.size() == 2 ? std::vector<int64_t>{c.out, c.shape[0]}
                                                : std::vector<int64_t>{c.out});

  auto y = models::linear(x, w, b);
  auto want = torch::linear(x, w, b);
  expectClose(y, want, c.name + " forward");

  auto weighting = c.shape.size() == 2 ? probe.t() : probe;
  auto grads =
      torch::autograd::grad({(y * weighting).sum()}, c.bias ? std::vector<torch::Tensor>{x, w, b}
                                                            : std::vector<torch::Tensor>{x, w});
  auto wantGrads =
      torch::autograd::grad({(want * weighting).sum()}, c.bias ? std::vector<torch::Tensor>{x, w, b}
                                                               : std::vector<torch::Tensor>{x, w});
  expectClose(grads[0], wantGrads[0], c.name + " dx");
  expectClose(grads[1], wantGrads[1], c.name + " dW");
  if (c.bias)
    expectClose(grads[2], wantGrads[2], c.name + " db");
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, LinearCases,
    ::testing::Values(
        Case{"mlp_up_2d", {37, 24}, 96, true, 0}, Case{"mlp_down_2d", {37, 96}, 24, true, 0},
        Case{"no_bias", {5, 7}, 3, false, 0},
        Case{"nhwc_channels_last_up", {2, 5, 6, 16}, 64, true, 1},
        Case{"nhwc_channels_last_down", {2, 5, 6, 64}, 16, true, 1},
        Case{"nhwc_from_nchw", {3, 4, 7, 13}, 52, true, 2}, Case{"one_row", {1, 9}, 4, true, 0},
        // Whole 8 x 8 transpose blocks and 64 x 64 tiles, with edges.
        Case{"tiles_up", {203, 40}, 160, true, 0}, Case{"tiles_down", {136, 160}, 40, true, 0}),
    [](const auto &info) { return info.param.name; });

TEST(Linear, ParallelLoopsRunOnLibTorchsThreads) {
  // at::parallel_for only splits where the caller is compiled with OpenMP.
  const int before = at::get_num_threads();
  at::set_num_threads(2);
  EXPECT_EQ(models::parallelForThreads(), 2);
  at::set_num_threads(before);
}

TEST(Linear, OtherDtypesAndDevicesUseTorchLinear) {
  auto x = torch::randn({4, 3}, torch::kDouble);
  EXPECT_FALSE(models::oneDnnLinearApplies(x));
  auto w = torch::randn({2, 3}, torch::kDouble);
  auto b = torch::randn({2}, torch::kDouble);
  EXPECT_TRUE(torch::equal(models::linear(x, w, b), torch::linear(x, w, b)));
}

TEST(Linear, MismatchedWeightNamesBothWidths) {
  auto x = torch::randn({4, 3});
  auto w = torch::randn({2, 5});
  try {
    models::linear(x, w, {});
    FAIL() << "a 3-feature input with a 2x5 weight was accepted";
  } catch (const c10::Error &e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("input with 3 features"), std::string::npos) << what;
    EXPECT_NE(what.find("[2, 5]"), std::string::npos) << what;
  }
}

TEST(Linear, GeluFusedInInferenceMatchesGeluOfLinear) {
  torch::manual_seed(3);
  auto x = makeInput({"", {2, 7, 7, 32}, 0, true, 1});
  auto w = torch::randn({128, 32}) / 4;
  auto b = torch::randn({128});
  auto want = torch::gelu(torch::linear(x, w, b));
  {
    torch::NoGradGuard noGrad;
    expectClose(models::linearGelu(x, w, b), want, "gelu, no grad");
  }
  auto wg = w.clone().requires_grad_(true);
  auto y = models::linearGelu(x, wg, b);
  expectClose(y, want, "gelu, with grad");
  auto dw = torch::autograd::grad({y.square().sum()}, {wg})[0];
  auto wg2 = w.clone().requires_grad_(true);
  auto dwWant =
      torch::autograd::grad({torch::gelu(torch::linear(x, wg2, b)).square().sum()}, {wg2})[0];
  expectClose(dw, dwWant, "gelu dW");
}

TEST(Linear, ScaleAndResidualFusedInInferenceMatchUnfused) {
  torch::manual_seed(5);
  auto h = makeInput({"", {2, 7, 7, 64}, 0, true, 1});
  auto w = torch::randn({16, 64}) / 8;
  auto b = torch::randn({16});
  auto scale = torch::randn({16});
  auto residualNchw = torch::randn({2, 16, 7, 7}).contiguous(torch::MemoryFormat::ChannelsLast);
  auto residual = residualNchw.permute({0, 2, 3, 1}); // contiguous NHWC: fused
  auto want = residual + scale * torch::linear(h, w, b);
  torch::NoGradGuard noGrad;
  expectClose(models::linearScaleAdd(h, w, b, scale, residual), want, "scale+residual fused");
  expectClose(models::linearScaleAdd(h, w, b, {}, residual), residual + torch::linear(h, w, b),
              "residual, no scale");
  // A residual laid out otherwise (NCHW memory) takes the unfused path.
  auto nchwResidual = residualNchw.contiguous().permute({0, 2, 3, 1});
  expectClose(models::linearScaleAdd(h, w, b, scale, nchwResidual), want, "NCHW residual");
}

TEST(Linear, ScaleAndResidualWithGradientsMatchUnfused) {
  torch::manual_seed(9);
  auto h = torch::randn({10, 12});
  auto w = torch::randn({6, 12}).requires_grad_(true);
  auto b = torch::randn({6}).requires_grad_(true);
  auto scale = torch::randn({6}).requires_grad_(true);
  auto residual = torch::randn({10, 6}).requires_grad_(true);
  auto y = models::linearScaleAdd(h, w, b, scale, residual);
  auto want = residual + scale * torch::linear(h, w, b);
  expectClose(y, want, "forward");
  auto got = torch::autograd::grad({y.pow(3).sum()}, {w, b, scale, residual});
  auto ref = torch::autograd::grad({want.pow(3).sum()}, {w, b, scale, residual});
  for (size_t i = 0; i < got.size(); ++i)
    expectClose(got[i], ref[i], "gradient " + std::to_string(i));
}

struct MlpCase {
  std::string name;
  std::vector<int64_t> shape; // input shape, features last
  int64_t hidden;
  bool bias, scale, residual;
  int layout; // as Case::layout
};

class MlpCases : public ::testing::TestWithParam<MlpCase> {};

TEST_P(MlpCases, ForwardAndGradientsMatchGeluOfLinears) {
  const MlpCase &c = GetParam();
  if (!models::geluVectorized())
    GTEST_SKIP() << "no AVX-512: models::mlp runs linearGelu and linearScaleAdd here";
  torch::manual_seed(11);
  const int64_t in = c.shape.back();
  auto x = makeInput({c.name, c.shape, 0, true, c.layout}).mul(2).requires_grad_(true);
  auto w1 = (torch::randn({c.hidden, in}) / std::sqrt(double(in))).requires_grad_(true);
  auto w2 = (torch::randn({in, c.hidden}) / std::sqrt(double(c.hidden))).requires_grad_(true);
  auto b1 = c.bias ? torch::randn({c.hidden}).requires_grad_(true) : torch::Tensor();
  auto b2 = c.bias ? torch::randn({in}).requires_grad_(true) : torch::Tensor();
  auto scale = c.scale ? torch::randn({in}).requires_grad_(true) : torch::Tensor();
  auto residual = c.residual ? torch::randn(x.sizes()).requires_grad_(true) : torch::Tensor();

  auto y = models::mlp(x, w1, b1, w2, b2, scale, residual);
  auto want = torch::linear(torch::gelu(torch::linear(x, w1, b1)), w2, b2);
  if (c.scale)
    want = want * scale;
  if (c.residual)
    want = want + residual;
  expectClose(y, want, c.name + " forward");

  std::vector<torch::Tensor> inputs{x, w1, w2};
  std::vector<std::string> names{"dx", "dW1", "dW2"};
  for (auto [t, n] :
       {std::pair{b1, "db1"}, {b2, "db2"}, {scale, "dscale"}, {residual, "dresidual"}})
    if (t.defined()) {
      inputs.push_back(t);
      names.push_back(n);
    }
  auto weighting = torch::randn(y.sizes());
  auto got = torch::autograd::grad({(y * weighting).sum()}, inputs);
  auto ref = torch::autograd::grad({(want * weighting).sum()}, inputs);
  for (size_t i = 0; i < got.size(); ++i)
    expectClose(got[i], ref[i], c.name + " " + names[i]);
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, MlpCases,
    ::testing::Values(MlpCase{"block_nhwc", {2, 5, 6, 16}, 64, true, true, true, 1},
                      MlpCase{"rows_2d", {37, 24}, 96, true, false, false, 0},
                      MlpCase{"no_bias_scale", {3, 4, 7, 13}, 52, false, true, false, 2},
                      // Whole transpose tiles with edges, hidden not a multiple of 16.
                      MlpCase{"tiles", {203, 40}, 150, true, true, true, 0}),
    [](const auto &info) { return info.param.name; });

TEST(Linear, MlpWithoutGradientsMatchesTheChain) {
  torch::manual_seed(13);
  auto x = makeInput({"", {2, 7, 7, 32}, 0, true, 1});
  auto w1 = torch::randn({128, 32}) / 4, b1 = torch::randn({128});
  auto w2 = torch::randn({32, 128}) / 8, b2 = torch::randn({32});
  auto scale = torch::randn({32});
  auto residual = torch::randn({2, 32, 7, 7})
                      .contiguous(torch::MemoryFormat::ChannelsLast)
                      .permute({0, 2, 3, 1});
  auto want = residual + scale * torch::linear(torch::gelu(torch::linear(x, w1, b1)), w2, b2);
  torch::NoGradGuard noGrad;
  expectClose(models::mlp(x, w1, b1, w2, b2, scale, residual), want, "mlp, no grad");
}

} // namespace

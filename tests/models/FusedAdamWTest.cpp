// train::FusedAdamW against torch::optim::AdamW: the same parameters and
// gradients through several steps, two groups (with and without weight
// decay), float and double parameters, a channels-last parameter with
// channels-last gradients (fused) and one whose gradient is contiguous (the
// per-tensor fallback), a parameter without a gradient, and AMSGrad. The
// parameters and the whole optimizer state must agree.
#include "models/train/FusedAdamW.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cstdlib>
#include <string>
#include <vector>

using namespace slak;

namespace {

std::vector<torch::Tensor> makeParams() {
  torch::manual_seed(7);
  std::vector<torch::Tensor> ps;
  ps.push_back(torch::randn({64, 3})); // decay, float
  ps.push_back(torch::randn({8, 4, 5, 5}).contiguous(at::MemoryFormat::ChannelsLast));
  ps.push_back(torch::randn({6, 3, 3, 3}).contiguous(at::MemoryFormat::ChannelsLast));
  ps.push_back(torch::randn({33}, torch::kFloat64)); // decay, double
  ps.push_back(torch::randn({17}));                  // no decay
  ps.push_back(torch::randn({5}));                   // never has a gradient
  for (auto &p : ps)
    p.set_requires_grad(true);
  return ps;
}

/// Gradients for step `s`: parameter 2's is contiguous (its strides differ
/// from the channels-last parameter's), the others follow their parameter.
void setGrads(std::vector<torch::Tensor> &ps, int s) {
  torch::manual_seed(100 + s);
  for (size_t i = 0; i + 1 < ps.size(); ++i) {
    torch::Tensor g = torch::randn(ps[i].sizes(), ps[i].options().requires_grad(false));
    g = i == 2 ? g.contiguous() : g.contiguous(ps[i].suggest_memory_format());
    // Some exact zeros and large values, as sparse training gives.
    g.masked_fill_(torch::rand(g.sizes()) < 0.2, 0.0);
    ps[i].mutable_grad() = g * (s % 2 ? 10.0 : 0.1);
  }
}

template <typename Opt>
std::unique_ptr<Opt> makeOptimizer(std::vector<torch::Tensor> &ps, bool amsgrad) {
  std::vector<torch::optim::OptimizerParamGroup> groups;
  auto decay = torch::optim::AdamWOptions(3e-3).weight_decay(0.05).amsgrad(amsgrad);
  auto none = torch::optim::AdamWOptions(3e-3).weight_decay(0.0).amsgrad(amsgrad);
  groups.emplace_back(std::vector<torch::Tensor>{ps[0], ps[1], ps[2], ps[3]},
                      std::make_unique<torch::optim::AdamWOptions>(decay));
  groups.emplace_back(std::vector<torch::Tensor>{ps[4], ps[5]},
                      std::make_unique<torch::optim::AdamWOptions>(none));
  return std::make_unique<Opt>(std::move(groups), decay);
}

void expectClose(const torch::Tensor &got, const torch::Tensor &want, const std::string &what) {
  ASSERT_EQ(got.defined(), want.defined()) << what;
  if (!want.defined())
    return;
  ASSERT_EQ(got.sizes(), want.sizes()) << what;
  const double scale = want.abs().max().item<double>() + 1e-12;
  const double err = (got - want).abs().max().item<double>();
  // Same formula, other rounding (the fused kernel computes the moments with
  // fused multiply-adds).
  const double tol = want.scalar_type() == torch::kFloat64 ? 1e-12 : 2e-6;
  EXPECT_LE(err, tol * scale) << what << ": max |error| " << err << ", max |value| " << scale;
}

void compare(bool amsgrad) {
  auto want = makeParams(), got = makeParams();
  auto reference = makeOptimizer<torch::optim::AdamW>(want, amsgrad);
  auto fused = makeOptimizer<train::FusedAdamW>(got, amsgrad);
  for (int s = 0; s < 6; ++s) {
    setGrads(want, s);
    setGrads(got, s);
    reference->step();
    fused->step();
    for (size_t i = 0; i < want.size(); ++i)
      expectClose(got[i].detach(), want[i].detach(),
                  "step " + std::to_string(s) + " parameter " + std::to_string(i));
  }
  for (size_t i = 0; i < want.size(); ++i) {
    const std::string what = "state of parameter " + std::to_string(i);
    auto w = reference->state().find(want[i].unsafeGetTensorImpl());
    auto g = fused->state().find(got[i].unsafeGetTensorImpl());
    ASSERT_EQ(w == reference->state().end(), g == fused->state().end()) << what;
    if (w == reference->state().end())
      continue; // parameter 5: no gradient, no state
    const auto &ws = static_cast<const torch::optim::AdamWParamState &>(*w->second);
    const auto &gs = static_cast<const torch::optim::AdamWParamState &>(*g->second);
    EXPECT_EQ(gs.step(), ws.step()) << what;
    expectClose(gs.exp_avg(), ws.exp_avg(), what + " exp_avg");
    expectClose(gs.exp_avg_sq(), ws.exp_avg_sq(), what + " exp_avg_sq");
    expectClose(gs.max_exp_avg_sq(), ws.max_exp_avg_sq(), what + " max_exp_avg_sq");
    EXPECT_EQ(gs.exp_avg().strides(), got[i].strides()) << what << ": moments keep the layout";
  }
  EXPECT_EQ(fused->state().size(), 5u);
}

} // namespace

TEST(FusedAdamW, MatchesTorchAdamW) { compare(false); }

TEST(FusedAdamW, MatchesTorchAdamWWithAmsgrad) { compare(true); }

// The update moves the parameters (a test whose optimizer did nothing would
// pass the comparisons above only if the reference did nothing too).
TEST(FusedAdamW, StepsMoveTheParameters) {
  auto ps = makeParams();
  std::vector<torch::Tensor> before;
  for (auto &p : ps)
    before.push_back(p.detach().clone());
  auto opt = makeOptimizer<train::FusedAdamW>(ps, false);
  setGrads(ps, 0);
  opt->step();
  for (size_t i = 0; i + 1 < ps.size(); ++i)
    EXPECT_FALSE(torch::equal(ps[i].detach(), before[i])) << "parameter " << i;
  EXPECT_TRUE(torch::equal(ps.back().detach(), before.back())) << "no gradient, no update";
}

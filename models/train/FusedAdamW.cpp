#include "models/train/FusedAdamW.h"

#include <ATen/ATen.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <vector>

namespace slak::train {
namespace {

bool useTorchStep() {
  static const bool torchStep = [] {
    const char *v = std::getenv("SLAK_ADAMW");
    return v && std::strcmp(v, "torch") == 0;
  }();
  return torchStep;
}

/// Whether `t` walks like `p` as one flat array (same sizes and strides,
/// dense, no overlap).
bool sameFlatLayout(const at::Tensor &p, const at::Tensor &t) {
  return t.defined() && t.sizes() == p.sizes() && t.strides() == p.strides() &&
         t.scalar_type() == p.scalar_type() && t.device() == p.device();
}

bool fusable(const at::Tensor &p, const torch::optim::AdamWParamState &state, bool amsgrad) {
  const at::Tensor &grad = p.grad(); // dense: step() refuses sparse gradients
  return p.device().is_cpu() && (p.scalar_type() == at::kFloat || p.scalar_type() == at::kDouble) &&
         p.is_non_overlapping_and_dense() && sameFlatLayout(p, grad) &&
         sameFlatLayout(p, state.exp_avg()) && sameFlatLayout(p, state.exp_avg_sq()) &&
         (!amsgrad || sameFlatLayout(p, state.max_exp_avg_sq()));
}

/// torch::optim::AdamW's update of one parameter whose step count has
/// already been advanced.
void unfusedUpdate(at::Tensor &p, torch::optim::AdamWParamState &state,
                   const torch::optim::AdamWOptions &o) {
  const at::Tensor &grad = p.grad();
  const double beta1 = std::get<0>(o.betas()), beta2 = std::get<1>(o.betas());
  if (o.weight_decay() != 0)
    p.mul_(1 - o.lr() * o.weight_decay());
  const double correction1 = 1 - std::pow(beta1, static_cast<double>(state.step()));
  const double correction2 = 1 - std::pow(beta2, static_cast<double>(state.step()));
  state.exp_avg().mul_(beta1).add_(grad, 1 - beta1);
  state.exp_avg_sq().mul_(beta2).addcmul_(grad, grad, 1 - beta2);
  at::Tensor second = state.exp_avg_sq();
  if (o.amsgrad()) {
    at::max_out(state.max_exp_avg_sq(), state.exp_avg_sq(), state.max_exp_avg_sq());
    second = state.max_exp_avg_sq();
  }
  at::Tensor denom = (second.sqrt() / std::sqrt(correction2)).add_(o.eps());
  p.addcdiv_(state.exp_avg(), denom, -o.lr() / correction1);
}

/// The tensors of one fused call (one dtype).
struct FusedBatch {
  std::vector<at::Tensor> params, grads, avgs, sqs, maxSqs, steps;
  void add(const at::Tensor &p, torch::optim::AdamWParamState &state, bool amsgrad) {
    params.push_back(p);
    grads.push_back(p.grad());
    avgs.push_back(state.exp_avg());
    sqs.push_back(state.exp_avg_sq());
    if (amsgrad)
      maxSqs.push_back(state.max_exp_avg_sq());
    // The kernel reads the step count (already advanced) from a tensor.
    steps.push_back(at::scalar_tensor(static_cast<double>(state.step()), at::kFloat));
  }
  void run(const torch::optim::AdamWOptions &o) {
    if (!params.empty())
      at::_fused_adamw_(params, grads, avgs, sqs, maxSqs, steps, o.lr(), std::get<0>(o.betas()),
                        std::get<1>(o.betas()), o.weight_decay(), o.eps(), o.amsgrad(),
                        /*maximize=*/false);
  }
};

} // namespace

torch::Tensor FusedAdamW::step(LossClosure closure) {
  if (useTorchStep())
    return torch::optim::AdamW::step(std::move(closure));
  torch::NoGradGuard noGrad;
  torch::Tensor loss;
  if (closure) {
    at::AutoGradMode enableGrad(true);
    loss = closure();
  }
  for (auto &group : param_groups()) {
    const auto &o = static_cast<const torch::optim::AdamWOptions &>(group.options());
    FusedBatch floats, doubles; // the kernel takes one dtype per call
    for (auto &p : group.params()) {
      if (!p.grad().defined())
        continue;
      TORCH_CHECK(!p.grad().is_sparse(), "AdamW does not support sparse gradients");
      auto &slot = state()[p.unsafeGetTensorImpl()];
      if (!slot) {
        auto fresh = std::make_unique<torch::optim::AdamWParamState>();
        fresh->step(0);
        fresh->exp_avg(torch::zeros_like(p, at::MemoryFormat::Preserve));
        fresh->exp_avg_sq(torch::zeros_like(p, at::MemoryFormat::Preserve));
        if (o.amsgrad())
          fresh->max_exp_avg_sq(torch::zeros_like(p, at::MemoryFormat::Preserve));
        slot = std::move(fresh);
      }
      auto &state = static_cast<torch::optim::AdamWParamState &>(*slot);
      state.step(state.step() + 1);
      if (!fusable(p, state, o.amsgrad()))
        unfusedUpdate(p, state, o);
      else
        (p.scalar_type() == at::kFloat ? floats : doubles).add(p, state, o.amsgrad());
    }
    floats.run(o);
    doubles.run(o);
  }
  return loss;
}

} // namespace slak::train

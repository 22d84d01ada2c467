#include "runtime/Reparam.h"

#include <ATen/ATen.h>
#include <torch/library.h>

#include <algorithm>

namespace slak::runtime {
namespace {

/// One branch during folding.
struct FoldBranch {
  at::Tensor weight, mask; // weight double, mask uint8 or undefined
  int64_t kh, kw, ph, pw;
};

} // namespace

ReparamLayer reparameterize(const std::vector<ReparamBranch> &branches, double eps,
                            const at::Tensor &sumBias) {
  TORCH_CHECK(!branches.empty(), "slak::reparameterize: no branches");
  const int64_t c = branches[0].weight.size(0);
  std::vector<FoldBranch> folded;
  at::Tensor bias;
  for (size_t b = 0; b < branches.size(); ++b) {
    const ReparamBranch &in = branches[b];
    const at::Tensor &w = in.weight;
    TORCH_CHECK(w.dim() == 4 && w.size(0) == c && w.size(1) == 1, "slak::reparameterize: weights[",
                b, "] has shape ", w.sizes(), ", expected [", c, ", 1, KH, KW]");
    FoldBranch f;
    f.kh = w.size(2);
    f.kw = w.size(3);
    f.ph = f.kh / 2;
    f.pw = f.kw / 2;
    f.weight = w.to(at::kDouble);
    if (in.mask.defined()) {
      TORCH_CHECK(in.mask.sizes() == w.sizes(), "slak::reparameterize: masks[", b, "] has shape ",
                  in.mask.sizes(), ", expected ", w.sizes());
      f.mask = in.mask.detach().ne(0).to(at::kCPU, at::kByte);
      f.weight = f.weight * in.mask.to(w.device(), at::kDouble);
    }
    if (in.bnRunningMean.defined()) {
      const at::Tensor mean = in.bnRunningMean.to(at::kDouble);
      const at::Tensor var = in.bnRunningVar.to(at::kDouble);
      const at::Tensor gamma =
          in.bnWeight.defined() ? in.bnWeight.to(at::kDouble) : at::ones({c}, mean.options());
      const at::Tensor beta =
          in.bnBias.defined() ? in.bnBias.to(at::kDouble) : at::zeros({c}, mean.options());
      const at::Tensor scale = gamma / at::sqrt(var + eps);
      f.weight = f.weight * scale.view({c, 1, 1, 1});
      const at::Tensor shift = beta - mean * scale;
      bias = bias.defined() ? bias + shift : shift;
    }
    folded.push_back(std::move(f));
  }
  if (sumBias.defined())
    bias = bias.defined() ? bias + sumBias.to(at::kDouble) : sumBias.to(at::kDouble);

  std::stable_sort(folded.begin(), folded.end(), [](const FoldBranch &a, const FoldBranch &b) {
    return a.kh * a.kw > b.kh * b.kw;
  });
  std::vector<FoldBranch> kept;
  for (FoldBranch &branch : folded) {
    FoldBranch *host = nullptr;
    for (FoldBranch &cand : kept) {
      const int64_t dh = cand.ph - branch.ph, dw = cand.pw - branch.pw;
      if (dh >= 0 && dw >= 0 && dh + branch.kh <= cand.kh && dw + branch.kw <= cand.kw) {
        host = &cand;
        break;
      }
    }
    if (!host) {
      kept.push_back(std::move(branch));
      continue;
    }
    const int64_t dh = host->ph - branch.ph, dw = host->pw - branch.pw;
    const std::vector<int64_t> pad = {dw, host->kw - branch.kw - dw, dh, host->kh - branch.kh - dh};
    host->weight = host->weight + at::constant_pad_nd(branch.weight, pad, 0);
    if (host->mask.defined()) {
      const at::Tensor nested = branch.mask.defined()
                                    ? branch.mask
                                    : at::ones(branch.weight.sizes(), host->mask.options());
      host->mask = at::logical_or(host->mask, at::constant_pad_nd(nested, pad, 0)).to(at::kByte);
    }
  }

  ReparamLayer out;
  const at::ScalarType type = branches[0].weight.scalar_type();
  for (const FoldBranch &f : kept) {
    out.weights.push_back(f.weight.to(type));
    out.masks.push_back(f.mask);
    out.paddings.emplace_back(f.ph, f.pw);
  }
  if (bias.defined())
    out.bias = bias.to(type);
  return out;
}

namespace {

at::Tensor orUndefined(const std::optional<at::Tensor> &t) {
  return t && t->defined() ? *t : at::Tensor();
}

/// The op form: per-branch BatchNorm lists empty (no BatchNorm) or one entry
/// per branch; dense masks come back as empty tensors, no shift as zeros.
std::tuple<std::vector<at::Tensor>, std::vector<at::Tensor>, at::Tensor, std::vector<int64_t>>
reparameterizeOp(at::TensorList weights, const c10::List<std::optional<at::Tensor>> &masks,
                 const c10::List<std::optional<at::Tensor>> &bnWeight,
                 const c10::List<std::optional<at::Tensor>> &bnBias,
                 const c10::List<std::optional<at::Tensor>> &bnRunningMean,
                 const c10::List<std::optional<at::Tensor>> &bnRunningVar, double eps,
                 const std::optional<at::Tensor> &bias) {
  const size_t n = weights.size();
  auto sized = [n](const c10::List<std::optional<at::Tensor>> &list, const char *name) {
    TORCH_CHECK(list.empty() || list.size() == n, "slak::reparameterize: ", name, " has ",
                list.size(), " entries, expected ", n, " (one per branch) or none");
  };
  sized(masks, "masks");
  sized(bnWeight, "bn_weight");
  sized(bnBias, "bn_bias");
  sized(bnRunningMean, "bn_running_mean");
  sized(bnRunningVar, "bn_running_var");
  TORCH_CHECK(bnRunningMean.size() == bnRunningVar.size(),
              "slak::reparameterize: bn_running_mean and bn_running_var differ in length");
  std::vector<ReparamBranch> branches(n);
  for (size_t b = 0; b < n; ++b) {
    branches[b].weight = weights[b];
    if (!masks.empty())
      branches[b].mask = orUndefined(masks.get(b));
    if (!bnRunningMean.empty()) {
      branches[b].bnRunningMean = orUndefined(bnRunningMean.get(b));
      branches[b].bnRunningVar = orUndefined(bnRunningVar.get(b));
      if (!bnWeight.empty())
        branches[b].bnWeight = orUndefined(bnWeight.get(b));
      if (!bnBias.empty())
        branches[b].bnBias = orUndefined(bnBias.get(b));
    }
  }
  ReparamLayer layer = reparameterize(branches, eps, orUndefined(bias));
  std::vector<at::Tensor> outMasks;
  for (const at::Tensor &m : layer.masks)
    outMasks.push_back(m.defined() ? m : at::empty({0}, at::kByte));
  std::vector<int64_t> padding;
  for (const auto &[ph, pw] : layer.paddings) {
    padding.push_back(ph);
    padding.push_back(pw);
  }
  at::Tensor outBias =
      layer.bias.defined() ? layer.bias : at::zeros({weights[0].size(0)}, weights[0].options());
  return {layer.weights, outMasks, outBias, padding};
}

} // namespace
} // namespace slak::runtime

TORCH_LIBRARY_FRAGMENT(slak, m) {
  m.def("reparameterize(Tensor[] weights, Tensor?[] masks, Tensor?[] bn_weight, "
        "Tensor?[] bn_bias, Tensor?[] bn_running_mean, Tensor?[] bn_running_var, float eps, "
        "Tensor? bias=None) -> (Tensor[] weights, Tensor[] masks, Tensor bias, int[] padding)");
}

TORCH_LIBRARY_IMPL(slak, CompositeImplicitAutograd, m) {
  m.impl("reparameterize", &slak::runtime::reparameterizeOp);
}

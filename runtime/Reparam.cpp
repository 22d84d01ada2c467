#include "runtime/Reparam.h"

#include <ATen/ATen.h>
#include <torch/library.h>

#include "codegen/Reparam.h"

namespace slak::runtime {
namespace {

/// codegen's fold on ATen tensors (plain differentiable ops): kernels
/// [C, 1, KH, KW] in double on the weights' device, masks uint8 on the CPU
/// (undefined = dense), vectors [C].
struct TensorFoldOps {
  using Kernel = at::Tensor;
  using Mask = at::Tensor;
  using Vector = at::Tensor;

  static std::vector<int64_t> nestedPadding(const codegen::KernelWindow &hw,
                                            const codegen::KernelWindow &iw) {
    const auto [dh, dw] = *hw.offsetOf(iw);
    return {dw, hw.kernelW - iw.kernelW - dw, dh, hw.kernelH - iw.kernelH - dh};
  }
  bool hasMask(const Mask &m) const { return m.defined(); }
  Kernel masked(const Kernel &w, const Mask &m) const { return w * m.to(w.device(), at::kDouble); }
  Kernel scaled(const Kernel &w, const Vector &s) const { return w * s.view({-1, 1, 1, 1}); }
  Vector add(const Vector &a, const Vector &b) const { return a + b; }
  Vector sub(const Vector &a, const Vector &b) const { return a - b; }
  Vector mul(const Vector &a, const Vector &b) const { return a * b; }
  Vector div(const Vector &a, const Vector &b) const { return a / b; }
  Vector sqrtPlus(const Vector &v, double eps) const { return at::sqrt(v + eps); }
  Kernel addNested(const Kernel &host, const codegen::KernelWindow &hw, const Kernel &inner,
                   const codegen::KernelWindow &iw) const {
    return host + at::constant_pad_nd(inner, nestedPadding(hw, iw), 0);
  }
  Mask orNested(const Mask &host, const codegen::KernelWindow &hw, const Mask &inner,
                const codegen::KernelWindow &iw) const {
    const at::Tensor live =
        inner.defined() ? inner
                        : at::ones({host.size(0), 1, iw.kernelH, iw.kernelW}, host.options());
    return at::logical_or(host, at::constant_pad_nd(live, nestedPadding(hw, iw), 0)).to(at::kByte);
  }
};

} // namespace

ReparamLayer reparameterize(const std::vector<ReparamBranch> &branches, double eps,
                            const at::Tensor &sumBias) {
  TORCH_CHECK(!branches.empty(), "slak::reparameterize: no branches");
  const int64_t c = branches[0].weight.size(0);
  std::vector<codegen::FoldBranch<TensorFoldOps>> inputs;
  for (size_t b = 0; b < branches.size(); ++b) {
    const ReparamBranch &in = branches[b];
    const at::Tensor &w = in.weight;
    TORCH_CHECK(w.dim() == 4 && w.size(0) == c && w.size(1) == 1, "slak::reparameterize: weights[",
                b, "] has shape ", w.sizes(), ", expected [", c, ", 1, KH, KW]");
    codegen::FoldBranch<TensorFoldOps> f;
    f.window =
        codegen::KernelWindow::same(static_cast<int>(w.size(2)), static_cast<int>(w.size(3)));
    f.weight = w.to(at::kDouble);
    if (in.mask.defined()) {
      TORCH_CHECK(in.mask.sizes() == w.sizes(), "slak::reparameterize: masks[", b, "] has shape ",
                  in.mask.sizes(), ", expected ", w.sizes());
      f.mask = in.mask.detach().ne(0).to(at::kCPU, at::kByte);
    }
    if (in.bnRunningMean.defined()) {
      const at::Tensor mean = in.bnRunningMean.to(at::kDouble);
      f.hasNorm = true;
      f.norm.mean = mean;
      f.norm.variance = in.bnRunningVar.to(at::kDouble);
      f.norm.gamma =
          in.bnWeight.defined() ? in.bnWeight.to(at::kDouble) : at::ones({c}, mean.options());
      f.norm.beta =
          in.bnBias.defined() ? in.bnBias.to(at::kDouble) : at::zeros({c}, mean.options());
      f.norm.epsilon = eps;
    }
    inputs.push_back(std::move(f));
  }
  const at::Tensor layerBias = sumBias.defined() ? sumBias.to(at::kDouble) : at::Tensor();
  codegen::FoldedLayer<TensorFoldOps> folded = codegen::foldLayerWith(
      TensorFoldOps{}, std::move(inputs), sumBias.defined() ? &layerBias : nullptr);

  ReparamLayer out;
  const at::ScalarType type = branches[0].weight.scalar_type();
  for (size_t b = 0; b < folded.weights.size(); ++b) {
    out.weights.push_back(folded.weights[b].to(type));
    out.masks.push_back(folded.masks[b]);
    out.paddings.emplace_back(folded.windows[b].padH, folded.windows[b].padW);
  }
  if (folded.hasBias)
    out.bias = folded.bias.to(type);
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

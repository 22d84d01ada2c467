// Reparam: structural re-parameterisation of a large-kernel layer for
// inference (DESIGN section 1), written once for every caller:
//
//   W'_b   = W_b * mask_b * s_b,   s_b = gamma_b / sqrt(var_b + eps_b)
//   bias'  = sum_b (beta_b - (mean_b - convBias_b) * s_b) + bias
//
// (a branch without BatchNorm has s_b = 1 and adds its conv bias), then every
// branch whose window nests in a larger one (the 5x5 kernel inside 51x5) is
// zero-padded and added to it, its mask OR-ed into the larger one's.
//
// The algorithm is a template over the arrays it works on, so that
// `--slak-fuse-lk=mode=infer` and deploy's package check (plain double
// arrays, `foldLayer` below) and LKConv2d's eval mode and
// `torch.ops.slak.reparameterize` (differentiable ATen tensors,
// runtime/Reparam.cpp) run the same steps in the same order. `Ops` supplies
// the array primitives:
//
//   Ops::Kernel, Ops::Mask, Ops::Vector   [C][KH][KW], same shape, [C]
//   bool hasMask(const Mask &)            false: every tap live
//   Kernel masked(const Kernel &, const Mask &)
//   Kernel scaled(const Kernel &, const Vector &s)         W[c] * s[c]
//   Vector add/sub/mul/div(const Vector &, const Vector &) element-wise
//   Vector sqrtPlus(const Vector &v, double eps)            sqrt(v + eps)
//   Kernel addNested(const Kernel &host, Window, const Kernel &inner, Window)
//   Mask orNested(const Mask &host, Window, const Mask &inner, Window)
//        (inner may have no mask: all of its taps are live)
#pragma once

#include "codegen/KernelWindow.h"

#include <cstdint>
#include <optional>
#include <utility>
#include <vector>

namespace slak::codegen {

/// Which branches survive the nested-window merge and where the others go.
struct MergePlan {
  /// Every branch index, larger areas first, argument order among equals:
  /// the order in which branches are placed and added.
  std::vector<size_t> order;
  /// The surviving branch indices, in `order`.
  std::vector<size_t> survivors;
  /// Per input branch: the index into `survivors` it is added to (a
  /// survivor points at itself).
  std::vector<size_t> host;
};

/// Each branch joins the first larger-or-equal window, in survivor order,
/// that holds it.
MergePlan planNestedMerge(const std::vector<KernelWindow> &windows);

/// One branch as the fold reads it. `bias` is a conv bias before the
/// BatchNorm (most layers have none); `norm` its BatchNorm in eval form.
template <class Ops> struct FoldBranch {
  typename Ops::Kernel weight;
  typename Ops::Mask mask;
  KernelWindow window;
  bool hasBias = false;
  typename Ops::Vector bias;
  struct Norm {
    typename Ops::Vector gamma, beta, mean, variance;
    double epsilon = 1e-5;
  };
  bool hasNorm = false;
  Norm norm;
};

template <class Ops> struct FoldedLayer {
  std::vector<typename Ops::Kernel> weights;
  std::vector<typename Ops::Mask> masks;
  std::vector<KernelWindow> windows;
  /// False when no branch and no layer bias adds a shift.
  bool hasBias = false;
  typename Ops::Vector bias;
};

template <class Ops>
FoldedLayer<Ops> foldLayerWith(const Ops &ops, std::vector<FoldBranch<Ops>> branches,
                               const typename Ops::Vector *layerBias) {
  using Vector = typename Ops::Vector;
  FoldedLayer<Ops> out;
  auto addBias = [&](const Vector &shift) {
    out.bias = out.hasBias ? ops.add(out.bias, shift) : shift;
    out.hasBias = true;
  };
  std::vector<KernelWindow> windows;
  for (FoldBranch<Ops> &b : branches) {
    if (ops.hasMask(b.mask))
      b.weight = ops.masked(b.weight, b.mask);
    if (b.hasNorm) {
      const Vector scale = ops.div(b.norm.gamma, ops.sqrtPlus(b.norm.variance, b.norm.epsilon));
      // A conv bias before the BatchNorm moves into its mean: BN(z + b) = BN with mean - b.
      const Vector mean = b.hasBias ? ops.sub(b.norm.mean, b.bias) : b.norm.mean;
      b.weight = ops.scaled(b.weight, scale);
      addBias(ops.sub(b.norm.beta, ops.mul(mean, scale)));
    } else if (b.hasBias) {
      addBias(b.bias);
    }
    windows.push_back(b.window);
  }
  if (layerBias)
    addBias(*layerBias);

  const MergePlan plan = planNestedMerge(windows);
  for (size_t s : plan.survivors) {
    out.weights.push_back(branches[s].weight);
    out.masks.push_back(branches[s].mask);
    out.windows.push_back(windows[s]);
  }
  for (size_t b : plan.order) {
    const size_t h = plan.host[b];
    if (plan.survivors[h] == b)
      continue;
    out.weights[h] = ops.addNested(out.weights[h], out.windows[h], branches[b].weight, windows[b]);
    if (ops.hasMask(out.masks[h]))
      out.masks[h] = ops.orNested(out.masks[h], out.windows[h], branches[b].mask, windows[b]);
  }
  return out;
}

/// The fold on plain arrays: kernels [C][KH][KW] in double, masks 0/1
/// bytes (empty = dense), vectors [C].
struct ArrayFoldOps {
  using Kernel = std::vector<double>;
  using Mask = std::vector<uint8_t>;
  using Vector = std::vector<double>;
  int64_t channels = 0;

  bool hasMask(const Mask &m) const { return !m.empty(); }
  Kernel masked(const Kernel &w, const Mask &m) const;
  Kernel scaled(const Kernel &w, const Vector &s) const;
  Vector add(const Vector &a, const Vector &b) const;
  Vector sub(const Vector &a, const Vector &b) const;
  Vector mul(const Vector &a, const Vector &b) const;
  Vector div(const Vector &a, const Vector &b) const;
  Vector sqrtPlus(const Vector &v, double eps) const;
  Kernel addNested(const Kernel &host, const KernelWindow &hw, const Kernel &inner,
                   const KernelWindow &iw) const;
  Mask orNested(const Mask &host, const KernelWindow &hw, const Mask &inner,
                const KernelWindow &iw) const;
};

using ArrayFoldBranch = FoldBranch<ArrayFoldOps>;
using ArrayFoldedLayer = FoldedLayer<ArrayFoldOps>;

/// foldLayerWith on plain arrays of `channels` channels; `layerBias` [C]
/// on the sum, null for none.
ArrayFoldedLayer foldLayer(int64_t channels, std::vector<ArrayFoldBranch> branches,
                           const std::vector<double> *layerBias);

} // namespace slak::codegen

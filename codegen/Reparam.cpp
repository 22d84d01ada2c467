#include "codegen/Reparam.h"

#include <algorithm>
#include <cmath>
#include <numeric>

namespace slak::codegen {

MergePlan planNestedMerge(const std::vector<KernelWindow> &windows) {
  MergePlan plan;
  plan.order.resize(windows.size());
  std::iota(plan.order.begin(), plan.order.end(), size_t{0});
  std::stable_sort(plan.order.begin(), plan.order.end(),
                   [&](size_t a, size_t b) { return windows[a].area() > windows[b].area(); });
  plan.host.assign(windows.size(), 0);
  for (size_t b : plan.order) {
    size_t s = 0;
    while (s < plan.survivors.size() && !windows[plan.survivors[s]].offsetOf(windows[b]))
      ++s;
    if (s == plan.survivors.size())
      plan.survivors.push_back(b);
    plan.host[b] = s;
  }
  return plan;
}

namespace {

using Vector = ArrayFoldOps::Vector;

template <class Fn> Vector zipWith(const Vector &a, const Vector &b, Fn fn) {
  Vector out(a.size());
  for (size_t i = 0; i < a.size(); ++i)
    out[i] = fn(a[i], b[i]);
  return out;
}

/// Calls fn(hostIndex, innerIndex) for every tap of `iw` placed inside `hw`.
template <class Fn>
void forNestedTaps(int64_t channels, const KernelWindow &hw, const KernelWindow &iw, Fn fn) {
  const auto [dh, dw] = *hw.offsetOf(iw);
  for (int64_t c = 0; c < channels; ++c)
    for (int64_t u = 0; u < iw.kernelH; ++u)
      for (int64_t v = 0; v < iw.kernelW; ++v)
        fn((c * hw.kernelH + u + dh) * hw.kernelW + v + dw, (c * iw.kernelH + u) * iw.kernelW + v);
}

} // namespace

ArrayFoldOps::Kernel ArrayFoldOps::masked(const Kernel &w, const Mask &m) const {
  Kernel out(w.size());
  for (size_t i = 0; i < w.size(); ++i)
    out[i] = w[i] * (m[i] ? 1.0 : 0.0);
  return out;
}

ArrayFoldOps::Kernel ArrayFoldOps::scaled(const Kernel &w, const Vector &s) const {
  Kernel out(w);
  const size_t window = channels ? w.size() / static_cast<size_t>(channels) : 0;
  for (size_t i = 0; i < w.size(); ++i)
    out[i] *= s[i / window];
  return out;
}

Vector ArrayFoldOps::add(const Vector &a, const Vector &b) const {
  return zipWith(a, b, [](double x, double y) { return x + y; });
}
Vector ArrayFoldOps::sub(const Vector &a, const Vector &b) const {
  return zipWith(a, b, [](double x, double y) { return x - y; });
}
Vector ArrayFoldOps::mul(const Vector &a, const Vector &b) const {
  return zipWith(a, b, [](double x, double y) { return x * y; });
}
Vector ArrayFoldOps::div(const Vector &a, const Vector &b) const {
  return zipWith(a, b, [](double x, double y) { return x / y; });
}
Vector ArrayFoldOps::sqrtPlus(const Vector &v, double eps) const {
  Vector out(v.size());
  for (size_t i = 0; i < v.size(); ++i)
    out[i] = std::sqrt(v[i] + eps);
  return out;
}

ArrayFoldOps::Kernel ArrayFoldOps::addNested(const Kernel &host, const KernelWindow &hw,
                                             const Kernel &inner, const KernelWindow &iw) const {
  Kernel out(host);
  forNestedTaps(channels, hw, iw, [&](int64_t h, int64_t i) { out[h] += inner[i]; });
  return out;
}

ArrayFoldOps::Mask ArrayFoldOps::orNested(const Mask &host, const KernelWindow &hw,
                                          const Mask &inner, const KernelWindow &iw) const {
  Mask out(host);
  forNestedTaps(channels, hw, iw,
                [&](int64_t h, int64_t i) { out[h] |= inner.empty() ? 1 : (inner[i] ? 1 : 0); });
  return out;
}

ArrayFoldedLayer foldLayer(int64_t channels, std::vector<ArrayFoldBranch> branches,
                           const std::vector<double> *layerBias) {
  ArrayFoldOps ops;
  ops.channels = channels;
  return foldLayerWith(ops, std::move(branches), layerBias);
}

} // namespace slak::codegen

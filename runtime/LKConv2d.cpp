#include "runtime/LKConv2d.h"

#include <ATen/ATen.h>
#include <torch/nn/init.h>

#include <algorithm>
#include <cmath>
#include <numeric>

#include "runtime/LayerTaps.h"
#include "runtime/LkConvOp.h"
#include "runtime/Reparam.h"

namespace slak {
namespace {

const char *const kBranchNames[] = {"lora1", "lora2", "small"};

} // namespace

LKConv2dImpl::LKConv2dImpl(LKConv2dOptions options) : options_(std::move(options)) {
  const int64_t c = options_.channels(), m = options_.kernel_size(), n = options_.width(),
                k = options_.small_kernel();
  TORCH_CHECK(c > 0, "slak::LKConv2d: channels is ", c, ", expected a positive count");
  TORCH_CHECK(m > 0 && m % 2 == 1, "slak::LKConv2d: kernel_size is ", m,
              ", expected an odd positive size (SLaK: 51, 49, 47, 13)");
  TORCH_CHECK(n > 0 && n % 2 == 1, "slak::LKConv2d: width is ", n,
              ", expected an odd positive size (SLaK: 5)");
  TORCH_CHECK(k == 0 || (k > 0 && k % 2 == 1), "slak::LKConv2d: small_kernel is ", k,
              ", expected 0 (none) or an odd positive size (SLaK: 5)");
  TORCH_CHECK(!(options_.bias() && options_.bn()),
              "slak::LKConv2d: bias=true needs bn=false (the BatchNorms carry the shift)");
  std::vector<std::pair<int64_t, int64_t>> windows = {{m, n}, {n, m}};
  if (k > 0)
    windows.emplace_back(k, k);
  // The branches' weights are views of one flat storage, branch after
  // branch, which is how lk_conv takes them (no concatenation per call).
  int64_t total = 0;
  for (const auto &[kh, kw] : windows)
    total += c * kh * kw;
  const at::Tensor storage = at::empty({total});
  int64_t offset = 0;
  for (size_t b = 0; b < windows.size(); ++b) {
    const auto [kh, kw] = windows[b];
    at::Tensor w = storage.narrow(0, offset, c * kh * kw).view({c, 1, kh, kw});
    offset += c * kh * kw;
    // nn.Conv2d's default init (kaiming uniform, a = sqrt(5)): U(-1/sqrt(fan_in), ..).
    const double bound = 1.0 / std::sqrt(static_cast<double>(kh * kw));
    {
      at::NoGradGuard noGrad;
      w.uniform_(-bound, bound);
    }
    weights_.push_back(register_parameter(std::string(kBranchNames[b]) + "_weight", w));
    if (options_.bn())
      norms_.push_back(register_module(
          std::string(kBranchNames[b]) + "_bn",
          torch::nn::BatchNorm2d(
              torch::nn::BatchNorm2dOptions(c).eps(options_.eps()).momentum(options_.momentum()))));
  }
  if (options_.bias())
    bias_ = register_parameter("bias", at::zeros({c}));
  masks_.resize(weights_.size());
}

std::vector<at::Tensor> LKConv2dImpl::branch_weights() const { return weights_; }

void LKConv2dImpl::set_masks(const std::vector<at::Tensor> &masks) {
  TORCH_CHECK(masks.empty() || masks.size() == weights_.size(),
              "slak::LKConv2d::set_masks: ", masks.size(), " masks, expected ", weights_.size(),
              " (lora1, lora2", weights_.size() > 2 ? ", small" : "",
              "; undefined = dense) or none");
  std::vector<at::Tensor> stored(weights_.size());
  for (size_t b = 0; b < masks.size(); ++b) {
    if (!masks[b].defined())
      continue;
    TORCH_CHECK(masks[b].sizes() == weights_[b].sizes(), "slak::LKConv2d::set_masks: mask for ",
                kBranchNames[b], " (branch ", b, ") has shape ", masks[b].sizes(), ", expected ",
                weights_[b].sizes());
    stored[b] = live_mask(masks[b]);
  }
  masks_ = std::move(stored);
  make_layer_taps(weights_, masks_); // read the masks once, here
  ++maskGeneration_;
}

std::vector<int64_t> LKConv2dImpl::stateStamp() const {
  std::vector<int64_t> stamp = {static_cast<int64_t>(maskGeneration_)};
  auto add = [&](const at::Tensor &t) {
    if (!t.defined())
      return;
    stamp.push_back(reinterpret_cast<intptr_t>(t.unsafeGetTensorImpl()));
    stamp.push_back(reinterpret_cast<intptr_t>(t.data_ptr()));
    stamp.push_back(t.is_inference() ? -1 : t._version());
    stamp.push_back(static_cast<int64_t>(t.scalar_type()));
  };
  for (const at::Tensor &p : parameters())
    add(p);
  for (const at::Tensor &b : buffers())
    add(b);
  return stamp;
}

FoldedLKConv LKConv2dImpl::fold() const {
  std::vector<runtime::ReparamBranch> branches(weights_.size());
  for (size_t b = 0; b < weights_.size(); ++b) {
    branches[b].weight = weights_[b];
    branches[b].mask = masks_[b];
    if (options_.bn()) {
      const torch::nn::BatchNorm2d &norm = norms_[b];
      branches[b].bnWeight = norm->weight;
      branches[b].bnBias = norm->bias;
      branches[b].bnRunningMean = norm->running_mean;
      branches[b].bnRunningVar = norm->running_var;
    }
  }
  runtime::ReparamLayer layer = runtime::reparameterize(branches, options_.eps(), bias_);
  FoldedLKConv out;
  out.weights = std::move(layer.weights);
  out.masks = std::move(layer.masks);
  out.bias = std::move(layer.bias);
  out.paddings = std::move(layer.paddings);
  return out;
}

FoldedLKConv LKConv2dImpl::folded() {
  bool needsGrad = false;
  if (at::GradMode::is_enabled())
    for (const at::Tensor &p : parameters())
      needsGrad |= p.requires_grad();
  std::vector<int64_t> stamp = stateStamp();
  if (!needsGrad && !folded_.weights.empty() && stamp == foldedStamp_)
    return folded_;
  FoldedLKConv f;
  {
    // Cached folds hold no autograd graph; a differentiable fold is rebuilt
    // per call.
    std::optional<at::NoGradGuard> noGrad;
    if (!needsGrad)
      noGrad.emplace();
    f = fold();
  }
  // The merged masks depend on the masks only: keep the same mask tensors
  // across weight updates, so lk_conv keeps their taps.
  const bool sameMasks = folded_.taps && !foldedStamp_.empty() &&
                         foldedStamp_.front() == static_cast<int64_t>(maskGeneration_);
  if (sameMasks) {
    f.masks = folded_.masks;
    f.taps = folded_.taps;
  } else {
    f.taps = make_layer_taps(f.weights, f.masks);
  }
  if (needsGrad) {
    if (!sameMasks) {
      // Keep the merged masks for later calls without caching the weights.
      folded_.masks = f.masks;
      folded_.taps = f.taps;
      folded_.weights.clear();
      foldedStamp_ = {static_cast<int64_t>(maskGeneration_)};
    }
    return f;
  }
  folded_ = f;
  foldedStamp_ = std::move(stamp);
  return folded_;
}

at::Tensor LKConv2dImpl::forward(const at::Tensor &x) {
  LkConvOptions options;
  options.backend = options_.backend();
  if (!is_training()) {
    FoldedLKConv f = folded();
    options.paddings = f.paddings;
    return lk_conv(x, f.weights, f.masks,
                   f.bias.defined() ? std::optional<at::Tensor>(f.bias) : std::nullopt, options);
  }
  options.denseWeightGrad = denseWeightGrad_;
  if (!options_.bn())
    return lk_conv(x, weights_, masks_,
                   bias_.defined() ? std::optional<at::Tensor>(bias_) : std::nullopt, options);
  options.perBranch = true;
  return sumOfNormedBranches(lk_conv(x, weights_, masks_, std::nullopt, options), norms_);
}

void LKConv2dImpl::pretty_print(std::ostream &stream) const {
  stream << "slak::LKConv2d(channels=" << options_.channels() << ", kernels=";
  for (size_t b = 0; b < weights_.size(); ++b)
    stream << (b ? "+" : "") << weights_[b].size(2) << "x" << weights_[b].size(3);
  stream << ", bn=" << (options_.bn() ? "true" : "false") << ")";
}

} // namespace slak

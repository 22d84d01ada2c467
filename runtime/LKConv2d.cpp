#include "runtime/LKConv2d.h"

#include <ATen/ATen.h>
#include <torch/nn/init.h>

#include <algorithm>
#include <cmath>
#include <numeric>

#include "runtime/LayerTaps.h"
#include "runtime/LkConv.h"

namespace slak {
namespace {

const char *const kBranchNames[] = {"lora1", "lora2", "small"};

/// One branch during folding.
struct FoldBranch {
  at::Tensor weight, mask, bias; // weight double, mask uint8 or undefined
  int64_t kh, kw, ph, pw;
};

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
  for (size_t b = 0; b < windows.size(); ++b) {
    const auto [kh, kw] = windows[b];
    at::Tensor w = at::empty({c, 1, kh, kw});
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
    stored[b] = masks[b].detach().to(at::kCPU).ne(0).to(at::kByte).contiguous();
  }
  masks_ = std::move(stored);
  taps_ = make_layer_taps(weights_, masks_);
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
  const int64_t c = options_.channels();
  std::vector<FoldBranch> branches;
  at::Tensor bias;
  for (size_t b = 0; b < weights_.size(); ++b) {
    const at::Tensor &w = weights_[b];
    FoldBranch f;
    f.kh = w.size(2);
    f.kw = w.size(3);
    f.ph = f.kh / 2;
    f.pw = f.kw / 2;
    f.weight = w.to(at::kDouble);
    if (masks_[b].defined()) {
      f.mask = masks_[b];
      f.weight = f.weight * masks_[b].to(w.device(), at::kDouble);
    }
    if (options_.bn()) {
      const torch::nn::BatchNorm2d &norm = norms_[b];
      const at::Tensor mean = norm->running_mean.to(at::kDouble);
      const at::Tensor var = norm->running_var.to(at::kDouble);
      const at::Tensor gamma =
          norm->weight.defined() ? norm->weight.to(at::kDouble) : at::ones({c}, mean.options());
      const at::Tensor beta =
          norm->bias.defined() ? norm->bias.to(at::kDouble) : at::zeros({c}, mean.options());
      const at::Tensor scale = gamma / at::sqrt(var + options_.eps());
      f.weight = f.weight * scale.view({c, 1, 1, 1});
      f.bias = beta - mean * scale;
      bias = bias.defined() ? bias + f.bias : f.bias;
    }
    branches.push_back(std::move(f));
  }
  if (bias_.defined())
    bias = bias.defined() ? bias + bias_.to(at::kDouble) : bias_.to(at::kDouble);

  // Merge nested windows into the first larger window holding them (larger
  // areas first, program order among equals), as --slak-fuse-lk=mode=infer.
  std::stable_sort(branches.begin(), branches.end(), [](const FoldBranch &a, const FoldBranch &b) {
    return a.kh * a.kw > b.kh * b.kw;
  });
  std::vector<FoldBranch> kept;
  for (FoldBranch &branch : branches) {
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

  FoldedLKConv out;
  const at::ScalarType type = weights_[0].scalar_type();
  for (const FoldBranch &f : kept) {
    out.weights.push_back(f.weight.to(type));
    out.masks.push_back(f.mask);
    out.paddings.emplace_back(f.ph, f.pw);
  }
  if (bias.defined())
    out.bias = bias.to(type);
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
  // The merged taps depend on the masks only: keep them across weight updates.
  const bool sameMasks = folded_.taps && !foldedStamp_.empty() &&
                         foldedStamp_.front() == static_cast<int64_t>(maskGeneration_);
  f.taps = sameMasks ? folded_.taps : make_layer_taps(f.weights, f.masks);
  if (needsGrad) {
    if (!sameMasks) {
      // Keep the merged taps for later calls without caching the weights.
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
  if (!taps_)
    taps_ = make_layer_taps(weights_, masks_);
  LkConvOptions options;
  options.backend = options_.backend();
  if (!is_training()) {
    FoldedLKConv f = folded();
    options.paddings = f.paddings;
    options.taps = f.taps;
    return lk_conv(x, f.weights, {},
                   f.bias.defined() ? std::optional<at::Tensor>(f.bias) : std::nullopt, options);
  }
  options.taps = taps_;
  if (!options_.bn())
    return lk_conv(x, weights_, {},
                   bias_.defined() ? std::optional<at::Tensor>(bias_) : std::nullopt, options);
  options.perBranch = true;
  const at::Tensor y = lk_conv(x, weights_, {}, std::nullopt, options);
  at::Tensor out;
  for (size_t b = 0; b < weights_.size(); ++b) {
    at::Tensor normed = norms_[b]->forward(y.select(0, static_cast<int64_t>(b)));
    out = out.defined() ? out + normed : normed;
  }
  return out;
}

void LKConv2dImpl::pretty_print(std::ostream &stream) const {
  stream << "slak::LKConv2d(channels=" << options_.channels() << ", kernels=";
  for (size_t b = 0; b < weights_.size(); ++b)
    stream << (b ? "+" : "") << weights_[b].size(2) << "x" << weights_[b].size(3);
  stream << ", bn=" << (options_.bn() ? "true" : "false") << ")";
}

} // namespace slak

// LKConv2d: the SLaK large-kernel block as a torch::nn::Module: depthwise
// M x N ("lora1") and N x M ("lora2") branches, an optional small K x K
// branch ("small"), each followed by its own BatchNorm (bn=true), summed.
// Optional per-branch masks (dynamic sparsity) make the branches sparse.
//
// - Training: one lk_conv with per-branch outputs, a BatchNorm per branch,
//   then the sum (bn=false: one summed lk_conv, plus an optional bias).
// - Eval: structural re-parameterisation, the math of
//   `slak-opt --slak-fuse-lk=mode=infer`: W'_b = W_b * mask_b * g_b /
//   sqrt(v_b + eps), bias' = sum_b (beta_b - mean_b * g_b / sqrt(v_b + eps)),
//   then every branch whose window nests in a larger one (the small kernel
//   inside M x N) is zero-padded and added to it; one summed lk_conv. The
//   folded weights are cached until a weight, a BatchNorm parameter or
//   statistic, or the masks change (and recomputed, differentiably, while
//   autograd needs them).
// - set_masks rebuilds the tap tables (codegen's buildTapTable); the backend
//   re-uploads them. Kernels recompile only when the KernelSpec signature
//   (branch sparsity, schedule) changes.
#pragma once

#include <torch/nn/module.h>
#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/pimpl.h>

#include <array>
#include <memory>
#include <string>
#include <vector>

namespace slak {

namespace runtime {
class LayerTaps;
}

struct LKConv2dOptions {
  LKConv2dOptions(int64_t channels, int64_t kernel_size)
      : channels_(channels), kernel_size_(kernel_size) {}
  TORCH_ARG(int64_t, channels);
  /// M: the long side of the two strip branches.
  TORCH_ARG(int64_t, kernel_size);
  /// N: the short side of the strips (SLaK: 5).
  TORCH_ARG(int64_t, width) = 5;
  /// Side of the small square branch; 0 for none (SLaK: 5).
  TORCH_ARG(int64_t, small_kernel) = 5;
  /// A BatchNorm after each branch (SLaK's default).
  TORCH_ARG(bool, bn) = true;
  /// A bias on the summed output; only with bn = false.
  TORCH_ARG(bool, bias) = false;
  TORCH_ARG(double, eps) = 1e-5;
  TORCH_ARG(double, momentum) = 0.1;
  /// lk_conv backend: "auto", "cpu", "reference", "opencl", "cuda".
  TORCH_ARG(std::string, backend) = "auto";
};

/// The eval-mode layer after folding and merging (for inspection and tests).
struct FoldedLKConv {
  std::vector<at::Tensor> weights; // [C, 1, KH, KW] per surviving branch
  std::vector<at::Tensor> masks;   // undefined = dense
  at::Tensor bias;                 // [C]
  std::vector<std::pair<int64_t, int64_t>> paddings;
  std::shared_ptr<runtime::LayerTaps> taps;
};

class LKConv2dImpl : public torch::nn::Module {
public:
  explicit LKConv2dImpl(LKConv2dOptions options);

  at::Tensor forward(const at::Tensor &x);

  /// One mask per branch (lora1, lora2[, small]), each undefined (dense) or
  /// shaped like the branch's weight; an empty list makes every branch dense.
  /// Non-zero = live. Throws c10::Error naming a mask of the wrong shape.
  void set_masks(const std::vector<at::Tensor> &masks);
  /// The current masks (uint8 on the CPU; undefined = dense).
  const std::vector<at::Tensor> &masks() const { return masks_; }
  /// Training backward computes the gradient of every tap, masked or not
  /// (gradient regrowth at mask updates needs it).
  void set_dense_weight_grad(bool dense) { denseWeightGrad_ = dense; }

  /// The branch weights in order lora1, lora2[, small].
  std::vector<at::Tensor> branch_weights() const;
  std::vector<torch::nn::BatchNorm2d> branch_norms() const { return norms_; }
  int num_branches() const { return static_cast<int>(weights_.size()); }

  /// The folded eval-mode layer (cached; see the header comment).
  FoldedLKConv folded();

  const LKConv2dOptions &options() const { return options_; }
  void pretty_print(std::ostream &stream) const override;

private:
  FoldedLKConv fold() const;
  std::vector<int64_t> stateStamp() const;

  LKConv2dOptions options_;
  std::vector<at::Tensor> weights_;
  std::vector<torch::nn::BatchNorm2d> norms_;
  at::Tensor bias_;
  std::vector<at::Tensor> masks_;
  uint64_t maskGeneration_ = 0;
  bool denseWeightGrad_ = false;
  std::vector<int64_t> foldedStamp_;
  FoldedLKConv folded_;
};

TORCH_MODULE(LKConv2d);

/// The sum over branches b of norms[b](y[b]): per-branch outputs
/// [B, N, C, H, W] of lk_conv through a BatchNorm each, then added.
at::Tensor sumOfNormedBranches(const at::Tensor &y, std::vector<torch::nn::BatchNorm2d> norms);

} // namespace slak

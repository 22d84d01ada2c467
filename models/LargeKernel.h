// LargeKernel: the one place where the models make a large-kernel depthwise
// layer (DESIGN.md section 1): a sum of parallel stride-1 "same" depthwise
// branches, each optionally followed by its own BatchNorm, plus an optional
// bias on the sum. SLaK (M x N + N x M + N x N), RepLKNet (K x K + 5 x 5) and
// ConvNeXt (dense 7 x 7 with bias) are all instances.
//
// Two backends behind one interface:
//   - Runtime: slak::LKConv2d from runtime/ for SLaK's M x N + N x M (+ K x K)
//     (generated kernels; the masks of the branches become its tap tables,
//     so sparsity turns into speed; eval folds BN and merges branches), and
//     the slak::lk_conv op directly for other branch sets (RepLKNet, ConvNeXt);
//   - Torch: one LibTorch conv2d per branch (the baseline and the fallback
//     where the runtime is not built).
#pragma once

#include "codegen/KernelWindow.h"

#include <torch/nn/module.h>
#include <torch/nn/modules/batchnorm.h>
#include <torch/types.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace slak::models {

enum class LkBackend { Auto, Runtime, Torch };

/// "auto", "runtime" or "torch"; throws std::invalid_argument otherwise.
LkBackend parseLkBackend(const std::string &name);
const char *lkBackendName(LkBackend backend);
/// Whether this build has the runtime's LKConv2d (SLAK_MODELS_WITH_RUNTIME).
bool runtimeLargeKernelAvailable();
/// What Auto resolves to: Runtime where built and fast here (Halide on the
/// CPU, or a CUDA device), else Torch (the runtime's CPU fallback is the
/// slow reference oracle).
LkBackend resolveLkBackend(LkBackend requested);

struct LargeKernelOptions {
  int64_t channels = 0;
  /// Each branch's window; padding is "same" (KH/2, KW/2) whatever is given.
  std::vector<codegen::KernelWindow> branches;
  /// A BatchNorm after each branch, before the sum (SLaK's and RepLKNet's
  /// conv_bn); false gives bias-free branch convolutions summed directly.
  bool batchNorm = true;
  /// One learnable bias on the sum (ConvNeXt's depthwise conv).
  bool bias = false;
  LkBackend backend = LkBackend::Auto;
};

/// SLaK's decomposed kernel: M x N, N x M and the small N x N (M > N), or a
/// square M x M plus N x N when `decomposed` is false.
LargeKernelOptions slakKernel(int64_t channels, int m, int n, bool batchNorm, bool decomposed);
/// RepLKNet's K x K plus a small x small (no small branch when small <= 0 or >= K).
LargeKernelOptions repLkKernel(int64_t channels, int k, int small);
/// ConvNeXt's depthwise K x K with bias and no BatchNorm.
LargeKernelOptions denseDepthwiseKernel(int64_t channels, int k);

/// The layer, whichever backend computes it. Branch weights are
/// [C, 1, KH_b, KW_b] parameters named by branchWeightName(b) relative to the
/// module; a 0/1 mask of the same shape per branch marks the live taps.
class LargeKernelConv : public torch::nn::Module {
public:
  explicit LargeKernelConv(LargeKernelOptions options) : options_(std::move(options)) {}
  virtual torch::Tensor forward(const torch::Tensor &x) = 0;
  virtual std::string branchWeightName(size_t branch) const = 0;
  virtual torch::Tensor branchWeight(size_t branch) = 0;
  /// One mask per branch, each undefined (dense) or 0/1 of the weight's shape.
  /// Called after every mask change; the runtime rebuilds its tap tables.
  virtual void setBranchMasks(const std::vector<torch::Tensor> &masks) = 0;
  /// Backward computes the gradient of every tap, masked or not (gradient
  /// regrowth needs it at mask-update steps). LibTorch conv2d always does.
  virtual void setDenseWeightGrad(bool dense) { (void)dense; }
  virtual const char *backendName() const = 0;
  const LargeKernelOptions &options() const { return options_; }
  size_t numBranches() const { return options_.branches.size(); }

  /// The branch's BatchNorm; an empty holder when the layer has none.
  virtual torch::nn::BatchNorm2d branchNorm(size_t branch) = 0;
  /// The bias on the sum; undefined when the layer has none.
  virtual torch::Tensor sumBias() = 0;
  /// The masks last given to setBranchMasks (empty when none were given).
  const std::vector<torch::Tensor> &branchMasks() const { return branchMasks_; }
  /// The shape of the last input seen (export and deployment read each
  /// layer's spatial size from one forward pass).
  const std::vector<int64_t> &lastInputShape() const { return lastInputShape_; }
  /// In eval mode, forward returns `serve(x)` (a kernel package attached by
  /// models/deploy) instead of running the layer's own kernels; nullptr
  /// restores them. Training always runs the layer itself.
  void setEvalForward(std::function<torch::Tensor(const torch::Tensor &)> serve) {
    evalForward_ = std::move(serve);
  }
  bool servedFromPackage() const { return static_cast<bool>(evalForward_); }

protected:
  /// Every forward starts here: records x's shape and returns the served
  /// output when a package serves this layer in eval mode (else undefined).
  torch::Tensor servedForward(const torch::Tensor &x) {
    lastInputShape_ = x.sizes().vec();
    return evalForward_ && !is_training() ? evalForward_(x) : torch::Tensor();
  }

  LargeKernelOptions options_;
  std::vector<torch::Tensor> branchMasks_;

private:
  std::vector<int64_t> lastInputShape_;
  std::function<torch::Tensor(const torch::Tensor &)> evalForward_;
};

/// Makes the layer on the requested backend (Auto: Runtime where built, else
/// Torch). Branch weights start with LibTorch's Conv2d default init
/// (kaiming-uniform, a = sqrt(5)); models re-initialise as they need.
std::shared_ptr<LargeKernelConv> makeLargeKernel(const LargeKernelOptions &options);

} // namespace slak::models

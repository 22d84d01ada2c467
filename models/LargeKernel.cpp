#include "models/LargeKernel.h"

#include "codegen/EnumNames.h"

#include <torch/torch.h>

#ifdef SLAK_MODELS_WITH_RUNTIME
#include "runtime/LKConv2d.h"
#include "runtime/LkConvBackend.h"
#include "runtime/LkConvOp.h"
#endif

#include <cmath>
#include <stdexcept>

namespace slak::models {

namespace {
constexpr codegen::Named<LkBackend> kLkBackends[] = {
    {"auto", LkBackend::Auto}, {"runtime", LkBackend::Runtime}, {"torch", LkBackend::Torch}};
} // namespace

LkBackend parseLkBackend(const std::string &name) {
  if (std::optional<LkBackend> backend = codegen::valueOf(kLkBackends, name))
    return *backend;
  throw std::invalid_argument("unknown large-kernel backend '" + name + "': expected " +
                              codegen::nameList(kLkBackends));
}

const char *lkBackendName(LkBackend backend) { return codegen::nameOf(kLkBackends, backend); }

bool runtimeLargeKernelAvailable() {
#ifdef SLAK_MODELS_WITH_RUNTIME
  return true;
#else
  return false;
#endif
}

LkBackend resolveLkBackend(LkBackend requested) {
  if (requested != LkBackend::Auto)
    return requested;
#ifdef SLAK_MODELS_WITH_RUNTIME
  if (std::string(runtime::cpuBackendName()) == "halide" || torch::cuda::is_available())
    return LkBackend::Runtime;
#endif
  return LkBackend::Torch;
}

LargeKernelOptions slakKernel(int64_t channels, int m, int n, bool batchNorm, bool decomposed) {
  LargeKernelOptions o;
  o.channels = channels;
  o.batchNorm = batchNorm;
  if (decomposed && m > n) {
    o.branches = {{m, n}, {n, m}, {n, n}};
  } else {
    o.branches = {{m, m}};
    if (n > 0 && n < m)
      o.branches.push_back({n, n});
  }
  return o;
}

LargeKernelOptions repLkKernel(int64_t channels, int k, int small) {
  LargeKernelOptions o;
  o.channels = channels;
  o.branches = {{k, k}};
  if (small > 0 && small < k)
    o.branches.push_back({small, small});
  return o;
}

LargeKernelOptions denseDepthwiseKernel(int64_t channels, int k) {
  LargeKernelOptions o;
  o.channels = channels;
  o.branches = {{k, k}};
  o.batchNorm = false;
  o.bias = true;
  return o;
}

namespace {

void checkOptions(const LargeKernelOptions &o) {
  if (o.channels <= 0)
    throw std::invalid_argument("large-kernel layer has " + std::to_string(o.channels) +
                                " channels, expected at least 1");
  if (o.branches.empty())
    throw std::invalid_argument("large-kernel layer has no branches");
  for (const auto &b : o.branches)
    if (b.kernelH <= 0 || b.kernelW <= 0 || b.kernelH % 2 == 0 || b.kernelW % 2 == 0)
      throw std::invalid_argument("large-kernel branch " + std::to_string(b.kernelH) + "x" +
                                  std::to_string(b.kernelW) +
                                  " is not odd and positive: 'same' padding needs odd kernels");
}

/// One depthwise branch: the weight and, optionally, its BatchNorm.
struct ConvBranchImpl : torch::nn::Module {
  ConvBranchImpl(int64_t channels, codegen::KernelWindow shape, bool batchNorm) {
    weight =
        register_parameter("weight", torch::empty({channels, 1, shape.kernelH, shape.kernelW}));
    // LibTorch's Conv2d default: kaiming_uniform_(a = sqrt(5)).
    torch::nn::init::kaiming_uniform_(weight, std::sqrt(5.0));
    if (batchNorm)
      bn = register_module("bn", torch::nn::BatchNorm2d(channels));
  }
  torch::Tensor weight;
  torch::nn::BatchNorm2d bn{nullptr};
};
TORCH_MODULE(ConvBranch);

/// LibTorch conv2d per branch, summed.
class TorchLargeKernel : public LargeKernelConv {
public:
  explicit TorchLargeKernel(LargeKernelOptions options) : LargeKernelConv(std::move(options)) {
    for (size_t b = 0; b < options_.branches.size(); ++b)
      branches_.push_back(
          register_module("branch" + std::to_string(b),
                          ConvBranch(options_.channels, options_.branches[b], options_.batchNorm)));
    if (options_.bias)
      bias_ = register_parameter("bias", torch::zeros({options_.channels}));
  }

  torch::Tensor forward(const torch::Tensor &x) override {
    if (auto served = servedForward(x); served.defined())
      return served;
    torch::Tensor sum;
    for (size_t b = 0; b < branches_.size(); ++b) {
      const auto &shape = options_.branches[b];
      auto y = torch::conv2d(x, branches_[b]->weight, {}, 1, {shape.kernelH / 2, shape.kernelW / 2},
                             1, options_.channels);
      if (branches_[b]->bn)
        y = branches_[b]->bn(y);
      sum = sum.defined() ? sum + y : y;
    }
    if (bias_.defined())
      sum = sum + bias_.view({1, -1, 1, 1});
    return sum;
  }

  std::string branchWeightName(size_t branch) const override {
    return "branch" + std::to_string(branch) + ".weight";
  }
  torch::Tensor branchWeight(size_t branch) override { return branches_.at(branch)->weight; }
  torch::nn::BatchNorm2d branchNorm(size_t branch) override { return branches_.at(branch)->bn; }
  torch::Tensor sumBias() override { return bias_; }
  // The trainer zeroes masked weights after every step, so dense conv2d over
  // them computes the sparse layer exactly; the masks are only kept (export).
  void setBranchMasks(const std::vector<torch::Tensor> &masks) override { branchMasks_ = masks; }
  const char *backendName() const override { return "torch"; }

protected:
  std::vector<ConvBranch> branches_;
  torch::Tensor bias_;
};

#ifdef SLAK_MODELS_WITH_RUNTIME

std::vector<torch::Tensor> byteMasks(const std::vector<torch::Tensor> &masks) {
  std::vector<torch::Tensor> out;
  bool any = false;
  for (const auto &m : masks) {
    out.push_back(m.defined() ? slak::live_mask(m) : torch::Tensor());
    any = any || m.defined();
  }
  return any ? out : std::vector<torch::Tensor>{};
}

/// SLaK's M x N + N x M (+ K x K) on the runtime's slak::LKConv2d.
class RuntimeSlakKernel : public LargeKernelConv {
public:
  explicit RuntimeSlakKernel(LargeKernelOptions options) : LargeKernelConv(std::move(options)) {
    const auto &b = options_.branches;
    slak::LKConv2dOptions lk(options_.channels, b[0].kernelH);
    lk.width(b[0].kernelW).small_kernel(b.size() > 2 ? b[2].kernelH : 0);
    lk.bn(options_.batchNorm).bias(options_.bias);
    lk_ = register_module("lk", slak::LKConv2d(lk));
  }
  /// Whether LKConv2d computes exactly these branches.
  static bool fits(const LargeKernelOptions &o) {
    const auto &b = o.branches;
    if (b.size() < 2 || b.size() > 3 || (o.bias && o.batchNorm))
      return false;
    if (b[0].kernelH != b[1].kernelW || b[0].kernelW != b[1].kernelH)
      return false;
    return b.size() == 2 || b[2].kernelH == b[2].kernelW;
  }

  torch::Tensor forward(const torch::Tensor &x) override {
    if (auto served = servedForward(x); served.defined())
      return served;
    return lk_->forward(x);
  }

  std::string branchWeightName(size_t branch) const override {
    static const char *const names[] = {"lk.lora1_weight", "lk.lora2_weight", "lk.small_weight"};
    return names[branch];
  }
  torch::Tensor branchWeight(size_t branch) override { return lk_->branch_weights().at(branch); }
  torch::nn::BatchNorm2d branchNorm(size_t branch) override {
    return options_.batchNorm ? lk_->branch_norms().at(branch) : torch::nn::BatchNorm2d(nullptr);
  }
  torch::Tensor sumBias() override {
    auto *bias = lk_->named_parameters(false).find("bias");
    return bias ? *bias : torch::Tensor();
  }
  void setBranchMasks(const std::vector<torch::Tensor> &masks) override {
    branchMasks_ = masks;
    lk_->set_masks(masks); // LKConv2d keeps them as CPU bytes
  }
  void setDenseWeightGrad(bool dense) override { lk_->set_dense_weight_grad(dense); }
  const char *backendName() const override { return "runtime"; }

private:
  slak::LKConv2d lk_{nullptr};
};

/// Any other branch set (RepLKNet's K x K + 5 x 5, ConvNeXt's 7 x 7 with
/// bias) through the slak::lk_conv op; parameters as the LibTorch backend.
class RuntimeOpKernel : public TorchLargeKernel {
public:
  using TorchLargeKernel::TorchLargeKernel;

  torch::Tensor forward(const torch::Tensor &x) override {
    if (auto served = servedForward(x); served.defined())
      return served;
    std::vector<torch::Tensor> weights;
    for (auto &b : branches_)
      weights.push_back(b->weight);
    slak::LkConvOptions o;
    o.denseWeightGrad = denseWeightGrad_ && is_training();
    if (!options_.batchNorm)
      return slak::lk_conv(x, weights, masks_,
                           bias_.defined() ? std::optional<torch::Tensor>(bias_) : std::nullopt, o);
    std::vector<torch::nn::BatchNorm2d> norms;
    for (auto &b : branches_)
      norms.push_back(b->bn);
    auto out = slak::sumOfNormedBranches(
        slak::lk_conv(x, weights, masks_, std::nullopt, o.per_branch(true)), norms);
    return bias_.defined() ? out + bias_.view({1, -1, 1, 1}) : out;
  }
  void setBranchMasks(const std::vector<torch::Tensor> &masks) override {
    branchMasks_ = masks;
    masks_ = byteMasks(masks);
  }
  void setDenseWeightGrad(bool dense) override { denseWeightGrad_ = dense; }
  const char *backendName() const override { return "runtime"; }

private:
  std::vector<torch::Tensor> masks_;
  bool denseWeightGrad_ = false;
};

#endif // SLAK_MODELS_WITH_RUNTIME

} // namespace

std::shared_ptr<LargeKernelConv> makeLargeKernel(const LargeKernelOptions &options) {
  checkOptions(options);
  LkBackend backend = resolveLkBackend(options.backend);
  if (backend == LkBackend::Runtime && !runtimeLargeKernelAvailable())
    throw std::runtime_error("large-kernel backend 'runtime' requested but this build has no "
                             "slak::LKConv2d (slak_runtime was not built with LibTorch): use "
                             "--lk-backend torch");
#ifdef SLAK_MODELS_WITH_RUNTIME
  if (backend == LkBackend::Runtime) {
    if (RuntimeSlakKernel::fits(options))
      return std::make_shared<RuntimeSlakKernel>(options);
    return std::make_shared<RuntimeOpKernel>(options);
  }
#endif
  return std::make_shared<TorchLargeKernel>(options);
}

} // namespace slak::models

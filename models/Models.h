// Models: SLaK-T/S/B, ConvNeXt-T, RepLKNet-31B and the CPU-sized slak_nano,
// built from a registry by name with overrides (ANCHORS.md has the
// architecture facts). Every large-kernel layer comes from makeLargeKernel,
// so the backend (runtime or LibTorch) is one switch.
#pragma once

#include "models/LargeKernel.h"

#include <torch/nn/module.h>
#include <torch/types.h>

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace slak::models {

enum class Family { Slak, ConvNeXt, RepLKNet };

/// Everything that decides a model's shape. modelConfig() fills it from the
/// registry; tests and tools may edit it before createModel().
struct ModelConfig {
  std::string name;
  Family family = Family::Slak;
  std::vector<int64_t> depths;
  /// Channels per stage before the width factor: dims() = int(d * widthFactor).
  std::vector<int64_t> baseDims;
  double widthFactor = 1.0;
  /// Large kernel per stage: SLaK's M, RepLKNet's K, ConvNeXt's dense K.
  std::vector<int> kernelSizes;
  /// SLaK's N (thin side and small kernel); RepLKNet's small kernel.
  int smallKernel = 5;
  /// SLaK: M x N + N x M + N x N; false: M x M + N x N.
  bool decomposed = true;
  /// BatchNorm after each large-kernel branch (SLaK's `bn`).
  bool branchBatchNorm = true;
  int64_t inChannels = 3;
  int64_t numClasses = 1000;
  /// Stem conv (SLaK/ConvNeXt): kernel and stride, padding stemPadding() so
  /// that H / stride comes out for H divisible by the stride; kernel = stride
  /// is the patchify stem (4 for ImageNet models).
  int stemKernel = 4;
  int stemStride = 4;
  double dropPath = 0.0;
  /// Initial value of each block's layer scale gamma (ConvNeXt/SLaK: 1e-6).
  double layerScale = 1e-6;
  double headInitScale = 1.0;
  /// Default sparsity for training (0 = dense).
  double sparsity = 0.0;
  /// Nominal input size (224 or 28): used for SNIP's batch in --print-params.
  int64_t imageSize = 224;
  LkBackend backend = LkBackend::Auto;

  std::vector<int64_t> dims() const;
};

/// Registry overrides; unset fields keep the registry's value.
struct ModelOverrides {
  std::optional<double> widthFactor;
  std::optional<std::vector<int>> kernelSizes;
  std::optional<int> smallKernel;
  std::optional<double> sparsity;
  std::optional<int64_t> numClasses;
  std::optional<int64_t> inChannels;
  std::optional<double> dropPath;
  std::optional<int> stemKernel;
  std::optional<int> stemStride;
  std::optional<double> layerScale;
  std::optional<bool> branchBatchNorm;
  std::optional<bool> decomposed;
  std::optional<LkBackend> backend;
};

/// ceil((stemKernel - stemStride) / 2): 0 for a patchify stem, 1 for 4/2 or 3/2.
inline int stemPadding(const ModelConfig &c) { return (c.stemKernel - c.stemStride + 1) / 2; }

/// The smallest square input (pixels) the model runs on: SLaK and ConvNeXt
/// need at least one pixel in the last stage after the stem and the 2x2
/// stride-2 downsamplings (32 for slak_tiny, 8 for slak_nano); RepLKNet's
/// padded stride-2 convolutions run on any size (1).
int64_t minimumImageSize(const ModelConfig &config);

/// slak_tiny, slak_small, slak_base, slak_nano, convnext_tiny, replknet_31b.
std::vector<std::string> modelNames();
/// Throws std::invalid_argument naming the known models for an unknown name
/// or an override that does not fit (e.g. 3 kernel sizes for 4 stages).
ModelConfig modelConfig(const std::string &name, const ModelOverrides &overrides = {});

/// An image classifier: NCHW images in, logits out.
class Classifier : public torch::nn::Module {
public:
  explicit Classifier(ModelConfig config) : config_(std::move(config)) {}
  virtual torch::Tensor forward(const torch::Tensor &x) = 0;
  /// The last stage's feature map [N, C, h, w], before the final norm,
  /// pooling and head (what the effective-receptive-field analysis probes).
  virtual torch::Tensor forwardFeatures(const torch::Tensor &x) = 0;
  const ModelConfig &config() const { return config_; }

protected:
  ModelConfig config_;
};

std::shared_ptr<Classifier> createModel(const ModelConfig &config);
inline std::shared_ptr<Classifier> createModel(const std::string &name,
                                               const ModelOverrides &overrides = {}) {
  return createModel(modelConfig(name, overrides));
}

/// Every large-kernel layer of a model with its module path ("stages.0.1.large_kernel").
std::vector<std::pair<std::string, std::shared_ptr<LargeKernelConv>>>
largeKernelLayers(torch::nn::Module &model);

/// Hands each large-kernel layer the masks of its branch weights (keys are
/// full parameter names; absent = dense), so the runtime rebuilds its tap tables.
void pushMasksToLargeKernels(torch::nn::Module &model,
                             const std::map<std::string, torch::Tensor> &masks);

struct ParameterCounts {
  int64_t total = 0;   // every parameter element (what "dense params" means)
  int64_t nonZero = 0; // elements that are not exactly zero
};
ParameterCounts countParameters(torch::nn::Module &model);

/// Truncated normal on [a, b] (absolute bounds, as timm's trunc_normal_).
void truncNormal_(torch::Tensor &t, double stddev, double a = -2.0, double b = 2.0);

} // namespace slak::models

#include "models/Models.h"
#include "models/Linear.h"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <sstream>
#include <stdexcept>

namespace slak::models {

std::vector<int64_t> ModelConfig::dims() const {
  std::vector<int64_t> out;
  for (int64_t d : baseDims)
    out.push_back(static_cast<int64_t>(static_cast<double>(d) * widthFactor)); // int(), as SLaK
  return out;
}

// ---------------------------------------------------------------- registry

namespace {

/// One registry entry: the fields every family sets.
ModelConfig familyConfig(const std::string &name, Family family, std::vector<int64_t> depths,
                         std::vector<int64_t> dims, std::vector<int> kernelSizes, int smallKernel,
                         double dropPath) {
  ModelConfig c;
  c.name = name;
  c.family = family;
  c.depths = std::move(depths);
  c.baseDims = std::move(dims);
  c.kernelSizes = std::move(kernelSizes);
  c.smallKernel = smallKernel;
  c.dropPath = dropPath;
  return c;
}

ModelConfig slakConfig(const std::string &name, std::vector<int64_t> depths,
                       std::vector<int64_t> dims, double dropPath) {
  ModelConfig c = familyConfig(name, Family::Slak, std::move(depths), std::move(dims),
                               {51, 49, 47, 13}, 5, dropPath);
  c.widthFactor = 1.3;
  c.sparsity = 0.4;
  return c;
}

ModelConfig registryEntry(const std::string &name) {
  if (name == "slak_tiny")
    return slakConfig(name, {3, 3, 9, 3}, {96, 192, 384, 768}, 0.1);
  if (name == "slak_small")
    return slakConfig(name, {3, 3, 27, 3}, {96, 192, 384, 768}, 0.4);
  if (name == "slak_base")
    return slakConfig(name, {3, 3, 27, 3}, {128, 256, 512, 1024}, 0.5);
  if (name == "slak_nano") {
    // 28x28x1 -> 2x2 stem -> 14x14 (M=13), 7x7 (M=13), 3x3 (M=7); N = 5.
    ModelConfig c = slakConfig(name, {2, 2, 2}, {32, 64, 128}, 0.0);
    c.kernelSizes = {13, 13, 7};
    c.stemKernel = 2;
    c.stemStride = 2;
    c.inChannels = 1;
    c.numClasses = 10;
    c.imageSize = 28;
    return c;
  }
  if (name == "convnext_tiny") {
    ModelConfig c = familyConfig(name, Family::ConvNeXt, {3, 3, 9, 3}, {96, 192, 384, 768},
                                 {7, 7, 7, 7}, 0, 0.1);
    c.branchBatchNorm = false;
    return c;
  }
  if (name == "replknet_31b")
    return familyConfig(name, Family::RepLKNet, {2, 2, 18, 2}, {128, 256, 512, 1024},
                        {31, 29, 27, 13}, 5, 0.3);
  std::ostringstream os;
  os << "unknown model '" << name << "': expected one of";
  for (const auto &n : modelNames())
    os << ' ' << n;
  throw std::invalid_argument(os.str());
}

} // namespace

std::vector<std::string> modelNames() {
  return {"slak_tiny", "slak_small", "slak_base", "slak_nano", "convnext_tiny", "replknet_31b"};
}

ModelConfig modelConfig(const std::string &name, const ModelOverrides &o) {
  ModelConfig c = registryEntry(name);
  if (o.widthFactor)
    c.widthFactor = *o.widthFactor;
  if (o.kernelSizes)
    c.kernelSizes = *o.kernelSizes;
  if (o.smallKernel)
    c.smallKernel = *o.smallKernel;
  if (o.sparsity)
    c.sparsity = *o.sparsity;
  if (o.numClasses)
    c.numClasses = *o.numClasses;
  if (o.inChannels)
    c.inChannels = *o.inChannels;
  if (o.dropPath)
    c.dropPath = *o.dropPath;
  if (o.stemKernel)
    c.stemKernel = *o.stemKernel;
  if (o.stemStride)
    c.stemStride = *o.stemStride;
  if (o.layerScale)
    c.layerScale = *o.layerScale;
  if (o.branchBatchNorm)
    c.branchBatchNorm = *o.branchBatchNorm;
  if (o.decomposed)
    c.decomposed = *o.decomposed;
  if (o.backend)
    c.backend = *o.backend;

  const std::string where = "model " + name + ": ";
  if (c.kernelSizes.size() != c.depths.size())
    throw std::invalid_argument(where + std::to_string(c.kernelSizes.size()) +
                                " kernel sizes given, expected " + std::to_string(c.depths.size()) +
                                " (one per stage)");
  for (int k : c.kernelSizes)
    if (k <= 0 || k % 2 == 0)
      throw std::invalid_argument(where + "kernel size " + std::to_string(k) +
                                  " is not odd and positive");
  if (c.family != Family::ConvNeXt &&
      (c.smallKernel < 0 || (c.smallKernel % 2 == 0 && c.smallKernel)))
    throw std::invalid_argument(where + "small kernel N = " + std::to_string(c.smallKernel) +
                                " is not odd");
  if (c.widthFactor <= 0)
    throw std::invalid_argument(where + "width factor " + std::to_string(c.widthFactor) +
                                " is not positive");
  for (int64_t d : c.dims())
    if (d <= 0)
      throw std::invalid_argument(where + "width factor " + std::to_string(c.widthFactor) +
                                  " gives a stage with no channels");
  if (c.family != Family::RepLKNet && (c.stemStride <= 0 || c.stemKernel < c.stemStride))
    throw std::invalid_argument(where + "stem kernel " + std::to_string(c.stemKernel) +
                                " with stride " + std::to_string(c.stemStride) +
                                ": the stride must be positive and the kernel at least the "
                                "stride");
  if (c.layerScale <= 0)
    throw std::invalid_argument(where + "layer scale " + std::to_string(c.layerScale) +
                                " is not positive");
  if (c.sparsity < 0 || c.sparsity >= 1)
    throw std::invalid_argument(where + "sparsity " + std::to_string(c.sparsity) +
                                " is outside [0, 1)");
  if (c.numClasses <= 0 || c.inChannels <= 0)
    throw std::invalid_argument(where + "classes and input channels must be positive");
  return c;
}

// ------------------------------------------------------------ building blocks

void truncNormal_(torch::Tensor &t, double stddev, double a, double b) {
  torch::NoGradGuard noGrad;
  // Inverse-CDF sampling of N(0, stddev) restricted to [a, b].
  auto cdf = [](double x) { return 0.5 * (1.0 + std::erf(x / std::sqrt(2.0))); };
  double lo = cdf(a / stddev), hi = cdf(b / stddev);
  t.uniform_(2 * lo - 1, 2 * hi - 1);
  t.erfinv_();
  t.mul_(stddev * std::sqrt(2.0));
  t.clamp_(a, b);
}

namespace {

torch::Tensor dropPath(const torch::Tensor &x, double p, bool training) {
  if (!training || p <= 0.0)
    return x;
  double keep = 1.0 - p;
  auto mask = torch::empty({x.size(0), 1, 1, 1}, x.options()).bernoulli_(keep);
  return x * mask / keep;
}

/// LayerNorm over the channels of an NCHW tensor (SLaK's channels_first LN).
struct ChannelsFirstLayerNormImpl : torch::nn::Module {
  ChannelsFirstLayerNormImpl(int64_t channels, double eps) : channels(channels), eps(eps) {
    weight = register_parameter("weight", torch::ones({channels}));
    bias = register_parameter("bias", torch::zeros({channels}));
  }
  torch::Tensor forward(const torch::Tensor &x) {
    auto y = torch::layer_norm(x.permute({0, 2, 3, 1}), {channels}, weight, bias, eps);
    return y.permute({0, 3, 1, 2});
  }
  int64_t channels;
  double eps;
  torch::Tensor weight, bias;
};
TORCH_MODULE(ChannelsFirstLayerNorm);

LargeKernelOptions stageKernel(const ModelConfig &c, int64_t channels, int stage) {
  LargeKernelOptions o;
  int k = c.kernelSizes[stage];
  switch (c.family) {
  case Family::Slak:
    o = slakKernel(channels, k, c.smallKernel, c.branchBatchNorm, c.decomposed);
    break;
  case Family::ConvNeXt:
    o = denseDepthwiseKernel(channels, k);
    break;
  case Family::RepLKNet:
    o = repLkKernel(channels, k, c.smallKernel);
    o.batchNorm = c.branchBatchNorm;
    break;
  }
  o.backend = c.backend;
  return o;
}

std::vector<double> dropPathRates(const ModelConfig &c) {
  int64_t total = 0;
  for (int64_t d : c.depths)
    total += d;
  std::vector<double> rates;
  for (int64_t i = 0; i < total; ++i)
    rates.push_back(total > 1 ? c.dropPath * static_cast<double>(i) / (total - 1) : 0.0);
  return rates;
}

// -------------------------------------------------------- SLaK and ConvNeXt

/// large_kernel -> NHWC -> LN -> Linear(d,4d) -> GELU -> Linear(4d,d) ->
/// gamma -> NCHW -> input + DropPath.
struct SlakBlockImpl : torch::nn::Module {
  SlakBlockImpl(const LargeKernelOptions &lk, double layerScale, double dropPathRate)
      : dropPathRate(dropPathRate) {
    int64_t d = lk.channels;
    largeKernel = register_module("large_kernel", makeLargeKernel(lk));
    norm =
        register_module("norm", torch::nn::LayerNorm(torch::nn::LayerNormOptions({d}).eps(1e-6)));
    pwconv1 = register_module("pwconv1", torch::nn::Linear(d, 4 * d));
    pwconv2 = register_module("pwconv2", torch::nn::Linear(4 * d, d));
    if (layerScale > 0)
      gamma = register_parameter("gamma", torch::full({d}, layerScale));
  }
  torch::Tensor forward(const torch::Tensor &input) {
    auto x = norm(largeKernel->forward(input).permute({0, 2, 3, 1}));
    // Without stochastic depth the layer scale and the residual add go with
    // the MLP (in eval one pass over the output inside the second matmul).
    if (!is_training() || dropPathRate == 0.0)
      return models::mlp(x, pwconv1->weight, pwconv1->bias, pwconv2->weight, pwconv2->bias, gamma,
                         input.permute({0, 2, 3, 1}))
          .permute({0, 3, 1, 2});
    x = models::mlp(x, pwconv1->weight, pwconv1->bias, pwconv2->weight, pwconv2->bias, gamma,
                    torch::Tensor());
    return input + dropPath(x.permute({0, 3, 1, 2}), dropPathRate, is_training());
  }
  std::shared_ptr<LargeKernelConv> largeKernel;
  torch::nn::LayerNorm norm{nullptr};
  torch::nn::Linear pwconv1{nullptr}, pwconv2{nullptr};
  torch::Tensor gamma;
  double dropPathRate;
};
TORCH_MODULE(SlakBlock);

/// The ConvNeXt macro design shared by SLaK and ConvNeXt.
class SlakNet : public Classifier {
public:
  explicit SlakNet(ModelConfig config) : Classifier(std::move(config)) {
    const auto dims = config_.dims();
    const size_t numStages = dims.size();
    const auto rates = dropPathRates(config_);

    auto downsample = register_module("downsample_layers", torch::nn::ModuleList());
    auto stem = torch::nn::Sequential(
        torch::nn::Conv2d(torch::nn::Conv2dOptions(config_.inChannels, dims[0], config_.stemKernel)
                              .stride(config_.stemStride)
                              .padding(stemPadding(config_))),
        ChannelsFirstLayerNorm(dims[0], 1e-6));
    downsample->push_back(stem);
    downsampleLayers_.push_back(stem);
    for (size_t i = 1; i < numStages; ++i) {
      auto layer = torch::nn::Sequential(
          ChannelsFirstLayerNorm(dims[i - 1], 1e-6),
          torch::nn::Conv2d(torch::nn::Conv2dOptions(dims[i - 1], dims[i], 2).stride(2)));
      downsample->push_back(layer);
      downsampleLayers_.push_back(layer);
    }

    auto stages = register_module("stages", torch::nn::ModuleList());
    size_t blockIndex = 0;
    for (size_t i = 0; i < numStages; ++i) {
      auto stage = torch::nn::ModuleList();
      std::vector<SlakBlock> blocks;
      for (int64_t j = 0; j < config_.depths[i]; ++j) {
        SlakBlock block(stageKernel(config_, dims[i], static_cast<int>(i)), config_.layerScale,
                        rates[blockIndex++]);
        stage->push_back(block);
        blocks.push_back(block);
      }
      stages->push_back(stage);
      blocks_.push_back(blocks);
    }
    norm_ = register_module(
        "norm", torch::nn::LayerNorm(torch::nn::LayerNormOptions({dims.back()}).eps(1e-6)));
    head_ = register_module("head", torch::nn::Linear(dims.back(), config_.numClasses));
    initWeights();
  }

  torch::Tensor forwardFeatures(const torch::Tensor &input) override {
    // On the CPU the runtime's kernels read and write channels-last tensors
    // in place, and the blocks' LayerNorm and MLP run on NHWC: keeping the
    // activations channels-last from the stem on saves a layout copy per
    // block (and the mixed-layout residual add).
    const bool channelsLast = input.is_cpu() && input.dim() == 4 &&
                              resolveLkBackend(config_.backend) == LkBackend::Runtime;
    auto x = channelsLast ? input.contiguous(torch::MemoryFormat::ChannelsLast) : input;
    for (size_t i = 0; i < blocks_.size(); ++i) {
      x = downsampleLayers_[i]->forward(x);
      for (auto &block : blocks_[i])
        x = block->forward(x);
    }
    return x;
  }

  torch::Tensor forward(const torch::Tensor &input) override {
    return head_(norm_(forwardFeatures(input).mean({-2, -1})));
  }

private:
  // Truncated normal (std .02) on every conv and linear weight, zero biases;
  // the head then scaled by headInitScale.
  void initWeights() {
    torch::NoGradGuard noGrad;
    for (auto &p : named_parameters()) {
      auto t = p.value();
      const std::string &name = p.key();
      if (t.dim() >= 2)
        truncNormal_(t, 0.02);
      else if (name.size() >= 4 && name.compare(name.size() - 4, 4, "bias") == 0)
        t.zero_();
    }
    head_->weight.mul_(config_.headInitScale);
    head_->bias.mul_(config_.headInitScale);
  }

  std::vector<torch::nn::Sequential> downsampleLayers_;
  std::vector<std::vector<SlakBlock>> blocks_;
  torch::nn::LayerNorm norm_{nullptr};
  torch::nn::Linear head_{nullptr};
};

// ------------------------------------------------------------------ RepLKNet

/// Conv2d (no bias) + BatchNorm (+ ReLU): RepLKNet's conv_bn / conv_bn_relu.
struct ConvBnImpl : torch::nn::Module {
  ConvBnImpl(int64_t in, int64_t out, int64_t kernel, int64_t stride, int64_t padding,
             int64_t groups, bool relu)
      : relu(relu) {
    conv = register_module("conv", torch::nn::Conv2d(torch::nn::Conv2dOptions(in, out, kernel)
                                                         .stride(stride)
                                                         .padding(padding)
                                                         .groups(groups)
                                                         .bias(false)));
    bn = register_module("bn", torch::nn::BatchNorm2d(out));
  }
  torch::Tensor forward(const torch::Tensor &x) {
    auto y = bn(conv(x));
    return relu ? torch::relu(y) : y;
  }
  torch::nn::Conv2d conv{nullptr};
  torch::nn::BatchNorm2d bn{nullptr};
  bool relu;
};
TORCH_MODULE(ConvBn);

/// BN -> 1x1 conv-BN-ReLU -> (K x K + small) -> ReLU -> 1x1 conv-BN -> residual.
struct RepLkBlockImpl : torch::nn::Module {
  RepLkBlockImpl(const LargeKernelOptions &lk, double dropPathRate) : dropPathRate(dropPathRate) {
    int64_t c = lk.channels; // dw_ratio 1
    prelkbBn = register_module("prelkb_bn", torch::nn::BatchNorm2d(c));
    pw1 = register_module("pw1", ConvBn(c, c, 1, 1, 0, 1, true));
    largeKernel = register_module("large_kernel", makeLargeKernel(lk));
    pw2 = register_module("pw2", ConvBn(c, c, 1, 1, 0, 1, false));
  }
  torch::Tensor forward(const torch::Tensor &x) {
    auto out = pw1(prelkbBn(x));
    out = pw2(torch::relu(largeKernel->forward(out)));
    return x + dropPath(out, dropPathRate, is_training());
  }
  torch::nn::BatchNorm2d prelkbBn{nullptr};
  ConvBn pw1{nullptr}, pw2{nullptr};
  std::shared_ptr<LargeKernelConv> largeKernel;
  double dropPathRate;
};
TORCH_MODULE(RepLkBlock);

/// BN -> 1x1 conv-BN to 4x -> GELU -> 1x1 conv-BN -> residual.
struct ConvFfnBlockImpl : torch::nn::Module {
  ConvFfnBlockImpl(int64_t c, double dropPathRate) : dropPathRate(dropPathRate) {
    preffnBn = register_module("preffn_bn", torch::nn::BatchNorm2d(c));
    pw1 = register_module("pw1", ConvBn(c, 4 * c, 1, 1, 0, 1, false));
    pw2 = register_module("pw2", ConvBn(4 * c, c, 1, 1, 0, 1, false));
  }
  torch::Tensor forward(const torch::Tensor &x) {
    auto out = pw2(torch::gelu(pw1(preffnBn(x))));
    return x + dropPath(out, dropPathRate, is_training());
  }
  torch::nn::BatchNorm2d preffnBn{nullptr};
  ConvBn pw1{nullptr}, pw2{nullptr};
  double dropPathRate;
};
TORCH_MODULE(ConvFfnBlock);

class RepLkNet : public Classifier {
public:
  explicit RepLkNet(ModelConfig config) : Classifier(std::move(config)) {
    const auto dims = config_.dims();
    const auto rates = dropPathRates(config_);
    const int64_t base = dims[0];
    stem_ = register_module(
        "stem", torch::nn::Sequential(ConvBn(config_.inChannels, base, 3, 2, 1, 1, true),
                                      ConvBn(base, base, 3, 1, 1, base, true),
                                      ConvBn(base, base, 1, 1, 0, 1, true),
                                      ConvBn(base, base, 3, 2, 1, base, true)));
    auto stages = register_module("stages", torch::nn::ModuleList());
    auto transitions = register_module("transitions", torch::nn::ModuleList());
    size_t blockIndex = 0;
    for (size_t i = 0; i < dims.size(); ++i) {
      auto stage = torch::nn::Sequential();
      for (int64_t j = 0; j < config_.depths[i]; ++j) {
        double rate = rates[blockIndex++];
        stage->push_back(RepLkBlock(stageKernel(config_, dims[i], static_cast<int>(i)), rate));
        stage->push_back(ConvFfnBlock(dims[i], rate));
      }
      stages->push_back(stage);
      stages_.push_back(stage);
      if (i + 1 < dims.size()) {
        auto t =
            torch::nn::Sequential(ConvBn(dims[i], dims[i + 1], 1, 1, 0, 1, true),
                                  ConvBn(dims[i + 1], dims[i + 1], 3, 2, 1, dims[i + 1], true));
        transitions->push_back(t);
        transitions_.push_back(t);
      }
    }
    norm_ = register_module("norm", torch::nn::BatchNorm2d(dims.back()));
    head_ = register_module("head", torch::nn::Linear(dims.back(), config_.numClasses));
  }

  torch::Tensor forwardFeatures(const torch::Tensor &input) override {
    auto x = stem_->forward(input);
    for (size_t i = 0; i < stages_.size(); ++i) {
      x = stages_[i]->forward(x);
      if (i < transitions_.size())
        x = transitions_[i]->forward(x);
    }
    return x;
  }

  torch::Tensor forward(const torch::Tensor &input) override {
    return head_(norm_(forwardFeatures(input)).mean({-2, -1}));
  }

private:
  torch::nn::Sequential stem_{nullptr};
  std::vector<torch::nn::Sequential> stages_, transitions_;
  torch::nn::BatchNorm2d norm_{nullptr};
  torch::nn::Linear head_{nullptr};
};

} // namespace

int64_t minimumImageSize(const ModelConfig &config) {
  if (config.family == Family::RepLKNet)
    return 1;
  // The stem gives (H + 2p - k) / s + 1 pixels; each later stage halves them
  // (floor), so the stem must leave 2^(stages - 1).
  const int64_t stemOut = int64_t{1} << (config.depths.empty() ? 0 : config.depths.size() - 1);
  const int64_t size =
      config.stemStride * (stemOut - 1) + config.stemKernel - 2 * stemPadding(config);
  return std::max<int64_t>(size, 1);
}

std::shared_ptr<Classifier> createModel(const ModelConfig &config) {
  if (config.family == Family::RepLKNet)
    return std::make_shared<RepLkNet>(config);
  return std::make_shared<SlakNet>(config);
}

// ------------------------------------------------------------------ helpers

std::vector<std::pair<std::string, std::shared_ptr<LargeKernelConv>>>
largeKernelLayers(torch::nn::Module &model) {
  std::vector<std::pair<std::string, std::shared_ptr<LargeKernelConv>>> out;
  for (const auto &item : model.named_modules("", /*include_self=*/false))
    if (auto lk = std::dynamic_pointer_cast<LargeKernelConv>(item.value()))
      out.emplace_back(item.key(), lk);
  return out;
}

void pushMasksToLargeKernels(torch::nn::Module &model,
                             const std::map<std::string, torch::Tensor> &masks) {
  for (auto &[path, layer] : largeKernelLayers(model)) {
    std::vector<torch::Tensor> branchMasks;
    for (size_t b = 0; b < layer->numBranches(); ++b) {
      auto it = masks.find(path + "." + layer->branchWeightName(b));
      branchMasks.push_back(it == masks.end() ? torch::Tensor() : it->second);
    }
    layer->setBranchMasks(branchMasks);
  }
}

ParameterCounts countParameters(torch::nn::Module &model) {
  torch::NoGradGuard noGrad;
  ParameterCounts counts;
  for (const auto &p : model.parameters()) {
    counts.total += p.numel();
    counts.nonZero += p.ne(0).sum().item<int64_t>();
  }
  return counts;
}

} // namespace slak::models

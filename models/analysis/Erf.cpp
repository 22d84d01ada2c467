#include "models/analysis/Erf.h"

#include "models/data/Datasets.h"

#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include <algorithm>
#include <stdexcept>

namespace slak::analysis {

using models::Family;

// ---------------------------------------------------------------- geometry

std::vector<AxisLayer> featureGeometry(const models::ModelConfig &c) {
  std::vector<AxisLayer> layers;
  const size_t stages = c.depths.size();
  if (c.family == Family::RepLKNet) {
    // Stem: 3x3/2, depthwise 3x3, 1x1, depthwise 3x3/2 (all padding 1 or 0).
    layers.push_back({3, 2, 1});
    layers.push_back({3, 1, 1});
    layers.push_back({3, 2, 1});
    for (size_t i = 0; i < stages; ++i) {
      // Each RepLK block has one K x K (+ small) "same" depthwise layer.
      const int64_t k = c.kernelSizes[i];
      for (int64_t j = 0; j < c.depths[i]; ++j)
        layers.push_back({k, 1, k / 2});
      if (i + 1 < stages)
        layers.push_back({3, 2, 1}); // transition: 1x1, then depthwise 3x3/2
    }
    return layers;
  }
  // SLaK / ConvNeXt: patchify stem, then per stage (downsampling 2x2/2 after
  // the first) blocks with one "same" large kernel each. SLaK's M x N + N x M
  // + N x N spans M along both axes, as does M x M (+ N x N with N < M).
  layers.push_back({c.stemKernel, c.stemStride, models::stemPadding(c)});
  for (size_t i = 0; i < stages; ++i) {
    if (i > 0)
      layers.push_back({2, 2, 0});
    const int64_t k = c.kernelSizes[i];
    for (int64_t j = 0; j < c.depths[i]; ++j)
      layers.push_back({k, 1, k / 2});
  }
  return layers;
}

int64_t totalStride(const models::ModelConfig &config) {
  int64_t stride = 1;
  for (const auto &l : featureGeometry(config))
    stride *= l.stride;
  return stride;
}

int64_t featureMapSize(const models::ModelConfig &config, int64_t size) {
  int64_t n = size;
  for (const auto &l : featureGeometry(config)) {
    n = n + 2 * l.padding - l.kernel;
    n = n < 0 ? 0 : n / l.stride + 1;
  }
  return n;
}

void checkErfSize(const models::ModelConfig &config, int64_t size) {
  const int64_t stride = totalStride(config);
  const int64_t minSize = stride * kMinFeatureMapSize;
  if (size <= 0 || size % stride != 0) {
    const int64_t up = size <= 0 ? minSize : (size / stride + 1) * stride;
    throw std::invalid_argument("--size " + std::to_string(size) + " is not a multiple of " +
                                config.name + "'s total stride " + std::to_string(stride) +
                                ": use e.g. --size " + std::to_string(std::max(up, minSize)));
  }
  if (featureMapSize(config, size) < kMinFeatureMapSize)
    throw std::invalid_argument(
        "--size " + std::to_string(size) + " is too small for " + config.name +
        ": its last feature map would be " + std::to_string(featureMapSize(config, size)) + "x" +
        std::to_string(featureMapSize(config, size)) + ", need at least " +
        std::to_string(kMinFeatureMapSize) + "x" + std::to_string(kMinFeatureMapSize) +
        ": use --size " + std::to_string(minSize) + " or more");
}

ReceptiveField centreReceptiveField(const models::ModelConfig &config, int64_t size) {
  const auto layers = featureGeometry(config);
  int64_t lo = featureMapSize(config, size) / 2, hi = lo;
  // Walk back from the centre pixel: output [lo, hi] reads input
  // [lo * s - p, hi * s - p + k - 1].
  for (auto it = layers.rbegin(); it != layers.rend(); ++it) {
    lo = lo * it->stride - it->padding;
    hi = hi * it->stride - it->padding + it->kernel - 1;
  }
  ReceptiveField rf;
  rf.fullLo = lo;
  rf.fullHi = hi;
  rf.lo = std::max<int64_t>(lo, 0);
  rf.hi = std::min<int64_t>(hi, size - 1);
  return rf;
}

// ------------------------------------------------------------------ inputs

torch::Tensor erfInputs(const ErfInputOptions &o) {
  if (o.size <= 0 || o.channels <= 0)
    throw std::invalid_argument("ERF inputs need a positive size and channel count");
  auto gen = at::make_generator<at::CPUGeneratorImpl>(o.seed);
  if (o.source == "random") {
    if (o.count <= 0)
      throw std::invalid_argument("--images " + std::to_string(o.count) + " is not positive");
    return torch::randn({o.count, o.channels, o.size, o.size}, gen, torch::kFloat32);
  }
  if (o.source != "fashion-mnist")
    throw std::invalid_argument("--data " + o.source + ": expected fashion-mnist or random");
  data::Dataset test = data::loadFashionMnist(o.dataDir, /*train=*/false);
  if (o.count <= 0 || o.count > test.size())
    throw std::invalid_argument("--images " + std::to_string(o.count) + " is outside [1, " +
                                std::to_string(test.size()) + "] (the Fashion-MNIST test images)");
  auto pick = torch::randperm(test.size(), gen, torch::kLong).slice(0, 0, o.count);
  auto images = test.images.index_select(0, pick);
  images =
      torch::nn::functional::interpolate(images, torch::nn::functional::InterpolateFuncOptions()
                                                     .size(std::vector<int64_t>{o.size, o.size})
                                                     .mode(torch::kBilinear)
                                                     .align_corners(false));
  if (o.channels != images.size(1))
    images = images.expand({-1, o.channels, -1, -1});
  return images.contiguous();
}

// ---------------------------------------------------------------- the map

torch::Tensor erfContributions(models::Classifier &model, const torch::Tensor &images) {
  model.eval();
  for (auto &p : model.parameters())
    p.requires_grad_(false);
  auto x = images.detach().clone().requires_grad_(true);
  torch::Tensor features = model.forwardFeatures(x);
  const int64_t cy = features.size(2) / 2, cx = features.size(3) / 2;
  torch::Tensor centre = torch::relu(features.select(3, cx).select(2, cy)).sum();
  auto grads = torch::autograd::grad({centre}, {x}, /*grad_outputs=*/{}, /*retain_graph=*/false,
                                     /*create_graph=*/false, /*allow_unused=*/true);
  if (!grads[0].defined()) // no positive centre output: nothing depends on x
    return torch::zeros({x.size(2), x.size(3)}, torch::kFloat64);
  return torch::relu(grads[0]).to(torch::kFloat64).sum(at::IntArrayRef{0, 1});
}

torch::Tensor normaliseErf(const torch::Tensor &map) {
  auto logMap = torch::log10(map.to(torch::kFloat64) + 1.0);
  const double peak = logMap.max().item<double>();
  return peak > 0 ? logMap / peak : logMap;
}

namespace {

/// Inclusive 2D prefix sums with a zero row and column in front.
class SummedArea {
public:
  explicit SummedArea(const torch::Tensor &map)
      : h_(map.size(0)), w_(map.size(1)),
        sums_(torch::nn::functional::pad(map.to(torch::kFloat64).cumsum(0).cumsum(1),
                                         torch::nn::functional::PadFuncOptions({1, 0, 1, 0}))
                  .contiguous()) {
    data_ = sums_.data_ptr<double>();
  }
  /// Sum over rows [r0, r1] and columns [c0, c1], clipped to the map.
  double sum(int64_t r0, int64_t r1, int64_t c0, int64_t c1) const {
    r0 = std::max<int64_t>(r0, 0);
    c0 = std::max<int64_t>(c0, 0);
    r1 = std::min(r1, h_ - 1);
    c1 = std::min(c1, w_ - 1);
    if (r0 > r1 || c0 > c1)
      return 0;
    return at(r1 + 1, c1 + 1) - at(r0, c1 + 1) - at(r1 + 1, c0) + at(r0, c0);
  }
  int64_t height() const { return h_; }
  int64_t width() const { return w_; }

private:
  double at(int64_t r, int64_t c) const { return data_[r * (w_ + 1) + c]; }
  int64_t h_, w_;
  torch::Tensor sums_;
  const double *data_ = nullptr;
};

int64_t sideFromSums(const SummedArea &area, double fraction) {
  const int64_t h = area.height(), w = area.width();
  const int64_t cy = h / 2, cx = w / 2;
  const double total = area.sum(0, h - 1, 0, w - 1);
  const double target = fraction * total;
  const int64_t limit = std::max({cy, h - 1 - cy, cx, w - 1 - cx});
  int64_t i = 0;
  for (; i < limit; ++i)
    if (area.sum(cy - i, cy + i, cx - i, cx + i) >= target)
      break;
  return std::min<int64_t>(2 * i + 1, std::max(h, w));
}

void checkMap(const torch::Tensor &map) {
  if (map.dim() != 2 || map.numel() == 0)
    throw std::invalid_argument("ERF map must be a non-empty 2D tensor, got shape " +
                                c10::str(map.sizes()));
}

} // namespace

int64_t centredSquareSide(const torch::Tensor &map, double fraction) {
  checkMap(map);
  return sideFromSums(SummedArea(map), fraction);
}

std::vector<ErfSide> centredSquareSides(const torch::Tensor &map,
                                        const std::vector<double> &fractions) {
  checkMap(map);
  SummedArea area(map);
  const double pixels = static_cast<double>(map.size(0) * map.size(1));
  std::vector<ErfSide> out;
  for (double f : fractions) {
    ErfSide s;
    s.fraction = f;
    s.side = sideFromSums(area, f);
    s.areaRatio = std::min(1.0, static_cast<double>(s.side * s.side) / pixels);
    out.push_back(s);
  }
  return out;
}

ErfMap computeErf(models::Classifier &model, const torch::Tensor &images, int64_t batchSize,
                  const std::vector<double> &fractions,
                  const std::function<void(int64_t, int64_t)> &progress) {
  if (images.dim() != 4 || images.size(0) == 0)
    throw std::invalid_argument("ERF images must be [N, C, H, W] with N > 0, got " +
                                c10::str(images.sizes()));
  batchSize = std::max<int64_t>(batchSize, 1);
  const int64_t n = images.size(0);
  torch::Tensor sum;
  for (int64_t start = 0; start < n; start += batchSize) {
    const int64_t end = std::min(n, start + batchSize);
    auto part = erfContributions(model, images.slice(0, start, end));
    sum = sum.defined() ? sum + part : part;
    if (progress)
      progress(end, n);
  }
  ErfMap out;
  out.images = n;
  out.mean = sum / static_cast<double>(n);
  if (out.mean.max().item<double>() <= 0)
    throw std::runtime_error("the ERF of " + model.config().name + " is zero everywhere: no " +
                             "centre output of the last feature map is positive on these " +
                             std::to_string(n) + " images (try other images or --data)");
  out.normalised = normaliseErf(out.mean);
  out.sides = centredSquareSides(out.normalised, fractions);
  out.rawSides = centredSquareSides(out.mean, fractions);
  return out;
}

} // namespace slak::analysis

// Erf: the effective receptive field of a classifier's last feature map, as
// in the RepLKNet and SLaK analyses. For each image, the gradient of
// sum(ReLU(centre pixel of the last feature map, all channels)) with respect
// to the input, ReLU'd and summed over input channels; averaged over images.
// The map shown is log10(mean + 1) divided by its maximum (in [0, 1]); the
// "high-contribution" sides are the smallest centred squares holding a given
// share of that normalised map (centredSquareSide says exactly how).
//
// Also the theoretical receptive field of the centre pixel (from the model's
// convolution geometry), which bounds where the map can be non-zero.
#pragma once

#include "models/Models.h"

#include <torch/types.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace slak::analysis {

/// One spatial layer along one axis: out = floor((in + 2 padding - kernel) / stride) + 1.
struct AxisLayer {
  int64_t kernel = 1;
  int64_t stride = 1;
  int64_t padding = 0;
};

/// The spatial layers from the input to the last feature map (1x1 layers
/// left out; they neither move nor widen the field).
std::vector<AxisLayer> featureGeometry(const models::ModelConfig &config);
/// Product of the strides: the input pixels per feature-map pixel.
int64_t totalStride(const models::ModelConfig &config);
/// Side of the last feature map for a size x size input.
int64_t featureMapSize(const models::ModelConfig &config, int64_t size);

/// Smallest last-feature-map side the analysis accepts (so that "the centre"
/// is a pixel with neighbours on each side).
inline constexpr int64_t kMinFeatureMapSize = 4;
/// Throws std::invalid_argument naming the size and the fix when `size` is
/// not a positive multiple of the total stride or the last feature map would
/// be smaller than kMinFeatureMapSize.
void checkErfSize(const models::ModelConfig &config, int64_t size);

/// Input pixels [lo, hi] (inclusive, per axis; the field is square) that the
/// centre pixel (featureMapSize / 2) of the last feature map depends on:
/// `full` is the field ignoring the image border, `lo`/`hi` clipped to it.
struct ReceptiveField {
  int64_t fullLo = 0, fullHi = 0;
  int64_t lo = 0, hi = 0;
  int64_t fullSide() const { return fullHi - fullLo + 1; }
};
ReceptiveField centreReceptiveField(const models::ModelConfig &config, int64_t size);

/// Input images for the analysis, normalised as the model was trained on.
struct ErfInputOptions {
  /// "fashion-mnist" (test images, bilinearly upsampled to size x size,
  /// channels repeated to `channels`) or "random" (standard normal pixels).
  std::string source = "fashion-mnist";
  std::string dataDir = "/usr/share/datasets/fashion-mnist";
  int64_t count = 50;
  int64_t size = 1024;
  int64_t channels = 1;
  /// Picks which test images (a seeded sample without replacement) or the noise.
  uint64_t seed = 0;
};
/// [count, channels, size, size] float32. Throws std::invalid_argument for an
/// unknown source or a count outside [1, 10000] for Fashion-MNIST.
torch::Tensor erfInputs(const ErfInputOptions &options);

/// Sum over the images of the batch of ReLU(d sum(ReLU(centre)) / d input),
/// summed over input channels: [H, W] float64. The model is put in eval mode
/// (BatchNorm uses its running statistics) and its parameters stop
/// requiring gradients.
torch::Tensor erfContributions(models::Classifier &model, const torch::Tensor &images);

struct ErfSide {
  double fraction = 0;
  int64_t side = 0;     // pixels, odd, at most max(H, W)
  double areaRatio = 0; // side^2 / (H * W), at most 1
};

struct ErfMap {
  torch::Tensor mean;       // [H, W] float64: mean contribution per image
  torch::Tensor normalised; // [H, W] float64: log10(mean + 1) / max, in [0, 1]
  int64_t images = 0;
  std::vector<ErfSide> sides;    // of `normalised` (the RepLKNet analysis)
  std::vector<ErfSide> rawSides; // of `mean` (no log), for comparison
};

/// The fractions reported by the RepLKNet analysis.
inline const std::vector<double> kErfFractions = {0.2, 0.3, 0.5, 0.99};

/// Runs erfContributions over `images` in batches of `batchSize` and
/// averages. `progress(done, total)` is called after each batch when set.
/// Throws std::runtime_error when every contribution is zero (no centre
/// output is positive after the ReLU, so there is no field to show).
ErfMap computeErf(models::Classifier &model, const torch::Tensor &images, int64_t batchSize = 1,
                  const std::vector<double> &fractions = kErfFractions,
                  const std::function<void(int64_t, int64_t)> &progress = {});

/// log10(map + 1) / max(log10(map + 1)); all zeros stay zeros. float64.
torch::Tensor normaliseErf(const torch::Tensor &map);

/// The side s = 2i + 1 of the smallest square of rows [cy - i, cy + i] and
/// columns [cx - i, cx + i] (cy = H / 2, cx = W / 2, integer division; the
/// square clipped to the image) whose sum is at least `fraction` of the whole
/// map's sum, for a non-negative map; clipped to max(H, W). RepLKNet's
/// get_rectangle uses the same centred odd squares (with "more than" instead
/// of "at least", and i >= 1).
int64_t centredSquareSide(const torch::Tensor &map, double fraction);
std::vector<ErfSide> centredSquareSides(const torch::Tensor &map,
                                        const std::vector<double> &fractions);

} // namespace slak::analysis

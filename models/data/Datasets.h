// Datasets: in-memory image classification data for the trainer.
//   - Fashion-MNIST from Debian's dataset-fashion-mnist (gzipped IDX files);
//   - a synthetic, learnable data set made from a seed (tests, smoke runs).
#pragma once

#include <torch/types.h>

#include <cstdint>
#include <string>

namespace slak::data {

/// Images [N, C, H, W] float32 (normalised), labels [N] int64.
struct Dataset {
  std::string name;
  torch::Tensor images;
  torch::Tensor labels;
  int64_t numClasses = 0;

  int64_t size() const { return images.defined() ? images.size(0) : 0; }
  int64_t channels() const { return images.size(1); }
  int64_t height() const { return images.size(2); }
  int64_t width() const { return images.size(3); }
};

/// Where Debian's dataset-fashion-mnist puts the files.
inline const char *kFashionMnistDir = "/usr/share/datasets/fashion-mnist";

/// Reads `{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz` from `dir`, scaled
/// to [0, 1] and normalised with Fashion-MNIST's mean 0.2860 and std 0.3530.
/// A missing file is a std::runtime_error naming the path and the Debian
/// package dataset-fashion-mnist; a malformed one names the file and field.
Dataset loadFashionMnist(const std::string &dir, bool train);

struct SyntheticOptions {
  int64_t size = 512;
  int64_t numClasses = 10;
  int64_t channels = 1;
  int64_t height = 28;
  int64_t width = 28;
  double noise = 0.5;
  uint64_t seed = 0;
};

/// Each class has a smooth random template (fixed by `seed`, shared by the
/// train and test splits); a sample is its class template shifted by up to
/// two pixels plus Gaussian noise. `split` (0 = train, 1 = test) varies the
/// samples, not the templates.
Dataset makeSynthetic(const SyntheticOptions &options, int split);

/// Images idx[i] of `d` as one batch.
struct Batch {
  torch::Tensor images;
  torch::Tensor labels;
};
Batch gather(const Dataset &d, const torch::Tensor &indices);

} // namespace slak::data

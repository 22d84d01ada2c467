// ExportedLayer: one large-kernel layer of a model as plain numbers (no
// LibTorch, no MLIR), the hand-over between the extractor in models/deploy
// (LibTorch) and the MLIR module builder of slak-export (-fno-exceptions).
//
// The layer computes (DESIGN.md section 1), NCHW, stride 1:
//   y = bias + sum_b BN_b(conv_b(x, weight_b * mask_b))
// with BN_b(t) = (t - mean) * scale / sqrt(variance + epsilon) + shift in
// eval form (running statistics).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace slak::models {

struct ExportedBranch {
  int kernelH = 1;
  int kernelW = 1;
  int padH = 0;
  int padW = 0;
  /// [C][KH][KW], row-major (the [C, 1, KH, KW] weight).
  std::vector<float> weight;
  /// [C][KH][KW] 0/1, live = 1; empty = dense.
  std::vector<uint8_t> mask;
  /// The branch's own BatchNorm (eval form); the vectors are [C].
  bool batchNorm = false;
  std::vector<float> mean, variance, scale, shift;
  double epsilon = 1e-5;
};

struct ExportedLayer {
  /// The model's module path, e.g. "stages.0.1.large_kernel".
  std::string path;
  int64_t channels = 0;
  /// The layer's input size at the model's nominal image size.
  int64_t height = 0;
  int64_t width = 0;
  std::vector<ExportedBranch> branches;
  /// [C] bias on the sum (ConvNeXt's depthwise conv); empty = none.
  std::vector<float> bias;
};

} // namespace slak::models

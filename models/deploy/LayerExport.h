// LayerExport: reads every large-kernel layer of a LibTorch model
// (largeKernelLayers) into plain numbers (ExportedLayer): branch weights,
// the masks the layer holds, eval-form BatchNorm parameters, paddings, and
// the layer's input size at the model's nominal image size, found by one
// forward pass of a zero image. slak-export turns the result into slak ops;
// models/deploy checks kernel packages against it.
#pragma once

#include "models/Models.h"
#include "models/deploy/ExportedLayer.h"

#include <map>
#include <string>
#include <utility>
#include <vector>

namespace slak::models {

/// Runs one zero image of `imageSize` (the config's nominal size when <= 0)
/// through `model` in eval mode and returns each large-kernel layer's input
/// [height, width] by layer path. Leaves the model in the mode it was in.
std::map<std::string, std::pair<int64_t, int64_t>> largeKernelInputSizes(Classifier &model,
                                                                         int64_t imageSize = 0);

/// Every large-kernel layer of `model` in module order. Throws
/// std::runtime_error naming the layer and the problem for a layer the slak
/// dialect cannot express (e.g. a BatchNorm without running statistics).
std::vector<ExportedLayer> exportLargeKernelLayers(Classifier &model, int64_t imageSize = 0);

} // namespace slak::models

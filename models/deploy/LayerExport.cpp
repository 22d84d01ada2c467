#include "models/deploy/LayerExport.h"

#include <torch/torch.h>

#include <stdexcept>

namespace slak::models {
namespace {

std::vector<float> floats(const torch::Tensor &t) {
  torch::Tensor c = t.detach().to(torch::kCPU, torch::kFloat).contiguous();
  return std::vector<float>(c.data_ptr<float>(), c.data_ptr<float>() + c.numel());
}

[[noreturn]] void refuse(const std::string &layer, const std::string &why) {
  throw std::runtime_error("large-kernel layer " + layer +
                           " cannot be exported as slak ops: " + why);
}

} // namespace

std::map<std::string, std::pair<int64_t, int64_t>> largeKernelInputSizes(Classifier &model,
                                                                         int64_t imageSize) {
  const ModelConfig &config = model.config();
  const int64_t size = imageSize > 0 ? imageSize : config.imageSize;
  auto layers = largeKernelLayers(model);
  std::map<std::string, std::vector<int64_t>> before;
  for (auto &[path, layer] : layers)
    before[path] = layer->lastInputShape();
  const bool wasTraining = model.is_training();
  model.eval();
  {
    torch::NoGradGuard noGrad;
    auto device = model.parameters().empty() ? torch::Device(torch::kCPU)
                                             : model.parameters().front().device();
    model.forward(torch::zeros({1, config.inChannels, size, size}, torch::device(device)));
  }
  model.train(wasTraining);
  std::map<std::string, std::pair<int64_t, int64_t>> sizes;
  for (auto &[path, layer] : layers) {
    const std::vector<int64_t> &shape = layer->lastInputShape();
    if (shape.size() != 4)
      throw std::runtime_error("large-kernel layer " + path +
                               " saw no rank-4 input in a forward "
                               "pass of a " +
                               std::to_string(size) + "x" + std::to_string(size) +
                               " image: it is not on the model's forward path");
    sizes[path] = {shape[2], shape[3]};
  }
  return sizes;
}

std::vector<ExportedLayer> exportLargeKernelLayers(Classifier &model, int64_t imageSize) {
  const auto sizes = largeKernelInputSizes(model, imageSize);
  std::vector<ExportedLayer> out;
  for (auto &[path, layer] : largeKernelLayers(model)) {
    ExportedLayer e;
    e.path = path;
    e.channels = layer->options().channels;
    std::tie(e.height, e.width) = sizes.at(path);
    const std::vector<torch::Tensor> &masks = layer->branchMasks();
    for (size_t b = 0; b < layer->numBranches(); ++b) {
      const codegen::KernelWindow &shape = layer->options().branches[b];
      ExportedBranch br;
      br.kernelH = shape.kernelH;
      br.kernelW = shape.kernelW;
      br.padH = shape.kernelH / 2;
      br.padW = shape.kernelW / 2;
      torch::Tensor w = layer->branchWeight(b);
      if (w.dim() != 4 || w.size(0) != e.channels || w.size(1) != 1 || w.size(2) != shape.kernelH ||
          w.size(3) != shape.kernelW)
        refuse(path, "branch " + std::to_string(b) + " weight has shape " + c10::str(w.sizes()) +
                         ", expected a depthwise [" + std::to_string(e.channels) + ", 1, " +
                         std::to_string(shape.kernelH) + ", " + std::to_string(shape.kernelW) +
                         "]");
      br.weight = floats(w);
      if (b < masks.size() && masks[b].defined()) {
        if (masks[b].sizes() != w.sizes())
          refuse(path, "branch " + std::to_string(b) + " mask has shape " +
                           c10::str(masks[b].sizes()) + ", the weight's is " + c10::str(w.sizes()));
        torch::Tensor live = masks[b].detach().ne(0).to(torch::kCPU, torch::kUInt8).contiguous();
        br.mask.assign(live.data_ptr<uint8_t>(), live.data_ptr<uint8_t>() + live.numel());
      }
      if (torch::nn::BatchNorm2d bn = layer->branchNorm(b)) {
        const auto &o = bn->options;
        if (!o.track_running_stats() || !bn->running_mean.defined())
          refuse(path, "branch " + std::to_string(b) +
                           "'s BatchNorm keeps no running statistics (track_running_stats = "
                           "false); slak.batch_norm is the eval form");
        br.batchNorm = true;
        br.mean = floats(bn->running_mean);
        br.variance = floats(bn->running_var);
        br.scale = o.affine() ? floats(bn->weight) : std::vector<float>(e.channels, 1.0f);
        br.shift = o.affine() ? floats(bn->bias) : std::vector<float>(e.channels, 0.0f);
        br.epsilon = o.eps();
      }
      e.branches.push_back(std::move(br));
    }
    if (torch::Tensor bias = layer->sumBias(); bias.defined())
      e.bias = floats(bias);
    out.push_back(std::move(e));
  }
  return out;
}

} // namespace slak::models

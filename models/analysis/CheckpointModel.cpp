#include "models/analysis/CheckpointModel.h"

#include "models/deploy/Checkpoint.h"

#include <nlohmann/json.hpp>

#include <stdexcept>

namespace slak::analysis {

using json = nlohmann::json;

namespace {

/// The width factor (on a 0.01 grid) that reproduces `dims` from `base`, or 0.
double inferWidthFactor(const std::vector<int64_t> &base, const std::vector<int64_t> &dims) {
  if (base.size() != dims.size() || base.empty())
    return 0;
  for (int k = 1; k <= 1000; ++k) {
    models::ModelConfig c;
    c.baseDims = base;
    c.widthFactor = k / 100.0;
    if (c.dims() == dims)
      return c.widthFactor;
  }
  return 0;
}

json comparable(const models::ModelConfig &c) {
  return json{{"name", c.name},
              {"depths", c.depths},
              {"dims", c.dims()},
              {"kernel_sizes", c.kernelSizes},
              {"small_kernel", c.smallKernel},
              {"decomposed", c.decomposed},
              {"branch_bn", c.branchBatchNorm},
              {"in_channels", c.inChannels},
              {"num_classes", c.numClasses},
              {"stem_kernel", c.stemKernel},
              {"stem_stride", c.stemStride}};
}

} // namespace

models::ModelConfig checkpointModelConfig(const std::string &path, const std::string &model,
                                          const models::ModelOverrides &overrides) {
  const json saved = json::parse(models::checkpointConfig(path));
  const std::string name = model.empty() ? saved.value("name", std::string()) : model;
  models::ModelOverrides o = overrides;
  if (!o.kernelSizes && saved.contains("kernel_sizes"))
    o.kernelSizes = saved["kernel_sizes"].get<std::vector<int>>();
  if (!o.smallKernel && saved.contains("small_kernel"))
    o.smallKernel = saved["small_kernel"].get<int>();
  if (!o.decomposed && saved.contains("decomposed"))
    o.decomposed = saved["decomposed"].get<bool>();
  if (!o.branchBatchNorm && saved.contains("branch_bn"))
    o.branchBatchNorm = saved["branch_bn"].get<bool>();
  if (!o.inChannels && saved.contains("in_channels"))
    o.inChannels = saved["in_channels"].get<int64_t>();
  if (!o.numClasses && saved.contains("num_classes"))
    o.numClasses = saved["num_classes"].get<int64_t>();
  if (!o.stemKernel && saved.contains("stem_kernel"))
    o.stemKernel = saved["stem_kernel"].get<int>();
  if (!o.stemStride && saved.contains("stem_stride"))
    o.stemStride = saved["stem_stride"].get<int>();
  if (!o.sparsity && saved.contains("sparsity"))
    o.sparsity = saved["sparsity"].get<double>();
  if (!o.widthFactor && saved.contains("dims")) {
    const auto base = models::modelConfig(name).baseDims;
    if (double w = inferWidthFactor(base, saved["dims"].get<std::vector<int64_t>>()); w > 0)
      o.widthFactor = w;
  }
  models::ModelConfig config = models::modelConfig(name, o);
  json built = comparable(config), wanted = saved;
  for (auto it = wanted.begin(); it != wanted.end();)
    it = built.contains(it.key()) ? std::next(it) : wanted.erase(it);
  if (built != wanted)
    throw std::runtime_error(path + " was written for model " + wanted.dump() +
                             ", but these options build " + built.dump() +
                             ": pass the checkpoint's --model and overrides (or none)");
  return config;
}

std::shared_ptr<models::Classifier> loadCheckpointModel(const std::string &path,
                                                        models::ModelConfig config, bool ema) {
  auto tryLoad = [&](models::LkBackend backend, std::string &error) {
    models::ModelConfig c = config;
    c.backend = backend;
    auto model = models::createModel(c);
    try {
      models::loadCheckpoint(path, *model, ema); // weights, masks, pushed to the layers
    } catch (const std::runtime_error &e) {
      error = e.what();
      return std::shared_ptr<models::Classifier>();
    }
    return model;
  };
  std::string error;
  auto model = tryLoad(config.backend, error);
  if (!model && config.backend == models::LkBackend::Auto) {
    // The runtime and LibTorch backends name their branch weights differently.
    const auto resolved = models::resolveLkBackend(models::LkBackend::Auto);
    const auto other = resolved == models::LkBackend::Runtime ? models::LkBackend::Torch
                                                              : models::LkBackend::Runtime;
    std::string otherError;
    if (other == models::LkBackend::Torch || models::runtimeLargeKernelAvailable())
      model = tryLoad(other, otherError);
  }
  if (!model)
    throw std::runtime_error("cannot load " + path + " into " + config.name +
                             " (large-kernel backend " + models::lkBackendName(config.backend) +
                             "; a checkpoint loads only into the backend it was trained with, "
                             "see --lk-backend): " +
                             error);
  return model;
}

} // namespace slak::analysis

#include "models/analysis/CheckpointModel.h"

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include <filesystem>
#include <map>
#include <stdexcept>

namespace slak::analysis {

using json = nlohmann::json;

namespace {

torch::serialize::InputArchive openCheckpoint(const std::string &path) {
  if (!std::filesystem::is_regular_file(path))
    throw std::runtime_error("checkpoint " + path +
                             " does not exist: pass a checkpoint.pt written by slak-train");
  torch::serialize::InputArchive root;
  try {
    root.load_from(path, torch::kCPU);
  } catch (const c10::Error &e) {
    throw std::runtime_error("cannot read checkpoint " + path +
                             " (not a slak-train checkpoint?): " + e.what_without_backtrace());
  }
  return root;
}

json savedConfig(torch::serialize::InputArchive &root, const std::string &path) {
  torch::serialize::InputArchive meta;
  c10::IValue config;
  if (!root.try_read("meta", meta) || !meta.try_read("config", config) || !config.isString())
    throw std::runtime_error(path + " has no meta/config: not a slak-train checkpoint");
  return json::parse(config.toStringRef());
}

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
              {"stem_kernel", c.stemKernel}};
}

} // namespace

models::ModelConfig checkpointModelConfig(const std::string &path, const std::string &model,
                                          const models::ModelOverrides &overrides) {
  auto root = openCheckpoint(path);
  const json saved = savedConfig(root, path);
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
  auto root = openCheckpoint(path);
  const char *section = ema ? "ema" : "model";
  torch::serialize::InputArchive weights;
  if (!root.try_read(section, weights))
    throw std::runtime_error(path + " has no " + section + "/ weights" +
                             (ema ? ": it was trained without --ema-decay; drop --ema" : ""));

  auto tryLoad = [&](models::LkBackend backend, std::string &error) {
    models::ModelConfig c = config;
    c.backend = backend;
    auto model = models::createModel(c);
    try {
      model->load(weights);
    } catch (const c10::Error &e) {
      error = e.what_without_backtrace();
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
    throw std::runtime_error("cannot load the " + std::string(section) + " weights of " + path +
                             " into " + config.name + " (large-kernel backend " +
                             models::lkBackendName(config.backend) +
                             "; a checkpoint loads only into the backend it was trained with, "
                             "see --lk-backend): " +
                             error);

  torch::serialize::InputArchive masks;
  if (root.try_read("masks", masks)) {
    torch::Tensor count;
    masks.read("count", count);
    std::map<std::string, torch::Tensor> byName;
    for (int64_t i = 0; i < count.item<int64_t>(); ++i) {
      c10::IValue name;
      torch::Tensor mask;
      masks.read("name/" + std::to_string(i), name);
      masks.read("mask/" + std::to_string(i), mask);
      byName[name.toStringRef()] = mask;
    }
    models::pushMasksToLargeKernels(*model, byName);
  }
  return model;
}

} // namespace slak::analysis

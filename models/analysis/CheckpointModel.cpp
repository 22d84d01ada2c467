#include "models/analysis/CheckpointModel.h"

#include "models/checkpoint/ConfigJson.h"
#include "models/deploy/Checkpoint.h"

#include <stdexcept>

namespace slak::analysis {

models::ModelConfig checkpointModelConfig(const std::string &path, const std::string &model,
                                          const models::ModelOverrides &overrides) {
  return checkpoint::configFromJson(models::checkpointConfig(path), model, overrides, path);
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

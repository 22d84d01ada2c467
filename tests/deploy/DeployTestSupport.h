// Models for the export and deployment tests: random weights, random masks,
// non-trivial BatchNorm statistics and layer scales of 1 (so the large-kernel
// layers move the logits), and helpers to run the tools.
#pragma once

#include "models/Models.h"
#include "models/sparse/Masking.h"

#include <torch/torch.h>

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include <unistd.h>

namespace slak::testing {

/// Masks (uniform at the config's sparsity, drawn from `seed`) pushed to the
/// large-kernel layers, dead weights zeroed.
inline void drawMasks(models::Classifier &model, uint64_t seed) {
  sparse::Options o;
  o.sparsity = model.config().sparsity > 0 ? model.config().sparsity : 0.4;
  o.init = sparse::Init::Uniform;
  o.seed = seed;
  sparse::Masking masking(model, o);
  masking.initialize();
  models::pushMasksToLargeKernels(model, masking.maskMap());
}

/// Random BatchNorm statistics and affine parameters on every large-kernel
/// branch; every layer scale (gamma) 1.
inline void randomizeNorms(models::Classifier &model) {
  torch::NoGradGuard noGrad;
  for (auto &[path, layer] : models::largeKernelLayers(model))
    for (size_t b = 0; b < layer->numBranches(); ++b)
      if (auto bn = layer->branchNorm(b)) {
        bn->running_mean.copy_(torch::randn_like(bn->running_mean) * 0.1);
        bn->running_var.copy_(torch::rand_like(bn->running_var) + 0.5);
        bn->weight.copy_(torch::rand_like(bn->weight) + 0.5);
        bn->bias.copy_(torch::randn_like(bn->bias) * 0.1);
      }
  for (auto &p : model.named_parameters())
    if (p.key().size() >= 5 && p.key().compare(p.key().size() - 5, 5, "gamma") == 0)
      p.value().fill_(1.0);
}

/// slak_nano (runtime backend where built) with masks and BN statistics.
inline std::shared_ptr<models::Classifier> nanoModel(uint64_t seed,
                                                     const models::ModelOverrides &o = {}) {
  torch::manual_seed(seed);
  auto model = models::createModel("slak_nano", o);
  drawMasks(*model, seed);
  randomizeNorms(*model);
  model->eval();
  return model;
}

/// SLaK-T's stage 1 (C = 124, 56x56 at 224x224, 51x5 + 5x51 + 5x5) with
/// `blocks` blocks and no later blocks (the downsampling layers and head stay).
inline std::shared_ptr<models::Classifier> slakTinyStage1(uint64_t seed, int64_t blocks) {
  torch::manual_seed(seed);
  models::ModelConfig config = models::modelConfig("slak_tiny");
  config.depths = {blocks, 0, 0, 0};
  config.numClasses = 10;
  auto model = models::createModel(config);
  drawMasks(*model, seed);
  randomizeNorms(*model);
  model->eval();
  return model;
}

/// Removes a folder tree. (Not std::filesystem::remove_all: the torch
/// wheel's libtorch.so exports a copy of it that crashes when called here.)
inline void removeTree(const std::string &dir) { std::system(("rm -rf '" + dir + "'").c_str()); }

/// A fresh folder under the test temp dir.
inline std::string scratchDir(const std::string &name) {
  auto dir = std::filesystem::temp_directory_path() /
             ("slak_deploy_test_" + name + "_" + std::to_string(::getpid()));
  removeTree(dir.string());
  std::filesystem::create_directories(dir);
  return dir.string();
}

/// Runs a shell command; on failure the test fails with its output.
inline void runTool(const std::string &command, const std::string &log) {
  const int rc = std::system((command + " > " + log + " 2>&1").c_str());
  std::ifstream in(log);
  std::stringstream text;
  text << in.rdbuf();
  ASSERT_EQ(rc, 0) << command << "\n" << text.str();
}

/// Largest |a - b| over the largest |b|.
inline double relativeError(const torch::Tensor &a, const torch::Tensor &b) {
  return (a.to(torch::kDouble) - b.to(torch::kDouble)).abs().max().item<double>() /
         b.to(torch::kDouble).abs().max().item<double>();
}

} // namespace slak::testing

// slak-export: writes every large-kernel layer of a model (a slak-train
// checkpoint, or random weights from --seed) as slak ops in one MLIR module,
// the input of `slak-opt --slak-pipeline=mode=infer` and
// `slak-translate --emit-kernel-package` (DESIGN.md section 2).
//
//   slak-export --model slak_nano --checkpoint runs/nano/checkpoint.pt -o model.mlir
#include "models/deploy/Checkpoint.h"
#include "models/deploy/LayerExport.h"
#include "tools/common/ErrorMessage.h"
#include "tools/common/ModelFlags.h"
#include "tools/common/ThreadsFlag.h"
#include "tools/slak-export/ExportModule.h"

#include <torch/torch.h>

#include <CLI/CLI.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>

namespace {

using namespace slak;

double density(const models::ExportedLayer &layer) {
  double live = 0, total = 0;
  for (const auto &b : layer.branches) {
    total += static_cast<double>(b.weight.size());
    live += b.mask.empty() ? static_cast<double>(b.weight.size())
                           : static_cast<double>(std::count(b.mask.begin(), b.mask.end(), 1));
  }
  return total > 0 ? live / total : 1.0;
}

/// Runs every exported layer of `path` through the oracle on a random input
/// and compares it with the model's layer in eval mode. Returns the largest
/// error relative to the largest output magnitude.
double checkAgainstOracle(models::Classifier &model, const std::string &path,
                          const std::vector<models::ExportedLayer> &layers) {
  model.eval();
  torch::NoGradGuard noGrad;
  double worst = 0;
  auto modules = models::largeKernelLayers(model);
  for (const auto &layer : layers) {
    auto it = std::find_if(modules.begin(), modules.end(),
                           [&](const auto &m) { return m.first == layer.path; });
    torch::Tensor x = torch::randn({1, layer.channels, layer.height, layer.width});
    torch::Tensor expected = it->second->forward(x).to(torch::kDouble).contiguous();
    std::vector<double> got;
    const std::string error = exporter::runExportedLayer(
        path, layer.path, x.sizes().vec(),
        std::vector<float>(x.data_ptr<float>(), x.data_ptr<float>() + x.numel()), got);
    if (!error.empty())
      throw std::runtime_error(error);
    torch::Tensor oracle = torch::tensor(got, torch::kDouble).view(expected.sizes());
    const double scale = std::max(expected.abs().max().item<double>(), 1e-30);
    const double err = (oracle - expected).abs().max().item<double>() / scale;
    std::printf("  check %s: oracle vs model max error %.3g (relative)\n", layer.path.c_str(), err);
    worst = std::max(worst, err);
  }
  return worst;
}

} // namespace

int main(int argc, char **argv) {
  CLI::App app{"slak-export: write a model's large-kernel layers as slak ops (one func per "
               "layer, named after its module path; weights and masks as dense_resource blobs)"};
  tools::ModelFlags flags;
  flags.add(app);
  std::string checkpoint, output;
  bool ema = false, bytecode = false, check = false;
  uint64_t seed = 0;
  int64_t imageSize = 0;
  tools::ThreadsFlag threads;
  app.add_option("--checkpoint", checkpoint,
                 "slak-train checkpoint (model/, ema/, masks/); without it the model has "
                 "random weights from --seed and, when sparse, uniform random masks");
  app.add_flag("--ema", ema, "Export the checkpoint's EMA weights");
  app.add_option("-o,--output", output, "Output .mlir file (written atomically)")->required();
  app.add_flag("--bytecode", bytecode, "Write MLIR bytecode instead of text");
  app.add_option("--seed", seed, "Seed of the random weights and masks (no --checkpoint)")
      ->capture_default_str();
  app.add_option("--image-size", imageSize,
                 "Input image side the layer sizes are taken at (default: the model's nominal "
                 "size, 28 for slak_nano, 224 otherwise)")
      ->check(tools::positive("leave the flag out for the model's nominal size"));
  app.add_flag("--check", check,
               "Run each exported layer through the reference oracle and compare it with the "
               "model's layer (eval mode); fail above 1e-4 relative");
  threads.add(app);
  CLI11_PARSE(app, argc, argv);

  try {
    threads.apply();
    models::ModelConfig config = models::modelConfig(flags.model, flags.overrides());
    models::SourcedModel sourced = models::loadModel(config, checkpoint, ema, seed);
    auto &model = sourced.model;
    const std::string &source = sourced.source;
    model->eval();
    std::vector<models::ExportedLayer> layers = models::exportLargeKernelLayers(*model, imageSize);
    if (layers.empty())
      throw std::runtime_error("model " + config.name + " has no large-kernel layers to export");
    const std::string error = exporter::writeExportModule(layers, output, bytecode);
    if (!error.empty())
      throw std::runtime_error(error);
    std::printf("slak-export: %s from %s: %zu large-kernel layer(s) -> %s (%s)\n",
                config.name.c_str(), source.c_str(), layers.size(), output.c_str(),
                bytecode ? "bytecode" : "text");
    for (const auto &l : layers) {
      std::string branches;
      for (const auto &b : l.branches)
        branches += (branches.empty() ? "" : "+") + std::to_string(b.kernelH) + "x" +
                    std::to_string(b.kernelW);
      std::printf("  %s: C=%lld %lldx%lld %s%s, density %.3f\n", l.path.c_str(),
                  (long long)l.channels, (long long)l.height, (long long)l.width, branches.c_str(),
                  l.branches.front().batchNorm ? " (BN per branch)" : "", density(l));
    }
    if (check) {
      const double worst = checkAgainstOracle(*model, output, layers);
      if (!(worst <= 1e-4)) {
        std::fprintf(stderr,
                     "slak-export: error: the exported module differs from the model by %.3g "
                     "(relative), more than 1e-4\n",
                     worst);
        return 1;
      }
    }
    return 0;
  } catch (const std::exception &e) {
    std::fprintf(stderr, "slak-export: error: %s\n", tools::errorMessage(e).c_str());
    return 1;
  }
}

// Deployment: a model served by a kernel package built through the whole AOT
// path (export -> slak-opt --slak-pipeline=mode=infer -> slak-translate)
// gives the eager eval model's logits; packages for other masks, shapes or
// weights are refused with a clear error and never run.
#include "DeployTestSupport.h"

#include "models/deploy/Deploy.h"
#include "models/deploy/LayerExport.h"
#include "tools/slak-export/ExportModule.h"

namespace slak {
namespace {

using testing::relativeError;

/// Builds the kernel package of `model`'s current state in `dir`/pkg.
std::string buildPackage(models::Classifier &model, const std::string &dir) {
  const std::string mlir = dir + "/model.mlir", opt = dir + "/model.opt.mlir", pkg = dir + "/pkg";
  EXPECT_EQ(exporter::writeExportModule(models::exportLargeKernelLayers(model), mlir, false), "");
  testing::runTool(std::string(SLAK_OPT_PATH) + " " + mlir +
                       " --slak-pipeline=mode=infer --mlir-print-debuginfo -o " + opt,
                   dir + "/slak-opt.log");
  testing::runTool(std::string(SLAK_TRANSLATE_PATH) + " --emit-kernel-package -o " + pkg + " " +
                       opt,
                   dir + "/slak-translate.log");
  return pkg;
}

bool anyServed(models::Classifier &model) {
  for (auto &[path, layer] : models::largeKernelLayers(model))
    if (layer->servedFromPackage())
      return true;
  return false;
}

/// Logits of the eager eval model, then of the deployed one.
void expectDeployedLogitsMatch(models::Classifier &model, const std::string &pkg,
                               const torch::Tensor &images) {
  torch::NoGradGuard noGrad;
  model.eval();
  torch::Tensor eager = model.forward(images);
  models::DeployReport report = models::attachKernelPackage(model, pkg);
  EXPECT_EQ(report.layers.size(), models::largeKernelLayers(model).size());
  torch::Tensor deployed = model.forward(images);
  EXPECT_LT(relativeError(deployed, eager), 1e-4);

  // The large-kernel layers do move the logits (the comparison can fail):
  // zero outputs instead change them by far more than the tolerance.
  for (auto &[path, layer] : models::largeKernelLayers(model))
    layer->setEvalForward([](const torch::Tensor &x) { return torch::zeros_like(x); });
  EXPECT_GT(relativeError(model.forward(images), eager), 1e-2);
  models::detachKernelPackage(model);
  EXPECT_FALSE(anyServed(model));
  EXPECT_LT(relativeError(model.forward(images), eager), 1e-6);
}

TEST(Deploy, SlakNanoLogitsMatchEagerEval) {
  auto model = testing::nanoModel(11);
  const std::string dir = testing::scratchDir("nano");
  const std::string pkg = buildPackage(*model, dir);
  expectDeployedLogitsMatch(*model, pkg, torch::randn({4, 1, 28, 28}));
  testing::removeTree(dir);
}

TEST(Deploy, SlakTinyStage1LogitsMatchEagerEval) {
  auto model = testing::slakTinyStage1(12, 3);
  const std::string dir = testing::scratchDir("tiny");
  const std::string pkg = buildPackage(*model, dir);
  expectDeployedLogitsMatch(*model, pkg, torch::randn({2, 3, 224, 224}));
  testing::removeTree(dir);
}

/// attachKernelPackage must throw with every piece of `expected` in the
/// message and leave every layer on its own kernels.
void expectRefused(models::Classifier &model, const std::string &pkg,
                   const std::vector<std::string> &expected, models::DeployOptions o = {}) {
  try {
    models::attachKernelPackage(model, pkg, o);
    ADD_FAILURE() << "the package was accepted";
  } catch (const std::runtime_error &e) {
    const std::string message = e.what();
    for (const std::string &piece : expected)
      EXPECT_NE(message.find(piece), std::string::npos) << "missing '" << piece << "' in\n"
                                                        << message;
    EXPECT_NE(message.find("re-export the model (slak-export) and rebuild the package"),
              std::string::npos)
        << message;
  }
  EXPECT_FALSE(anyServed(model));
}

TEST(Deploy, TableFormPackageMatchesAndRefusesOtherMasks) {
  // At 20% density specialize-sparsity picks the tap-table form: the package's
  // masks are then its tables, not zeroed weights.
  models::ModelOverrides o;
  o.sparsity = 0.8;
  auto model = testing::nanoModel(31, o);
  const std::string dir = testing::scratchDir("table");
  const std::string pkg = buildPackage(*model, dir);
  std::ifstream manifest(pkg + "/manifest.json");
  std::stringstream text;
  text << manifest.rdbuf();
  EXPECT_NE(text.str().find("\"form\": \"table\""), std::string::npos);
  expectDeployedLogitsMatch(*model, pkg, torch::randn({4, 1, 28, 28}));
  auto moved = testing::nanoModel(31, o);
  testing::drawMasks(*moved, 32);
  // (Its newly live taps hold 0, as regrown weights do: not reported.)
  expectRefused(*moved, pkg,
                {"built for other masks", "of its taps are dead in the layer's masks"});
  testing::removeTree(dir);
}

TEST(Deploy, RefusesPackagesForOtherMasksShapesAndWeights) {
  auto model = testing::nanoModel(21);
  const std::string dir = testing::scratchDir("refuse");
  const std::string pkg = buildPackage(*model, dir);

  // Other masks: the checkpoint's masks moved on after the package was built.
  auto moved = testing::nanoModel(21);
  testing::drawMasks(*moved, 22);
  expectRefused(
      *moved, pkg,
      {"refusing kernel package", "stages.0.0.large_kernel", "built for other masks", "taps"});
  // Other weights: one BatchNorm statistic changed.
  auto retuned = testing::nanoModel(21);
  {
    torch::NoGradGuard noGrad;
    models::largeKernelLayers(*retuned)[2].second->branchNorm(1)->running_mean.add_(0.5);
  }
  expectRefused(*retuned, pkg, {"stages.1.0.large_kernel", "other BatchNorm statistics or bias"});
  // Other shapes: the same layers at another image size ...
  models::DeployOptions big;
  big.imageSize = 56;
  expectRefused(*model, pkg, {"compiled for 14x14 inputs, the layer sees 28x28"}, big);
  // ... and a model of other widths and kernels.
  models::ModelOverrides o;
  o.widthFactor = 1.0;
  auto narrow = testing::nanoModel(21, o);
  expectRefused(*narrow, pkg, {"has 41 channels, the layer 32"});
  o.widthFactor.reset();
  o.kernelSizes = std::vector<int>{11, 13, 7};
  auto smaller = testing::nanoModel(21, o);
  expectRefused(*smaller, pkg, {"stages.0.0.large_kernel", "lies in no branch of the layer"});

  // The package still fits the model it was built for.
  models::attachKernelPackage(*model, pkg);
  EXPECT_TRUE(anyServed(*model));
  testing::removeTree(dir);
}

} // namespace
} // namespace slak

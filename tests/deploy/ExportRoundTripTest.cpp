// slak-export's two halves: the exported module, run through the reference
// oracle, reproduces every large-kernel layer of the model (eval mode).
#include "DeployTestSupport.h"

#include "models/deploy/LayerExport.h"
#include "tools/slak-export/ExportModule.h"

#include <algorithm>

namespace slak {
namespace {

using testing::relativeError;

/// Exports `model`, runs each layer's function through the oracle on a random
/// batch of 2 and compares it with the layer's eval forward.
void expectRoundTrip(models::Classifier &model, const std::string &file, bool bytecode,
                     size_t expectedLayers) {
  auto layers = models::exportLargeKernelLayers(model);
  ASSERT_EQ(layers.size(), expectedLayers);
  ASSERT_EQ(exporter::writeExportModule(layers, file, bytecode), "");
  auto modules = models::largeKernelLayers(model);
  torch::NoGradGuard noGrad;
  for (const auto &layer : layers) {
    auto it = std::find_if(modules.begin(), modules.end(),
                           [&](const auto &m) { return m.first == layer.path; });
    ASSERT_NE(it, modules.end()) << layer.path;
    torch::Tensor x = torch::randn({2, layer.channels, layer.height, layer.width});
    torch::Tensor expected = it->second->forward(x);
    std::vector<double> got;
    ASSERT_EQ(exporter::runExportedLayer(
                  file, layer.path, x.sizes().vec(),
                  std::vector<float>(x.data_ptr<float>(), x.data_ptr<float>() + x.numel()), got),
              "");
    torch::Tensor oracle = torch::tensor(got, torch::kDouble).view(expected.sizes());
    EXPECT_LT(relativeError(oracle, expected), 1e-4) << layer.path;
    // The layers are not trivial: BN shifts and masks matter.
    EXPECT_GT(expected.abs().max().item<double>(), 1e-2) << layer.path;
  }
}

TEST(ExportRoundTrip, SlakNanoThroughTheOracle) {
  auto model = testing::nanoModel(3);
  auto layers = models::exportLargeKernelLayers(*model);
  ASSERT_EQ(layers.size(), 6u);
  // Input sizes from the forward pass: 14x14, 7x7, 3x3 (two blocks each).
  EXPECT_EQ(layers[0].path, "stages.0.0.large_kernel");
  EXPECT_EQ(layers[0].height, 14);
  EXPECT_EQ(layers[2].width, 7);
  EXPECT_EQ(layers[5].height, 3);
  EXPECT_EQ(layers[0].branches.size(), 3u);
  EXPECT_EQ(layers[0].branches[0].kernelH, 13);
  EXPECT_EQ(layers[0].branches[0].padW, 2);
  EXPECT_FALSE(layers[0].branches[0].mask.empty());
  EXPECT_TRUE(layers[0].branches[0].batchNorm);
  const std::string dir = testing::scratchDir("nano_round_trip");
  expectRoundTrip(*model, dir + "/nano.mlir", false, 6);
  expectRoundTrip(*model, dir + "/nano.mlirbc", true, 6);
  testing::removeTree(dir);
}

TEST(ExportRoundTrip, SlakTinyStage1LayerThroughTheOracle) {
  auto model = testing::slakTinyStage1(5, 1);
  auto layers = models::exportLargeKernelLayers(*model);
  ASSERT_EQ(layers.size(), 1u);
  EXPECT_EQ(layers[0].channels, 124);
  EXPECT_EQ(layers[0].height, 56);
  EXPECT_EQ(layers[0].branches[0].kernelH, 51);
  EXPECT_EQ(layers[0].branches[1].kernelW, 51);
  const std::string dir = testing::scratchDir("tiny_round_trip");
  expectRoundTrip(*model, dir + "/tiny.mlir", false, 1);
  testing::removeTree(dir);
}

TEST(ExportRoundTrip, ModuleTextNamesLayersAndKeepsEpsilon) {
  auto model = testing::nanoModel(4);
  auto layers = models::exportLargeKernelLayers(*model);
  layers[0].branches[1].epsilon = 1e-3; // not the default: printed
  std::string text;
  ASSERT_EQ(exporter::exportModuleText(layers, text, 16), "");
  EXPECT_NE(text.find("func.func @stages.0.0.large_kernel(%arg0: tensor<?x41x14x14xf32>"),
            std::string::npos)
      << text.substr(0, 3000);
  EXPECT_NE(text.find("func.func @stages.2.1.large_kernel(%arg0: tensor<?x166x3x3xf32>"),
            std::string::npos);
  EXPECT_NE(text.find("loc(\"stages.1.0.large_kernel\")"), std::string::npos);
  EXPECT_NE(text.find("dense_resource<stages_0_0_large_kernel_w0> : tensor<41x1x13x5xf32>"),
            std::string::npos);
  EXPECT_NE(text.find("mask(%"), std::string::npos);
  EXPECT_NE(text.find("{epsilon = 1.000000e-03 : f32}"), std::string::npos);
}

TEST(ExportRoundTrip, RefusesMalformedLayers) {
  models::ExportedLayer layer;
  layer.path = "stages.0.0.large_kernel";
  layer.channels = 2;
  layer.height = layer.width = 8;
  models::ExportedBranch b;
  b.kernelH = 4; // even
  b.kernelW = 3;
  b.padH = b.padW = 1;
  b.weight.assign(2 * 4 * 3, 0.5f);
  layer.branches.push_back(b);
  std::string text;
  EXPECT_NE(
      exporter::exportModuleText({layer}, text)
          .find("layer stages.0.0.large_kernel: branch 0 has kernel 4x3; slak.dwconv2d needs odd "
                "kernels"),
      std::string::npos);
  layer.branches[0].kernelH = 3;
  layer.branches[0].weight.resize(5);
  EXPECT_NE(exporter::exportModuleText({layer}, text).find("has 5 weights, expected 18"),
            std::string::npos);
  layer.branches[0].weight.resize(18);
  layer.branches[0].padW = 0;
  EXPECT_NE(exporter::exportModuleText({layer}, text)
                .find("has padding [1, 0]; large-kernel layers use \"same\" padding [1, 1]"),
            std::string::npos);
  layer.branches[0].padW = 1;
  EXPECT_EQ(exporter::exportModuleText({layer}, text), "");
}

} // namespace
} // namespace slak

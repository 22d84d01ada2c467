// Models: registry, architecture facts (ANCHORS.md), parameter counts against
// closed forms, per-axis "same" padding of the large-kernel branches, init,
// and the data sets.
#include "models/Models.h"
#include "models/data/Datasets.h"
#include "tests/models/TestSupport.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>

using namespace slak;
using models::ModelConfig;
using models::ModelOverrides;

namespace {

/// Parameter count of a SLaK / ConvNeXt net from its config, written out
/// from the architecture rather than from the modules.
int64_t closedFormSlakParams(const ModelConfig &c) {
  auto d = c.dims();
  int64_t k = c.stemKernel;
  int64_t n = c.inChannels * d[0] * k * k + d[0] + 2 * d[0];
  for (size_t i = 1; i < d.size(); ++i)
    n += 2 * d[i - 1] + d[i - 1] * d[i] * 4 + d[i];
  for (size_t s = 0; s < d.size(); ++s) {
    int64_t C = d[s], M = c.kernelSizes[s], N = c.smallKernel;
    int64_t lk;
    if (c.family == models::Family::ConvNeXt)
      lk = C * M * M + C;
    else
      lk = C * (2 * M * N + N * N) + (c.branchBatchNorm ? 3 * 2 * C : 0);
    int64_t block = lk + 2 * C + (C * 4 * C + 4 * C) + (4 * C * C + C) + C;
    n += c.depths[s] * block;
  }
  n += 2 * d.back() + d.back() * c.numClasses + c.numClasses;
  return n;
}

int64_t closedFormRepLkParams(const ModelConfig &c) {
  auto d = c.dims();
  auto convBn = [](int64_t in, int64_t out, int64_t k, int64_t groups) {
    return in / groups * out * k * k + 2 * out;
  };
  int64_t b = d[0];
  int64_t n =
      convBn(c.inChannels, b, 3, 1) + convBn(b, b, 3, b) + convBn(b, b, 1, 1) + convBn(b, b, 3, b);
  for (size_t s = 0; s < d.size(); ++s) {
    int64_t C = d[s], K = c.kernelSizes[s], S = c.smallKernel;
    int64_t lk = C * K * K + 2 * C + C * S * S + 2 * C;
    int64_t repLk = 2 * C + convBn(C, C, 1, 1) + lk + convBn(C, C, 1, 1);
    int64_t ffn = 2 * C + convBn(C, 4 * C, 1, 1) + convBn(4 * C, C, 1, 1);
    n += c.depths[s] * (repLk + ffn);
    if (s + 1 < d.size())
      n += convBn(C, d[s + 1], 1, 1) + convBn(d[s + 1], d[s + 1], 3, d[s + 1]);
  }
  n += 2 * d.back() + d.back() * c.numClasses + c.numClasses;
  return n;
}

int64_t countParams(torch::nn::Module &m) {
  int64_t n = 0;
  for (const auto &p : m.parameters())
    n += p.numel();
  return n;
}

} // namespace

/// A registry model's config with LibTorch large-kernel layers (parameter
/// counts do not depend on the backend; LibTorch builds everywhere).
static ModelConfig torchConfig(const std::string &name) {
  ModelConfig c = models::modelConfig(name);
  c.backend = models::LkBackend::Torch;
  return c;
}

TEST(ModelRegistry, NamesAndUnknownName) {
  auto names = models::modelNames();
  for (const char *n :
       {"slak_tiny", "slak_small", "slak_base", "slak_nano", "convnext_tiny", "replknet_31b"})
    EXPECT_NE(std::find(names.begin(), names.end(), n), names.end()) << n;
  try {
    models::modelConfig("slak_huge");
    FAIL() << "expected an error";
  } catch (const std::invalid_argument &e) {
    EXPECT_NE(std::string(e.what()).find("slak_huge"), std::string::npos);
    EXPECT_NE(std::string(e.what()).find("slak_tiny"), std::string::npos);
  }
}

TEST(ModelRegistry, SlakDimsUseIntOfWidthFactor) {
  EXPECT_EQ(models::modelConfig("slak_tiny").dims(), (std::vector<int64_t>{124, 249, 499, 998}));
  EXPECT_EQ(models::modelConfig("slak_small").dims(), (std::vector<int64_t>{124, 249, 499, 998}));
  EXPECT_EQ(models::modelConfig("slak_base").dims(), (std::vector<int64_t>{166, 332, 665, 1331}));
  auto t = models::modelConfig("slak_tiny");
  EXPECT_EQ(t.depths, (std::vector<int64_t>{3, 3, 9, 3}));
  EXPECT_EQ(t.kernelSizes, (std::vector<int>{51, 49, 47, 13}));
  EXPECT_EQ(t.smallKernel, 5);
  EXPECT_DOUBLE_EQ(t.sparsity, 0.4);
  EXPECT_EQ(models::modelConfig("slak_small").depths, (std::vector<int64_t>{3, 3, 27, 3}));
  EXPECT_EQ(models::modelConfig("convnext_tiny").dims(), (std::vector<int64_t>{96, 192, 384, 768}));
  auto r = models::modelConfig("replknet_31b");
  EXPECT_EQ(r.depths, (std::vector<int64_t>{2, 2, 18, 2}));
  EXPECT_EQ(r.kernelSizes, (std::vector<int>{31, 29, 27, 13}));
}

TEST(ModelRegistry, OverridesApplyAndAreChecked) {
  ModelOverrides o;
  o.widthFactor = 1.0;
  o.kernelSizes = std::vector<int>{31, 29, 27, 13};
  o.smallKernel = 3;
  o.numClasses = 10;
  o.inChannels = 1;
  o.sparsity = 0.5;
  auto c = models::modelConfig("slak_tiny", o);
  EXPECT_EQ(c.dims(), (std::vector<int64_t>{96, 192, 384, 768}));
  EXPECT_EQ(c.kernelSizes[0], 31);
  EXPECT_EQ(c.smallKernel, 3);
  EXPECT_EQ(c.numClasses, 10);
  EXPECT_EQ(c.inChannels, 1);
  EXPECT_DOUBLE_EQ(c.sparsity, 0.5);

  ModelOverrides bad;
  bad.kernelSizes = std::vector<int>{51, 49, 47};
  EXPECT_THROW(models::modelConfig("slak_tiny", bad), std::invalid_argument);
  bad.kernelSizes = std::vector<int>{51, 48, 47, 13};
  EXPECT_THROW(models::modelConfig("slak_tiny", bad), std::invalid_argument);
}

TEST(ModelRegistry, StemAndLayerScaleOverrides) {
  ModelOverrides o;
  o.stemKernel = 4;
  o.stemStride = 2;
  o.layerScale = 0.25;
  o.backend = models::LkBackend::Torch;
  auto c = models::modelConfig("slak_nano", o);
  EXPECT_EQ(c.stemKernel, 4);
  EXPECT_EQ(c.stemStride, 2);
  auto net = models::createModel(c);
  auto params = net->named_parameters();
  EXPECT_EQ(params["downsample_layers.0.0.weight"].sizes(), (std::vector<int64_t>{41, 1, 4, 4}));
  EXPECT_EQ(countParams(*net), closedFormSlakParams(c));
  EXPECT_FLOAT_EQ(params["stages.0.1.gamma"][3].item<float>(), 0.25f);
  // Overlapping stem 4/2 with padding 1 keeps 28 -> 14, as the 2x2 patchify does.
  auto features = net->forwardFeatures(torch::randn({1, 1, 28, 28}));
  EXPECT_EQ(features.sizes(), (std::vector<int64_t>{1, 166, 3, 3}));

  o.stemKernel = 3; // padding 1 again
  EXPECT_EQ(models::createModel(models::modelConfig("slak_nano", o))
                ->forwardFeatures(torch::randn({1, 1, 28, 28}))
                .sizes(),
            (std::vector<int64_t>{1, 166, 3, 3}));

  for (auto [k, s] : {std::pair{2, 0}, std::pair{1, 2}}) {
    ModelOverrides bad;
    bad.stemKernel = k;
    bad.stemStride = s;
    EXPECT_THROW(models::modelConfig("slak_nano", bad), std::invalid_argument) << k << "/" << s;
  }
  ModelOverrides badScale;
  badScale.layerScale = -1.0;
  EXPECT_THROW(models::modelConfig("slak_nano", badScale), std::invalid_argument);
}

TEST(ModelParams, SlakTinyMatchesClosedForm) {
  const ModelConfig c = torchConfig("slak_tiny");
  auto net = models::createModel(c);
  EXPECT_EQ(countParams(*net), closedFormSlakParams(c));
  // 18 large-kernel layers; stage 1 has 51x5, 5x51, 5x5 over 124 channels.
  auto lks = models::largeKernelLayers(*net);
  ASSERT_EQ(lks.size(), 18u);
  EXPECT_EQ(lks[0].first, "stages.0.0.large_kernel");
  auto params = net->named_parameters();
  EXPECT_EQ(params["stages.0.0.large_kernel.branch0.weight"].sizes(),
            (std::vector<int64_t>{124, 1, 51, 5}));
  EXPECT_EQ(params["stages.0.0.large_kernel.branch1.weight"].sizes(),
            (std::vector<int64_t>{124, 1, 5, 51}));
  EXPECT_EQ(params["stages.0.0.large_kernel.branch2.weight"].sizes(),
            (std::vector<int64_t>{124, 1, 5, 5}));
  EXPECT_TRUE(params.contains("stages.0.0.large_kernel.branch0.bn.weight"));
  EXPECT_EQ(params["stages.3.2.large_kernel.branch1.weight"].sizes(),
            (std::vector<int64_t>{998, 1, 5, 13}));
  EXPECT_EQ(params["downsample_layers.0.0.weight"].sizes(), (std::vector<int64_t>{124, 3, 4, 4}));
  EXPECT_EQ(params["head.weight"].sizes(), (std::vector<int64_t>{1000, 998}));
}

TEST(ModelParams, ConvNeXtTinyIs28Point6M) {
  auto c = models::modelConfig("convnext_tiny");
  auto net = models::createModel(c);
  EXPECT_EQ(countParams(*net), closedFormSlakParams(c));
  EXPECT_EQ(countParams(*net), 28589128); // ConvNeXt-T's published count
}

TEST(ModelParams, RepLkNet31BMatchesClosedForm) {
  const ModelConfig c = torchConfig("replknet_31b");
  const int64_t n = countParams(*models::createModel(c));
  EXPECT_EQ(n, closedFormRepLkParams(c));
  EXPECT_NEAR(static_cast<double>(n) / 1e6, 79.0, 1.0); // headline 79M
}

TEST(ModelParams, BranchBatchNormOff) {
  ModelOverrides o;
  o.branchBatchNorm = false;
  o.widthFactor = 0.25;
  auto c = models::modelConfig("slak_tiny", o);
  auto net = models::createModel(c);
  for (const auto &p : net->named_parameters())
    EXPECT_EQ(p.key().find("large_kernel.branch0.bn"), std::string::npos) << p.key();
  EXPECT_EQ(countParams(*net), closedFormSlakParams(c));
}

TEST(ModelInit, TruncNormalWeightsZeroBiasesLayerScale) {
  torch::manual_seed(1);
  auto net = models::createModel("slak_tiny");
  auto params = net->named_parameters();
  auto w = params["stages.2.0.pwconv1.weight"];
  EXPECT_NEAR(w.std().item<double>(), 0.02, 0.001);
  EXPECT_LE(w.abs().max().item<double>(), 2.0);
  auto lk = models::largeKernelLayers(*net)[0].second->branchWeight(0);
  EXPECT_NEAR(lk.std().item<double>(), 0.02, 0.002);
  EXPECT_EQ(params["stages.2.0.pwconv1.bias"].abs().max().item<double>(), 0.0);
  EXPECT_EQ(params["downsample_layers.1.1.bias"].abs().max().item<double>(), 0.0);
  EXPECT_FLOAT_EQ(params["stages.1.1.gamma"][5].item<float>(), 1e-6f);
}

TEST(ModelInit, TruncNormalRespectsBounds) {
  auto t = torch::empty({100000});
  models::truncNormal_(t, 1.0, -0.5, 0.5);
  EXPECT_GE(t.min().item<double>(), -0.5);
  EXPECT_LE(t.max().item<double>(), 0.5);
  EXPECT_LT(t.std().item<double>(), 0.3); // uniform-like on [-0.5, 0.5]: ~0.28
}

TEST(ModelForward, ShapesOfEveryFamily) {
  torch::manual_seed(0);
  auto nano = models::createModel("slak_nano");
  nano->eval();
  EXPECT_EQ(nano->forward(torch::randn({2, 1, 28, 28})).sizes(), (std::vector<int64_t>{2, 10}));

  ModelOverrides small;
  small.widthFactor = 0.1;
  small.numClasses = 7;
  small.backend = models::LkBackend::Torch; // the runtime has its own tests below
  for (const char *name : {"slak_tiny", "convnext_tiny", "replknet_31b"}) {
    auto net = models::createModel(name, small);
    net->eval();
    auto y = net->forward(torch::randn({1, 3, 64, 64}));
    EXPECT_EQ(y.sizes(), (std::vector<int64_t>{1, 7})) << name;
    EXPECT_TRUE(torch::isfinite(y).all().item<bool>()) << name;
  }
}

TEST(LargeKernel, PerAxisSamePadding) {
  // One 5x3 branch, no BN: an impulse at (r, c) lands at y[r - u + 2, c - v + 1] = w[u, v].
  models::LargeKernelOptions o;
  o.channels = 2;
  o.branches = {{5, 3}};
  o.batchNorm = false;
  o.backend = models::LkBackend::Torch;
  auto layer = models::makeLargeKernel(o);
  auto w = layer->branchWeight(0);
  {
    torch::NoGradGuard g;
    w.copy_(torch::arange(30, torch::kFloat32).view({2, 1, 5, 3}));
  }
  auto x = torch::zeros({1, 2, 9, 7});
  x[0][1][4][3] = 1.0;
  auto y = layer->forward(x);
  EXPECT_EQ(y.sizes(), x.sizes());
  for (int u = 0; u < 5; ++u)
    for (int v = 0; v < 3; ++v)
      EXPECT_FLOAT_EQ(y[0][1][4 - u + 2][3 - v + 1].item<float>(), w[1][0][u][v].item<float>());
  EXPECT_FLOAT_EQ(y[0][0].abs().sum().item<float>(), 0.0f);
  EXPECT_FLOAT_EQ(y.abs().sum().item<float>(), w[1].abs().sum().item<float>());
}

TEST(LargeKernel, SlakBranchesAndOddKernelCheck) {
  auto o = models::slakKernel(8, 13, 5, true, true);
  ASSERT_EQ(o.branches.size(), 3u);
  EXPECT_EQ(o.branches[0].kernelH, 13);
  EXPECT_EQ(o.branches[0].kernelW, 5);
  EXPECT_EQ(o.branches[1].kernelH, 5);
  EXPECT_EQ(o.branches[1].kernelW, 13);
  EXPECT_EQ(o.branches[2].kernelH, 5);
  auto square = models::slakKernel(8, 13, 5, true, false);
  ASSERT_EQ(square.branches.size(), 2u);
  EXPECT_EQ(square.branches[0].kernelW, 13);
  o.branches[0].kernelH = 12;
  EXPECT_THROW(models::makeLargeKernel(o), std::invalid_argument);
  EXPECT_THROW(models::parseLkBackend("cudnn"), std::invalid_argument);
}

TEST(Data, MissingFashionMnistNamesDebianPackage) {
  try {
    data::loadFashionMnist("/nonexistent/fashion", true);
    FAIL() << "expected an error";
  } catch (const std::runtime_error &e) {
    EXPECT_NE(std::string(e.what()).find("dataset-fashion-mnist"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("/nonexistent/fashion"), std::string::npos) << e.what();
  }
}

TEST(Data, FashionMnistTestSplit) {
  if (!std::filesystem::exists(std::string(data::kFashionMnistDir) + "/t10k-images-idx3-ubyte.gz"))
    GTEST_SKIP() << "[SKIP] dataset-fashion-mnist is not installed";
  auto d = data::loadFashionMnist(data::kFashionMnistDir, false);
  EXPECT_EQ(d.images.sizes(), (std::vector<int64_t>{10000, 1, 28, 28}));
  EXPECT_EQ(d.labels.sizes(), (std::vector<int64_t>{10000}));
  EXPECT_EQ(d.numClasses, 10);
  // Normalised with the training set's statistics: close to mean 0, std 1.
  EXPECT_NEAR(d.images.mean().item<double>(), 0.0, 0.05);
  EXPECT_NEAR(d.images.std().item<double>(), 1.0, 0.05);
  // The test split is balanced: 1000 images per class.
  auto counts = torch::bincount(d.labels);
  EXPECT_EQ(counts.min().item<int64_t>(), 1000);
  EXPECT_EQ(counts.max().item<int64_t>(), 1000);
}

TEST(Data, SyntheticIsDeterministicAndSplitsDiffer) {
  data::SyntheticOptions o;
  o.size = 64;
  o.seed = 3;
  auto a = data::makeSynthetic(o, 0), b = data::makeSynthetic(o, 0), t = data::makeSynthetic(o, 1);
  EXPECT_TRUE(torch::equal(a.images, b.images));
  EXPECT_TRUE(torch::equal(a.labels, b.labels));
  EXPECT_FALSE(torch::equal(a.images, t.images));
  EXPECT_EQ(a.images.sizes(), (std::vector<int64_t>{64, 1, 28, 28}));
  EXPECT_LT(a.labels.max().item<int64_t>(), 10);
}

namespace {

/// A BatchNorm parameter of branch b, whichever backend made the layer.
torch::Tensor branchNormParam(models::LargeKernelConv &layer, size_t b, const std::string &field) {
  std::string w = layer.branchWeightName(b); // "branch0.weight" or "lk.lora1_weight"
  std::string stem = w.substr(0, w.size() - 7);
  std::string name = stem + (w[w.size() - 7] == '.' ? ".bn." : "_bn.") + field;
  auto params = layer.named_parameters();
  auto *p = params.find(name);
  EXPECT_NE(p, nullptr) << name;
  return p ? *p : torch::Tensor();
}

/// Builds the same layer on both backends with the same weights, BN affine
/// parameters and masks; the runtime layer keeps non-zero weights at dead
/// taps, so only its tap tables can make it agree with LibTorch.
void compareBackends(const models::LargeKernelOptions &base) {
  if (models::resolveLkBackend(models::LkBackend::Auto) != models::LkBackend::Runtime)
    GTEST_SKIP() << "[SKIP] no fast runtime backend in this build ("
                 << "torch used instead)";
  torch::manual_seed(3);
  auto torchOpts = base, runtimeOpts = base;
  torchOpts.backend = models::LkBackend::Torch;
  runtimeOpts.backend = models::LkBackend::Runtime;
  auto ref = models::makeLargeKernel(torchOpts);
  auto rt = models::makeLargeKernel(runtimeOpts);
  EXPECT_STREQ(rt->backendName(), "runtime");
  std::vector<torch::Tensor> masks;
  {
    torch::NoGradGuard g;
    for (size_t b = 0; b < base.branches.size(); ++b) {
      auto w = torch::randn(ref->branchWeight(b).sizes());
      auto mask = torch::rand(w.sizes()).lt(0.6).to(torch::kFloat32);
      masks.push_back(mask);
      ref->branchWeight(b).copy_(w * mask);
      rt->branchWeight(b).copy_(w); // dead taps non-zero on purpose
      if (base.batchNorm)
        for (const char *f : {"weight", "bias"}) {
          auto v = torch::rand({base.channels}) + 0.5;
          branchNormParam(*ref, b, f).copy_(v);
          branchNormParam(*rt, b, f).copy_(v);
        }
    }
  }
  ref->setBranchMasks(masks);
  rt->setBranchMasks(masks);

  auto x = torch::randn({2, base.channels, 17, 13});
  auto xr = x.clone().requires_grad_(true), xt = x.clone().requires_grad_(true);
  auto yr = ref->forward(xr), yt = rt->forward(xt);
  EXPECT_TRUE(torch::allclose(yr, yt, 1e-4, 1e-4)) << (yr - yt).abs().max().item<float>();
  auto dy = torch::randn(yr.sizes());
  yr.backward(dy);
  yt.backward(dy);
  EXPECT_TRUE(torch::allclose(xr.grad(), xt.grad(), 1e-4, 1e-4));
  for (size_t b = 0; b < masks.size(); ++b) {
    auto gr = ref->branchWeight(b).grad(), gt = rt->branchWeight(b).grad();
    EXPECT_TRUE(torch::allclose(gr * masks[b], gt, 1e-3, 1e-3)) << "branch " << b;
    EXPECT_EQ(gt.mul(1 - masks[b]).abs().max().item<float>(), 0.0f) << "dead taps get 0";
  }

  // Dense weight gradients (gradient regrowth): dead taps get LibTorch's values.
  rt->setDenseWeightGrad(true);
  for (size_t b = 0; b < masks.size(); ++b)
    rt->branchWeight(b).mutable_grad() = torch::Tensor();
  rt->forward(x).backward(dy);
  ref->forward(x); // the same BatchNorm statistics updates on both
  for (size_t b = 0; b < masks.size(); ++b)
    EXPECT_TRUE(
        torch::allclose(ref->branchWeight(b).grad(), rt->branchWeight(b).grad(), 1e-3, 1e-3))
        << "branch " << b;
  rt->setDenseWeightGrad(false);

  // Eval: the runtime may fold BatchNorm and merge branches; same function.
  ref->eval();
  rt->eval();
  torch::NoGradGuard g;
  auto er = ref->forward(x), et = rt->forward(x);
  EXPECT_TRUE(torch::allclose(er, et, 1e-4, 1e-4)) << (er - et).abs().max().item<float>();
}

} // namespace

TEST(LargeKernelRuntime, SlakBranchesMatchLibTorch) {
  compareBackends(models::slakKernel(6, 13, 5, /*bn=*/true, /*decomposed=*/true));
}

TEST(LargeKernelRuntime, SlakWithoutBatchNormMatchesLibTorch) {
  compareBackends(models::slakKernel(5, 9, 3, /*bn=*/false, /*decomposed=*/true));
}

TEST(LargeKernelRuntime, RepLkBranchesMatchLibTorch) {
  compareBackends(models::repLkKernel(4, 11, 5));
}

TEST(LargeKernelRuntime, DenseDepthwiseWithBiasMatchesLibTorch) {
  compareBackends(models::denseDepthwiseKernel(3, 7));
}

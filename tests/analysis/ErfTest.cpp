// The effective-receptive-field analysis: field geometry against hand-computed
// receptive fields, the map's support and normalisation, the centred-square
// sides, large kernels against small ones, checkpoints, PNG files, figures
// and the JSON record.
#include "models/analysis/Erf.h"
#include "models/analysis/BitmapFont.h"
#include "models/analysis/CheckpointModel.h"
#include "models/analysis/ErfReport.h"
#include "models/analysis/Figure.h"
#include "models/analysis/Png.h"
#include "models/train/Trainer.h"
#include "tests/models/TestSupport.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>
#include <fstream>

using namespace slak;
using analysis::centredSquareSide;
namespace fs = std::filesystem;

namespace {

fs::path freshDir(const std::string &name) { return tests::freshDir("slak-erf-test", name); }

/// One stage of `depth` SLaK blocks with a dense k x k depthwise kernel (no
/// small branch, no BN), layer scale 1 so that the blocks matter at random
/// init (SLaK's 1e-6 would leave only the identity path).
models::ModelConfig oneStage(int k, int64_t depth = 3) {
  auto c = models::modelConfig("slak_nano");
  c.depths = {depth};
  c.baseDims = {16};
  c.widthFactor = 1.0;
  c.kernelSizes = {k};
  c.smallKernel = 0;
  c.decomposed = false;
  c.branchBatchNorm = false;
  c.layerScale = 1.0;
  c.backend = models::LkBackend::Torch;
  return c;
}

std::shared_ptr<models::Classifier> randomModel(const models::ModelConfig &c, uint64_t seed = 1) {
  torch::manual_seed(seed);
  return models::createModel(c);
}

torch::Tensor noise(int64_t n, int64_t size, uint64_t seed = 3) {
  analysis::ErfInputOptions o;
  o.source = "random";
  o.count = n;
  o.size = size;
  o.seed = seed;
  return analysis::erfInputs(o);
}

} // namespace

// ------------------------------------------------------------------ geometry

TEST(ErfGeometry, StrideAndFieldMatchHandComputedValues) {
  auto nano = models::modelConfig("slak_nano");
  EXPECT_EQ(analysis::totalStride(nano), 8);
  EXPECT_EQ(analysis::featureMapSize(nano, 256), 32);
  // 2 (stem) + 2*12*2 + 1*2 + 2*12*4 + 1*4 + 2*6*8 = 248.
  EXPECT_EQ(analysis::centreReceptiveField(nano, 256).fullSide(), 248);
  // ConvNeXt-T: 4 + 3*6*4 + 4 + 3*6*8 + 8 + 9*6*16 + 16 + 3*6*32 = 1688.
  auto convnext = models::modelConfig("convnext_tiny");
  EXPECT_EQ(analysis::totalStride(convnext), 32);
  EXPECT_EQ(analysis::centreReceptiveField(convnext, 1024).fullSide(), 1688);
  // RepLKNet-31B: 3 + 2*2 + 2*4 + 2*30*4 + 2*4 + 2*28*8 + 2*8 + 18*26*16 + 2*16 + 2*12*32.
  auto replk = models::modelConfig("replknet_31b");
  EXPECT_EQ(analysis::totalStride(replk), 32);
  EXPECT_EQ(analysis::featureMapSize(replk, 1024), 32);
  EXPECT_EQ(analysis::centreReceptiveField(replk, 1024).fullSide(), 9011);
}

TEST(ErfGeometry, FieldIsWhereTheCentreOutputReads) {
  // slak_nano with 3x3 kernels at 128: RF 2 + 2*2*2 + 2 + 2*2*4 + 4 + 2*2*8 = 64.
  auto c = models::modelConfig("slak_nano");
  c.kernelSizes = {3, 3, 3};
  c.smallKernel = 0;
  c.decomposed = false;
  c.layerScale = 1.0;
  c.backend = models::LkBackend::Torch;
  const int64_t size = 128;
  auto rf = analysis::centreReceptiveField(c, size);
  ASSERT_EQ(rf.fullSide(), 64);
  ASSERT_GT(rf.lo, 0);
  ASSERT_LT(rf.hi, size - 1);
  auto model = randomModel(c);
  auto images = noise(4, size);
  model->eval();
  for (auto &p : model->parameters())
    p.requires_grad_(false);
  // Unrectified gradient: non-zero exactly on the field (each edge row and
  // column touched), zero outside.
  auto x = images.clone().requires_grad_(true);
  auto f = model->forwardFeatures(x);
  auto centre = f.select(3, f.size(3) / 2).select(2, f.size(2) / 2).sum();
  auto g = torch::autograd::grad({centre}, {x})[0].abs().sum(at::IntArrayRef{0, 1});
  auto inside = g.slice(0, rf.lo, rf.hi + 1).slice(1, rf.lo, rf.hi + 1);
  auto outside = g.clone();
  outside.slice(0, rf.lo, rf.hi + 1).slice(1, rf.lo, rf.hi + 1).zero_();
  EXPECT_EQ(outside.abs().max().item<double>(), 0.0);
  EXPECT_GT(inside.select(0, 0).sum().item<double>(), 0);
  EXPECT_GT(inside.select(0, inside.size(0) - 1).sum().item<double>(), 0);
  EXPECT_GT(inside.select(1, 0).sum().item<double>(), 0);
  EXPECT_GT(inside.select(1, inside.size(1) - 1).sum().item<double>(), 0);
  // The analysis' map is zero outside the field too.
  auto erf = analysis::erfContributions(*model, images);
  EXPECT_DOUBLE_EQ(erf.sum().item<double>(),
                   erf.slice(0, rf.lo, rf.hi + 1).slice(1, rf.lo, rf.hi + 1).sum().item<double>());
}

TEST(ErfGeometry, BadSizesNameTheStrideAndTheFix) {
  auto nano = models::modelConfig("slak_nano");
  EXPECT_NO_THROW(analysis::checkErfSize(nano, 32));
  try {
    analysis::checkErfSize(nano, 100);
    FAIL() << "size 100 accepted";
  } catch (const std::invalid_argument &e) {
    std::string m = e.what();
    EXPECT_NE(m.find("--size 100 is not a multiple of slak_nano's total stride 8"),
              std::string::npos)
        << m;
    EXPECT_NE(m.find("--size 104"), std::string::npos) << m;
  }
  try {
    analysis::checkErfSize(nano, 24);
    FAIL() << "size 24 accepted";
  } catch (const std::invalid_argument &e) {
    std::string m = e.what();
    EXPECT_NE(m.find("too small"), std::string::npos) << m;
    EXPECT_NE(m.find("3x3"), std::string::npos) << m;
    EXPECT_NE(m.find("--size 32"), std::string::npos) << m;
  }
}

// ------------------------------------------------------------------- sides

TEST(ErfSides, CentredSquaresOnHandMadeMaps) {
  auto delta = torch::zeros({9, 9}, torch::kFloat64);
  delta[4][4] = 5.0;
  for (double f : {0.2, 0.5, 0.99, 1.0})
    EXPECT_EQ(centredSquareSide(delta, f), 1) << f;
  auto uniform = torch::ones({9, 9}, torch::kFloat64);
  EXPECT_EQ(centredSquareSide(uniform, 0.1), 3);  // 9/81 = 0.111
  EXPECT_EQ(centredSquareSide(uniform, 0.2), 5);  // 9/81 < 0.2 <= 25/81
  EXPECT_EQ(centredSquareSide(uniform, 0.5), 7);  // 25/81 < 0.5 <= 49/81
  EXPECT_EQ(centredSquareSide(uniform, 0.99), 9); // 49/81 < 0.99
  // Even side: centre (4, 4); the square clips at the border, side <= 8.
  auto even = torch::ones({8, 8}, torch::kFloat64);
  EXPECT_EQ(centredSquareSide(even, 1.0), 8);
  // Mass off-centre: a ring at distance 3 needs the 7 x 7 square.
  auto ring = torch::zeros({11, 11}, torch::kFloat64);
  ring[5][8] = 1.0;
  ring[5][5] = 1.0;
  EXPECT_EQ(centredSquareSide(ring, 0.5), 1);
  EXPECT_EQ(centredSquareSide(ring, 0.6), 7);
  auto sides = analysis::centredSquareSides(uniform, {0.2, 0.5});
  ASSERT_EQ(sides.size(), 2u);
  EXPECT_DOUBLE_EQ(sides[1].areaRatio, 49.0 / 81.0);
}

TEST(ErfSides, NormalisationIsLog10PlusOneOverMax) {
  auto map = torch::tensor({0.0, 9.0, 99.0}, torch::kFloat64).reshape({1, 3});
  auto n = analysis::normaliseErf(map);
  EXPECT_DOUBLE_EQ(n[0][0].item<double>(), 0.0);
  EXPECT_NEAR(n[0][1].item<double>(), 0.5, 1e-12);
  EXPECT_DOUBLE_EQ(n[0][2].item<double>(), 1.0);
}

// -------------------------------------------------------------------- maps

TEST(ErfMap, NonNegativeNormalisedMonotoneAndInsideTheField) {
  auto c = models::modelConfig("slak_nano");
  c.backend = models::LkBackend::Torch;
  c.layerScale = 1.0;
  const int64_t size = 64;
  auto model = randomModel(c);
  auto erf = analysis::computeErf(*model, noise(3, size), 2);
  EXPECT_EQ(erf.images, 3);
  ASSERT_EQ(erf.mean.sizes(), (std::vector<int64_t>{size, size}));
  EXPECT_GE(erf.mean.min().item<double>(), 0.0);
  EXPECT_GE(erf.normalised.min().item<double>(), 0.0);
  EXPECT_DOUBLE_EQ(erf.normalised.max().item<double>(), 1.0);
  EXPECT_TRUE(torch::allclose(erf.normalised, analysis::normaliseErf(erf.mean)));

  const auto rf = analysis::centreReceptiveField(c, size);
  const int64_t centre = size / 2;
  const int64_t bound = std::min<int64_t>(2 * std::max(centre - rf.lo, rf.hi - centre) + 1, size);
  ASSERT_EQ(erf.sides.size(), 4u);
  for (size_t i = 0; i < erf.sides.size(); ++i) {
    EXPECT_DOUBLE_EQ(erf.sides[i].fraction, analysis::kErfFractions[i]);
    EXPECT_LE(erf.sides[i].side, bound);
    EXPECT_TRUE(erf.sides[i].side % 2 == 1 || erf.sides[i].side == size);
    if (i > 0) {
      EXPECT_LE(erf.sides[i - 1].side, erf.sides[i].side);
      EXPECT_LE(erf.rawSides[i - 1].side, erf.rawSides[i].side);
    }
  }
  // Batching does not change the mean, up to fp32 rounding: the MLPs'
  // matmuls (oneDNN) block their rows by batch size, so a batch of one and
  // of two round differently (measured 4e-7 of the largest value).
  auto one = analysis::computeErf(*model, noise(3, size), 1);
  const double largest = erf.mean.abs().max().item<double>();
  EXPECT_LE((one.mean - erf.mean).abs().max().item<double>(), 1e-5 * largest);
}

TEST(ErfMap, LargerKernelsGiveALargerField) {
  // One stage at stride 2, three blocks: the 3x3 net's whole theoretical
  // field is 2 + 3*2*2 = 14 pixels, the 13x13 net's 2 + 3*12*2 = 74.
  const int64_t size = 96;
  auto small = oneStage(3), large = oneStage(13);
  const int64_t smallField = analysis::centreReceptiveField(small, size).fullSide();
  ASSERT_EQ(smallField, 14);
  auto images = noise(4, size);
  auto a = analysis::computeErf(*randomModel(small), images, 4);
  auto b = analysis::computeErf(*randomModel(large), images, 4);
  std::string sides;
  for (size_t i = 0; i < a.sides.size(); ++i)
    sides += std::to_string(a.sides[i].side) + "/" + std::to_string(b.sides[i].side) + " ";
  SCOPED_TRACE("sides 3x3/13x13: " + sides);
  EXPECT_LE(a.sides[3].side, smallField + 1);
  // Where it must hold: the large net's 99% square is wider than the small
  // net's entire field. The smaller shares may tie: the residual identity
  // path puts about half of the mass on the stem's 2x2 patch in both nets.
  EXPECT_GT(b.sides[3].side, smallField + 1);
  EXPECT_GT(b.rawSides[3].side, a.rawSides[3].side);
  for (size_t i = 0; i < a.sides.size(); ++i)
    EXPECT_GE(b.sides[i].side, a.sides[i].side) << analysis::kErfFractions[i];
}

TEST(ErfMap, InputsAreUpsampledTestImagesOrNoise) {
  analysis::ErfInputOptions o;
  o.source = "random";
  o.count = 2;
  o.size = 32;
  o.channels = 3;
  auto x = analysis::erfInputs(o);
  EXPECT_EQ(x.sizes(), (std::vector<int64_t>{2, 3, 32, 32}));
  EXPECT_TRUE(torch::equal(x, analysis::erfInputs(o))); // seeded
  o.source = "imagenet";
  EXPECT_THROW(analysis::erfInputs(o), std::invalid_argument);
  o.source = "fashion-mnist";
  if (!fs::exists(o.dataDir))
    GTEST_SKIP() << "no Fashion-MNIST at " << o.dataDir;
  o.size = 56;
  auto f = analysis::erfInputs(o);
  EXPECT_EQ(f.sizes(), (std::vector<int64_t>{2, 3, 56, 56}));
  EXPECT_TRUE(torch::equal(f.select(1, 0), f.select(1, 2)));
  EXPECT_GT(f.std().item<double>(), 0.1);
}

// ------------------------------------------------------------- checkpoints

TEST(ErfCheckpoint, RebuildsTheModelAndLoadsWeightsEmaAndMasks) {
  auto dir = freshDir("ckpt");
  train::TrainOptions o = slak::tests::tinySyntheticRun(dir.string());
  o.overrides.kernelSizes = std::vector<int>{7, 5, 3};
  o.synthetic.size = 32;
  o.syntheticTestSize = 16;
  o.epochs = 1;
  o.batchSize = 16;
  o.emaDecay = 0.5;
  o.sparse.init = sparse::Init::Uniform;
  o.progress = false;
  o.threads = 1;
  train::Trainer trainer(o);
  trainer.run();
  const std::string path = (dir / "checkpoint.pt").string();

  models::ModelOverrides none;
  none.backend = models::LkBackend::Torch;
  auto config = analysis::checkpointModelConfig(path, "", none);
  EXPECT_EQ(config.name, "slak_nano");
  EXPECT_EQ(config.kernelSizes, (std::vector<int>{7, 5, 3}));
  EXPECT_EQ(config.dims(), (std::vector<int64_t>{8, 16, 32}));
  for (bool ema : {false, true}) {
    auto model = analysis::loadCheckpointModel(path, config, ema);
    auto &want = ema ? *trainer.ema() : trainer.model();
    auto got = model->named_parameters();
    for (const auto &p : want.named_parameters())
      EXPECT_TRUE(torch::equal(p.value(), got[p.key()])) << p.key() << (ema ? " (EMA)" : "");
  }

  models::ModelOverrides contradicting = none;
  contradicting.kernelSizes = std::vector<int>{13, 13, 7};
  try {
    analysis::checkpointModelConfig(path, "", contradicting);
    FAIL() << "contradicting kernel sizes accepted";
  } catch (const std::runtime_error &e) {
    EXPECT_NE(std::string(e.what()).find("was written for model"), std::string::npos) << e.what();
  }
  EXPECT_THROW(analysis::checkpointModelConfig((dir / "none.pt").string(), "", none),
               std::runtime_error);
}

// ------------------------------------------------------ pictures and JSON

TEST(ErfPicture, ColoursGetLighterAndPngReadsBack) {
  double last = -1;
  for (int i = 0; i <= 100; ++i) {
    auto c = analysis::heatColour(i / 100.0);
    double luma = 0.2126 * c.r + 0.7152 * c.g + 0.0722 * c.b;
    EXPECT_GE(luma, last) << "t = " << i / 100.0;
    last = luma;
  }
  EXPECT_EQ(analysis::heatColour(-1.0), analysis::heatColour(0.0));
  EXPECT_EQ(analysis::heatColour(2.0), analysis::heatColour(1.0));

  auto dir = freshDir("png");
  analysis::RgbImage image(37, 21, {10, 20, 30});
  image.set(36, 20, {255, 0, 128});
  const std::string path = (dir / "a.png").string();
  analysis::writePng(path, image);
  EXPECT_FALSE(fs::exists(path + ".tmp"));
  auto back = analysis::readPng(path);
  EXPECT_EQ(back.width, 37);
  EXPECT_EQ(back.height, 21);
  EXPECT_EQ(back.pixels, image.pixels);
  EXPECT_THROW(analysis::readPng((dir / "missing.png").string()), std::runtime_error);
}

TEST(ErfPicture, FigureHasOnePanelPerMapAndCaptions) {
  EXPECT_TRUE(analysis::glyphPixel('1', 2, 0));
  EXPECT_FALSE(analysis::glyphPixel('1', 0, 0));
  EXPECT_EQ(analysis::textWidth("AB", 2), (2 * analysis::kGlyphAdvance - 1) * 2);

  auto ramp = torch::linspace(0, 1, 64, torch::kFloat64).repeat({64, 1});
  analysis::FigurePanel a{ramp, {"7x7 dense", "20/30/50/99%: 1/3/5/7 px"}};
  analysis::FigurePanel b{torch::ones({64, 64}, torch::kFloat64), {"13x5+5x13+5x5"}};
  const int panel = 128;
  auto fig = analysis::renderFigure({a, b}, panel, "ERF", "colour bar");
  EXPECT_EQ(fig.width, 12 + 2 * (panel + 12));
  // Second panel: a constant map of 1 -> the colour of 1 everywhere.
  const int top = 12 + (analysis::kGlyphHeight + 3) + 6; // margin + title line
  EXPECT_EQ(fig.at(12 + panel + 12 + panel / 2, top + panel / 2), analysis::heatColour(1.0));
  // First panel: the ramp grows left to right.
  EXPECT_EQ(fig.at(12, top + 5), analysis::heatColour(0.0));
  // Caption text under the first panel is drawn in a dark colour.
  bool dark = false;
  for (int y = top + panel; y < top + panel + 30; ++y)
    for (int x = 12; x < 12 + panel; ++x)
      dark |= fig.at(x, y).r < 100;
  EXPECT_TRUE(dark);

  // The figure's PNG reads back through libpng with its size and pixels.
  const std::string path = (freshDir("figure") / "fig.png").string();
  analysis::writePng(path, fig);
  auto back = analysis::readPng(path);
  EXPECT_EQ(back.width, fig.width);
  EXPECT_EQ(back.height, fig.height);
  EXPECT_EQ(back.pixels, fig.pixels);
}

TEST(ErfReport, JsonHasEveryNumber) {
  analysis::ErfPanel p;
  p.label = "one stage 13x13";
  p.config = oneStage(13);
  p.size = 64;
  p.data = "random";
  p.erf = analysis::computeErf(*randomModel(p.config), noise(2, 64), 2);
  auto j = analysis::erfPanelJson(p);
  EXPECT_EQ(j["label"], "one stage 13x13");
  EXPECT_EQ(j["size"], 64);
  EXPECT_EQ(j["images"], 2);
  EXPECT_EQ(j["weights"], "random");
  EXPECT_TRUE(j["checkpoint"].is_null());
  EXPECT_EQ(j["feature_map"][0], 32);
  EXPECT_EQ(j["receptive_field"]["side"], 74);
  ASSERT_EQ(j["sides"].size(), 4u);
  EXPECT_EQ(j["sides"][3]["fraction"], 0.99);
  EXPECT_EQ(j["sides"][3]["side"], p.erf.sides[3].side);
  EXPECT_EQ(j["sides_raw"][0]["side"], p.erf.rawSides[0].side);
  EXPECT_GT(j["max_contribution"].get<double>(), 0);
  EXPECT_EQ(j["model"]["kernels"], "13x13");
  auto caption = analysis::erfCaption(p);
  ASSERT_EQ(caption.size(), 3u);
  EXPECT_EQ(caption[1].rfind("20/30/50/99%: ", 0), 0u) << caption[1];

  auto dir = freshDir("json");
  const std::string path = (dir / "erf.json").string();
  analysis::writeFileAtomically(path, j.dump());
  EXPECT_FALSE(fs::exists(path + ".tmp"));
  EXPECT_EQ(nlohmann::json::parse(std::ifstream(path)), j);
}

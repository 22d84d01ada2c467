// Dynamic sparsity: which weights get masks, densities per init against their
// definitions, prune/regrow keeps live counts, masked weights are exactly
// zero after a step, optimizer moments, determinism, checkpoint round trip.
#include "models/Models.h"
#include "models/sparse/Masking.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <set>

using namespace slak;
using sparse::Masking;

namespace {

std::shared_ptr<models::Classifier> tinyNet(uint64_t seed = 0) {
  torch::manual_seed(seed);
  models::ModelOverrides o;
  o.widthFactor = 0.5; // dims 16, 32, 64
  o.backend = models::LkBackend::Torch;
  return models::createModel("slak_nano", o);
}

sparse::Options opts(sparse::Init init, double sparsity = 0.4, uint64_t seed = 0) {
  sparse::Options o;
  o.init = init;
  o.sparsity = sparsity;
  o.seed = seed;
  o.totalSteps = 1000;
  return o;
}

torch::Tensor lossOn(models::Classifier &net, uint64_t seed = 1) {
  torch::manual_seed(seed);
  auto x = torch::randn({8, 1, 28, 28});
  auto y = torch::randint(10, {8}, torch::kLong);
  return torch::nn::functional::cross_entropy(net.forward(x), y);
}

/// One AdamW step on a random batch, masks applied after it.
void trainStep(models::Classifier &net, torch::optim::Optimizer &opt, Masking &m,
               uint64_t seed = 1) {
  opt.zero_grad();
  lossOn(net, seed).backward();
  opt.step();
  m.applyToWeights();
}

} // namespace

TEST(SparseMasks, OnlyRank2And4WeightsAreMasked) {
  auto net = tinyNet();
  Masking m(*net, opts(sparse::Init::Uniform));
  m.initialize();
  std::set<std::string> masked;
  for (const auto &l : m.layers())
    masked.insert(l.name);
  int64_t rank24 = 0;
  for (const auto &p : net->named_parameters()) {
    bool rank = p.value().dim() == 2 || p.value().dim() == 4;
    rank24 += rank;
    EXPECT_EQ(masked.count(p.key()) == 1, rank) << p.key();
  }
  EXPECT_EQ(static_cast<int64_t>(masked.size()), rank24);
  EXPECT_TRUE(masked.count("stages.0.0.large_kernel.branch1.weight"));
  EXPECT_TRUE(masked.count("head.weight"));
  EXPECT_FALSE(masked.count("stages.0.0.gamma"));
  EXPECT_FALSE(masked.count("stages.0.0.large_kernel.branch0.bn.weight"));
}

TEST(SparseMasks, UniformDensityIsExactPerLayer) {
  auto net = tinyNet();
  Masking m(*net, opts(sparse::Init::Uniform, 0.4));
  m.initialize();
  for (const auto &l : m.layers()) {
    EXPECT_EQ(l.live, std::llround(0.6 * l.weight.numel())) << l.name;
    EXPECT_EQ(l.mask.sum().item<int64_t>(), l.live) << l.name;
    // Dead weights are zero; live ones (almost surely) are not.
    EXPECT_EQ(l.weight.mul(1 - l.mask).abs().sum().item<double>(), 0.0) << l.name;
    EXPECT_EQ(l.weight.ne(0).sum().item<int64_t>(), l.live) << l.name;
  }
  EXPECT_NEAR(m.overallDensity(), 0.6, 1e-3);
}

TEST(SparseMasks, ErkDensitiesMatchDefinition) {
  std::vector<std::vector<int64_t>> shapes = {
      {64, 1, 13, 5}, {256, 64}, {10, 64}, {3, 2}, {16, 1, 5, 5}};
  const double sparsity = 0.6;
  auto d = sparse::erkDensities(shapes, sparsity);
  ASSERT_EQ(d.size(), shapes.size());
  double target = 0, live = 0, eps = -1;
  for (size_t i = 0; i < shapes.size(); ++i) {
    double n = 1, sum = 0;
    for (auto s : shapes[i]) {
      n *= s;
      sum += s;
    }
    target += (1 - sparsity) * n;
    live += d[i] * n;
    if (d[i] < 1.0) {
      double e = d[i] / (sum / n); // the common epsilon
      if (eps < 0)
        eps = e;
      EXPECT_NEAR(e, eps, 1e-9 * eps) << "layer " << i;
    }
  }
  EXPECT_NEAR(live, target, 1e-6 * target);
  // The tiny 3x2 layer has raw probability (3+2)/6: ERK makes it dense.
  EXPECT_DOUBLE_EQ(d[3], 1.0);
  EXPECT_LT(d[1], 1.0);
  // A dense layer is one whose eps * raw would exceed 1.
  EXPECT_GT(eps * (5.0 / 6.0), 1.0);
}

TEST(SparseMasks, ErkInitDrawsTheComputedDensities) {
  auto net = tinyNet();
  Masking m(*net, opts(sparse::Init::ERK, 0.4));
  m.initialize();
  std::vector<std::vector<int64_t>> shapes;
  std::vector<std::string> names;
  for (const auto &p : net->named_parameters())
    if (p.value().dim() == 2 || p.value().dim() == 4) {
      shapes.push_back(p.value().sizes().vec());
      names.push_back(p.key());
    }
  auto d = sparse::erkDensities(shapes, 0.4);
  auto masks = m.maskMap();
  int64_t dense = 0;
  for (size_t i = 0; i < names.size(); ++i) {
    if (d[i] >= 0.99) {
      EXPECT_FALSE(masks.count(names[i])) << names[i] << " should stay dense";
      ++dense;
      continue;
    }
    ASSERT_TRUE(masks.count(names[i])) << names[i];
    auto n = net->named_parameters()[names[i]].numel();
    EXPECT_EQ(masks[names[i]].sum().item<int64_t>(), std::llround(d[i] * n)) << names[i];
  }
  EXPECT_GT(dense, 0); // the stem (16x1x2x2) and small layers are dense under ERK
}

TEST(SparseMasks, SnipDensitiesMatchGlobalThreshold) {
  torch::manual_seed(7);
  std::vector<torch::Tensor> scores = {torch::rand({50, 4}), torch::rand({30}) * 2,
                                       torch::rand({7, 3}) * 0.5};
  auto d = sparse::snipDensities(scores, 0.4);
  // Independent: sort all scores, keep the top 60%.
  auto all = torch::cat({scores[0].flatten(), scores[1].flatten(), scores[2].flatten()});
  int64_t keep = static_cast<int64_t>(all.numel() * 0.6);
  double threshold = std::get<0>(all.sort(0, /*descending=*/true))[keep - 1].item<double>();
  for (size_t i = 0; i < scores.size(); ++i)
    EXPECT_NEAR(d[i], scores[i].ge(threshold).sum().item<double>() / scores[i].numel(), 1e-12);
  // Larger scores get larger densities.
  EXPECT_GT(d[1], d[0]);
  EXPECT_GT(d[0], d[2]);
}

TEST(SparseMasks, SnipInitUsesScoresOfOneBatch) {
  auto net = tinyNet();
  // Scores computed here, on the same weights and batch.
  std::vector<torch::Tensor> scores;
  std::vector<std::string> names;
  lossOn(*net).backward();
  for (const auto &p : net->named_parameters())
    if (p.value().dim() == 2 || p.value().dim() == 4) {
      scores.push_back((p.value() * p.value().grad()).abs().detach());
      names.push_back(p.key());
    }
  auto expected = sparse::snipDensities(scores, 0.4);
  net->zero_grad();

  Masking m(*net, opts(sparse::Init::Snip, 0.4));
  m.initialize([&] { return lossOn(*net); });
  auto masks = m.maskMap();
  int64_t masked = 0;
  for (size_t i = 0; i < names.size(); ++i) {
    if (expected[i] >= 0.99) {
      EXPECT_FALSE(masks.count(names[i])) << names[i];
      continue;
    }
    ++masked;
    ASSERT_TRUE(masks.count(names[i])) << names[i];
    int64_t n = scores[i].numel();
    EXPECT_EQ(masks[names[i]].sum().item<int64_t>(),
              std::max<int64_t>(1, std::llround(expected[i] * n)))
        << names[i];
  }
  EXPECT_GT(masked, 5);
  EXPECT_THROW(Masking(*net, opts(sparse::Init::Snip)).initialize(), std::invalid_argument);
}

TEST(SparseMasks, NearlyDenseLayersStayDense) {
  auto net = tinyNet();
  Masking m(*net, opts(sparse::Init::Uniform, 0.005)); // density 0.995 >= 0.99
  m.initialize();
  EXPECT_TRUE(m.layers().empty());
  EXPECT_DOUBLE_EQ(m.overallDensity(), 1.0);
}

TEST(SparseUpdate, LiveCountsUnchangedAndSmallestPruned) {
  auto net = tinyNet();
  auto o = opts(sparse::Init::Uniform);
  o.pruneRate = 0.3;
  Masking m(*net, o);
  m.initialize();
  torch::optim::AdamW opt(net->parameters(), torch::optim::AdamWOptions(1e-2));
  trainStep(*net, opt, m);

  std::vector<torch::Tensor> before, weightsBefore;
  std::vector<int64_t> liveBefore;
  for (const auto &l : m.layers()) {
    before.push_back(l.mask.clone());
    weightsBefore.push_back(l.weight.detach().clone());
    liveBefore.push_back(l.live);
  }
  auto report = m.update(0, &opt); // step 0: rate = pruneRate
  EXPECT_DOUBLE_EQ(report.pruneRate, 0.3);
  for (size_t i = 0; i < m.layers().size(); ++i) {
    const auto &l = m.layers()[i];
    EXPECT_EQ(l.live, liveBefore[i]) << l.name;
    EXPECT_EQ(l.mask.sum().item<int64_t>(), liveBefore[i]) << l.name;
    EXPECT_EQ(report.layers[i].pruned, static_cast<int64_t>(std::ceil(0.3 * liveBefore[i])));
    auto wasLive = before[i].gt(0.5), isLive = l.mask.gt(0.5);
    auto pruned = wasLive.logical_and(isLive.logical_not());
    // Whatever regrowth picked afterwards, every pruned weight was among the
    // `pruned` smallest live magnitudes.
    auto mag = weightsBefore[i].abs();
    int64_t k = report.layers[i].pruned;
    double kth = std::get<0>(mag.masked_select(wasLive).sort())[k - 1].item<double>();
    if (pruned.any().item<bool>()) {
      EXPECT_LE(mag.masked_select(pruned).max().item<double>(), kth) << l.name;
    }
    // Regrown weights start at 0; no weight outside the mask survives.
    auto regrown = isLive.logical_and(wasLive.logical_not());
    EXPECT_EQ(l.weight.detach().masked_select(regrown).abs().sum().item<double>(), 0.0);
    EXPECT_EQ(l.weight.detach().masked_select(isLive.logical_not()).abs().sum().item<double>(),
              0.0);
  }
}

TEST(SparseUpdate, PrunedWeightIsExactlyZeroAfterStep) {
  auto net = tinyNet();
  Masking m(*net, opts(sparse::Init::Uniform));
  m.initialize();
  torch::optim::AdamW opt(net->parameters(), torch::optim::AdamWOptions(1e-2));
  trainStep(*net, opt, m, 1);
  m.update(0, &opt);
  // The optimizer writes dead positions (dense gradients, momentum) ...
  opt.zero_grad();
  lossOn(*net, 2).backward();
  opt.step();
  const auto &l = m.layers().back(); // the head
  EXPECT_GT(l.weight.detach().mul(1 - l.mask).abs().sum().item<double>(), 0.0);
  // ... and the masks zero them again, exactly.
  m.applyToWeights();
  for (const auto &layer : m.layers())
    EXPECT_EQ(layer.weight.detach().mul(1 - layer.mask).abs().max().item<double>(), 0.0)
        << layer.name;
}

TEST(SparseUpdate, GradientGrowthTakesLargestDeadGradients) {
  auto net = tinyNet();
  auto o = opts(sparse::Init::Uniform);
  o.growth = sparse::Growth::Gradient;
  Masking m(*net, o);
  m.initialize();
  const auto &head = m.layers().back();
  auto oldMask = head.mask.clone();
  auto grad = torch::rand(head.weight.sizes());
  head.weight.mutable_grad() = grad.clone();
  for (const auto &l : m.layers())
    if (!l.weight.grad().defined())
      l.weight.mutable_grad() = torch::zeros_like(l.weight);
  m.update(0, nullptr);
  auto newMask = m.layers().back().mask;
  auto regrown = newMask.gt(0.5).logical_and(oldMask.lt(0.5));
  auto stillDead = newMask.lt(0.5);
  ASSERT_TRUE(regrown.any().item<bool>());
  EXPECT_GE(grad.masked_select(regrown).min().item<double>(),
            grad.masked_select(stillDead.logical_and(oldMask.lt(0.5))).max().item<double>());
}

TEST(SparseUpdate, MomentPolicyResetAndKeep) {
  for (auto policy : {sparse::MomentPolicy::Reset, sparse::MomentPolicy::Keep}) {
    auto net = tinyNet();
    auto o = opts(sparse::Init::Uniform);
    o.moments = policy;
    Masking m(*net, o);
    m.initialize();
    torch::optim::AdamW opt(net->parameters(), torch::optim::AdamWOptions(1e-2));
    trainStep(*net, opt, m);
    const auto &head = m.layers().back();
    auto &state = static_cast<torch::optim::AdamWParamState &>(
        *opt.state().at(head.weight.unsafeGetTensorImpl()));
    auto avgBefore = state.exp_avg().clone();
    auto oldMask = head.mask.clone();
    m.update(0, &opt);
    auto changed = m.layers().back().mask.ne(oldMask);
    ASSERT_TRUE(changed.any().item<bool>());
    if (policy == sparse::MomentPolicy::Reset) {
      EXPECT_EQ(state.exp_avg().masked_select(changed).abs().max().item<double>(), 0.0);
      EXPECT_EQ(state.exp_avg_sq().masked_select(changed).abs().max().item<double>(), 0.0);
      EXPECT_TRUE(torch::equal(state.exp_avg().masked_select(changed.logical_not()),
                               avgBefore.masked_select(changed.logical_not())));
    } else {
      EXPECT_TRUE(torch::equal(state.exp_avg(), avgBefore));
    }
  }
}

TEST(SparseUpdate, SameSeedSameMasks) {
  auto run = [](uint64_t seed) {
    auto net = tinyNet(0);
    Masking m(*net, opts(sparse::Init::Snip, 0.4, seed));
    m.initialize([&] { return lossOn(*net); });
    torch::optim::AdamW opt(net->parameters(), torch::optim::AdamWOptions(1e-2));
    trainStep(*net, opt, m);
    m.update(0, &opt);
    std::vector<torch::Tensor> masks;
    for (const auto &l : m.layers())
      masks.push_back(l.mask.clone());
    return masks;
  };
  auto a = run(5), b = run(5), c = run(6);
  ASSERT_EQ(a.size(), b.size());
  bool anyDifferent = false;
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_TRUE(torch::equal(a[i], b[i])) << "layer " << i;
    anyDifferent = anyDifferent || !torch::equal(a[i], c[i]);
  }
  EXPECT_TRUE(anyDifferent);
}

TEST(SparseUpdate, PruneRateDecaysOnCosine) {
  auto net = tinyNet();
  auto o = opts(sparse::Init::Uniform);
  o.pruneRate = 0.5;
  o.pruneRateMin = 0.005;
  o.totalSteps = 1000;
  o.updateFrequency = 100;
  Masking m(*net, o);
  EXPECT_DOUBLE_EQ(m.pruneRateAt(0), 0.5);
  EXPECT_NEAR(m.pruneRateAt(500), 0.2525, 1e-12);
  EXPECT_NEAR(m.pruneRateAt(1000), 0.005, 1e-12);
  EXPECT_NEAR(m.pruneRateAt(5000), 0.005, 1e-12);
  EXPECT_GT(m.pruneRateAt(250), m.pruneRateAt(750));
  EXPECT_TRUE(m.isUpdateStep(200));
  EXPECT_FALSE(m.isUpdateStep(0));
  EXPECT_FALSE(m.isUpdateStep(250));
}

// What a checkpoint keeps of a Masking (its masks in layer order and the
// generator state) restores one that continues identically.
TEST(SparseUpdate, RestoredStateContinuesIdentically) {
  auto net = tinyNet();
  Masking m(*net, opts(sparse::Init::Uniform));
  m.initialize();
  std::vector<std::pair<std::string, torch::Tensor>> saved;
  for (const auto &l : m.layers())
    saved.emplace_back(l.name, l.mask.clone());
  const torch::Tensor generator = m.generatorState();

  auto net2 = tinyNet();
  {
    torch::NoGradGuard g;
    auto src = net->named_parameters();
    for (auto &p : net2->named_parameters())
      p.value().copy_(src[p.key()]);
  }
  Masking m2(*net2, opts(sparse::Init::Uniform, 0.4, /*seed=*/99));
  m2.restore(saved, generator);
  ASSERT_EQ(m.layers().size(), m2.layers().size());
  for (size_t i = 0; i < m.layers().size(); ++i)
    EXPECT_EQ(m.layers()[i].live, m2.layers()[i].live) << m.layers()[i].name;
  m.update(0, nullptr); // random growth: uses the restored generator
  m2.update(0, nullptr);
  for (size_t i = 0; i < m.layers().size(); ++i)
    EXPECT_TRUE(torch::equal(m.layers()[i].mask, m2.layers()[i].mask)) << m.layers()[i].name;

  // A mask for a parameter that has none, or of another shape, is refused.
  auto bias = std::make_pair(std::string("head.bias"), torch::ones({10}));
  EXPECT_THROW(m2.restore({bias}, torch::Tensor()), std::invalid_argument);
  auto misshapen = std::make_pair(saved[0].first, torch::ones({3, 3}));
  EXPECT_THROW(m2.restore({misshapen}, torch::Tensor()), std::invalid_argument);
}

TEST(SparseOptions, NamesRoundTrip) {
  for (auto init : {sparse::Init::Snip, sparse::Init::ERK, sparse::Init::Uniform})
    EXPECT_EQ(sparse::parseInit(sparse::initName(init)), init);
  EXPECT_EQ(sparse::parseInit("erk"), sparse::Init::ERK);
  EXPECT_STREQ(sparse::initName(sparse::Init::ERK), "ERK");
  for (auto g : {sparse::Growth::Random, sparse::Growth::Gradient})
    EXPECT_EQ(sparse::parseGrowth(sparse::growthName(g)), g);
  for (auto p : {sparse::MomentPolicy::Reset, sparse::MomentPolicy::Keep})
    EXPECT_EQ(sparse::parseMomentPolicy(sparse::momentPolicyName(p)), p);
  try {
    sparse::parseGrowth("magnitude");
    FAIL() << "expected an error";
  } catch (const std::invalid_argument &e) {
    EXPECT_STREQ(e.what(), "unknown growth mode 'magnitude': expected random or gradient");
  }
}

TEST(SparseMasks, MasksReachRuntimeTapTables) {
  if (models::resolveLkBackend(models::LkBackend::Auto) != models::LkBackend::Runtime)
    GTEST_SKIP() << "[SKIP] no fast runtime backend in this build";
  torch::manual_seed(0);
  models::ModelOverrides o;
  o.widthFactor = 0.25;
  o.backend = models::LkBackend::Runtime;
  auto net = models::createModel("slak_nano", o);
  Masking m(*net, opts(sparse::Init::Uniform));
  m.initialize();
  models::pushMasksToLargeKernels(*net, m.maskMap());
  auto x = torch::randn({2, 1, 16, 16});
  torch::NoGradGuard g;
  auto before = net->forward(x);
  // Garbage at every dead large-kernel tap: only the tap tables hide it.
  int64_t branches = 0;
  for (auto &[path, layer] : models::largeKernelLayers(*net))
    for (size_t b = 0; b < layer->numBranches(); ++b) {
      auto mask = m.maskMap().at(path + "." + layer->branchWeightName(b));
      layer->branchWeight(b).add_((1 - mask) * 100.0);
      ++branches;
    }
  EXPECT_EQ(branches, 18); // 6 blocks x 3 branches
  EXPECT_TRUE(torch::equal(before, net->forward(x)));
  net->eval(); // the folded inference layer reads the masks too
  auto evalBefore = net->forward(x);
  m.applyToWeights();
  EXPECT_TRUE(torch::allclose(evalBefore, net->forward(x), 1e-5, 1e-5));
}

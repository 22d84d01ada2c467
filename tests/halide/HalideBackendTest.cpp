// The Halide CPU backend against the reference oracle: forward (summed with
// bias, and per branch), backward-data (shared dy and one dy per branch),
// backward-weight and the bias gradient, on SLaK, RepLKNet and ConvNeXt
// layers, images from 1x1 to 17x23, 1 to 998 channels, batch 1 to 3, mask
// densities 1, 0.6, 0.1 and 0, and several CpuSchedules, width-vectorised
// and channels-last (vectorised across channels, in NCHW and NHWC memory).
//
// Halide compiles once per (group structure, schedule) and sizes are
// dynamic, so each test below walks many shapes through the same pipelines.
#include "codegen/halide/CpuLkConv.h"
#include "codegen/halide/HalidePipelines.h"
#include "codegen/reference/Reference.h"
#include "tests/reference/LayerCases.h"

#include <algorithm>
#include <cmath>
#include <gtest/gtest.h>
#include <random>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace slak::codegen::cpu {
namespace {

struct Kernel {
  int kh, kw, ph, pw; // ph = pw = -1: "same"
};

struct Layer {
  std::vector<Kernel> kernels;
  bool perBranch = false;
  bool bias = false;
  bool denseWeightGrad = false;
};

struct Size {
  int64_t n, c, h, w;
  double density;
};

std::string describe(const Size &s) {
  std::ostringstream os;
  os << "N=" << s.n << " C=" << s.c << " " << s.h << "x" << s.w << " density=" << s.density;
  return os.str();
}

KernelSpec makeSpec(const Layer &layer, int64_t channels, bool sparse) {
  KernelSpec spec;
  spec.channels = channels;
  for (const Kernel &k : layer.kernels) {
    Branch b = Branch::same(k.kh, k.kw, !sparse);
    if (k.ph >= 0) {
      b.padH = k.ph;
      b.padW = k.pw;
    }
    spec.branches.push_back(b);
  }
  spec.perBranchOutputs = layer.perBranch;
  spec.hasBias = layer.bias;
  spec.denseWeightGrad = layer.denseWeightGrad;
  return spec;
}

/// NCHW -> NHWC and back, for the calls in channels-last memory.
std::vector<float> toNhwc(const std::vector<float> &v, int64_t n, int64_t c, int64_t hw) {
  std::vector<float> out(v.size());
  for (int64_t b = 0; b < n; ++b)
    for (int64_t ch = 0; ch < c; ++ch)
      for (int64_t p = 0; p < hw; ++p)
        out[(b * hw + p) * c + ch] = v[(b * c + ch) * hw + p];
  return out;
}
std::vector<float> toNchw(const std::vector<float> &v, int64_t n, int64_t c, int64_t hw) {
  std::vector<float> out(v.size());
  for (int64_t b = 0; b < n; ++b)
    for (int64_t ch = 0; ch < c; ++ch)
      for (int64_t p = 0; p < hw; ++p)
        out[(b * c + ch) * hw + p] = v[(b * hw + p) * c + ch];
  return out;
}

/// Runs all passes of one layer at one size through `conv` and the oracle;
/// with `nhwc` the tensors handed to `conv` are in channels-last memory.
void checkAgainstOracle(CpuLkConv &conv, const Layer &layer, const Size &size, uint32_t seed,
                        int threads = 2, bool nhwc = false) {
  const KernelSpec &spec = conv.spec();
  const std::string what = describe(size) + " schedule " + conv.schedule().str() +
                           (nhwc ? " NHWC memory" : " NCHW memory");
  SCOPED_TRACE(what);
  std::mt19937 rng(seed);
  const size_t numBranches = spec.branches.size();
  std::vector<BranchMask> masks(numBranches);
  const bool sparse = size.density < 1.0;
  if (sparse) {
    for (size_t b = 0; b < numBranches; ++b)
      masks[b] = reference::randomMask(rng, size.c * spec.branches[b].windowSize(), size.density);
    conv.setTaps(buildTapTable(spec, masks));
  }
  const reference::Shape refShape{size.n, size.c, size.h, size.w};
  const Shape shape{size.n, size.c, size.h, size.w, nhwc};
  const int64_t oh = spec.outHeight(size.h), ow = spec.outWidth(size.w);
  auto in = [&](const std::vector<float> &v, int64_t hw) {
    return nhwc ? toNhwc(v, size.n, size.c, hw) : v;
  };
  auto out = [&](const std::vector<float> &v, int64_t hw) {
    return nhwc ? toNchw(v, size.n, size.c, hw) : v;
  };
  const size_t outSize = static_cast<size_t>(size.n * size.c * oh * ow);
  std::vector<float> x = reference::uniform(rng, refShape.numel());
  const reference::Weights weights = reference::randomWeights(rng, spec.branches, size.c);
  std::vector<const float *> weightPtrs;
  for (const auto &w : weights)
    weightPtrs.push_back(w.data());
  std::vector<float> bias = spec.hasBias ? reference::uniform(rng, size.c) : std::vector<float>{};
  const std::vector<BranchMask> refMasks = sparse ? masks : std::vector<BranchMask>{};

  // Forward.
  auto yRef = reference::forward(spec, refShape, x, weights, refMasks, bias);
  std::vector<std::vector<float>> y(yRef.size(), std::vector<float>(outSize, -7.0f));
  std::vector<float *> yPtrs;
  for (auto &v : y)
    yPtrs.push_back(v.data());
  const std::vector<float> xIn = in(x, size.h * size.w);
  conv.forward(shape, xIn.data(), weightPtrs, spec.hasBias ? bias.data() : nullptr, yPtrs, threads);
  for (size_t k = 0; k < y.size(); ++k)
    reference::expectNear(out(y[k], oh * ow), yRef[k], "forward output " + std::to_string(k));

  // Backward passes with random dy (one per branch or shared).
  std::vector<std::vector<float>> dy, dyIn;
  std::vector<const float *> dyPtrs;
  for (size_t k = 0; k < (spec.perBranchOutputs ? numBranches : 1); ++k) {
    dy.push_back(reference::uniform(rng, outSize));
    dyIn.push_back(in(dy.back(), oh * ow));
  }
  for (const auto &d : dyIn)
    dyPtrs.push_back(d.data());

  auto dxRef = reference::backwardData(spec, refShape, dy, weights, refMasks);
  std::vector<float> dx(refShape.numel(), -7.0f);
  conv.backwardData(shape, dyPtrs, weightPtrs, dx.data(), threads);
  reference::expectNear(out(dx, size.h * size.w), dxRef, "backward-data");

  auto dwRef = reference::backwardWeight(spec, refShape, x, dy, refMasks);
  std::vector<std::vector<float>> dw(numBranches);
  std::vector<float *> dwPtrs;
  for (size_t b = 0; b < numBranches; ++b) {
    dw[b].assign(dwRef[b].size(), -7.0f);
    dwPtrs.push_back(dw[b].data());
  }
  conv.backwardWeight(shape, xIn.data(), dyPtrs, dwPtrs, threads);
  for (size_t b = 0; b < numBranches; ++b)
    reference::expectNear(dw[b], dwRef[b], "backward-weight branch " + std::to_string(b));

  auto dbRef = reference::backwardBias(spec, refShape, dy);
  std::vector<float> db(size.c, -7.0f);
  conv.backwardBias(shape, dyPtrs, db.data(), threads);
  reference::expectNear(db, dbRef, "bias gradient");
}

/// One CpuLkConv per (channels, sparse) pair, all with the same schedule, so
/// the pipelines compile once for the whole list. Channels-last schedules run
/// each size in NCHW and in NHWC memory.
void checkSizes(const Layer &layer, const CpuSchedule &schedule, const std::vector<Size> &sizes,
                uint32_t seed) {
  for (size_t k = 0; k < sizes.size(); ++k) {
    const Size &s = sizes[k];
    CpuLkConv conv(makeSpec(layer, s.c, s.density < 1.0), schedule);
    checkAgainstOracle(conv, layer, s, seed + static_cast<uint32_t>(k));
    if (schedule.channelsLast)
      checkAgainstOracle(conv, layer, s, seed + 50 + static_cast<uint32_t>(k), 2, /*nhwc=*/true);
  }
}

const std::vector<Kernel> kSlak51 = {{51, 5, -1, -1}, {5, 51, -1, -1}, {5, 5, -1, -1}};
const std::vector<Kernel> kSlak13 = {{13, 5, -1, -1}, {5, 13, -1, -1}, {5, 5, -1, -1}};
const std::vector<Kernel> kRepLk31 = {{31, 31, -1, -1}, {5, 5, -1, -1}};
const std::vector<Kernel> kConvNeXt7 = {{7, 7, -1, -1}};

CpuSchedule schedule(int vec, int rows, int vectors, bool transposeWide = true, bool merge = true,
                     int wtaps = 8, int wvec = 2) {
  CpuSchedule s;
  s.vectorWidth = vec;
  s.tileRows = rows;
  s.tileVectors = vectors;
  s.transposeWide = transposeWide;
  s.mergeTaps = merge;
  s.weightTaps = wtaps;
  s.weightVectors = wvec;
  return s;
}

// The shapes of the issue: images 1x1, 7x7, 17x23, 14x14; channels 1, 3, 124
// (249 on a small image); batch 1 and 3; densities 1, 0.6, 0.1, 0.
const std::vector<Size> kMixedSizes = {
    {1, 3, 7, 7, 1.0},   {3, 1, 17, 23, 0.6}, {1, 124, 14, 14, 0.1}, {3, 3, 1, 1, 1.0},
    {1, 3, 14, 14, 0.0}, {1, 249, 7, 7, 0.6}, {3, 3, 17, 23, 1.0},   {1, 1, 1, 1, 0.6},
};

TEST(HalideBackend, Slak51SummedWithBias) {
  checkSizes({kSlak51, false, true}, schedule(8, 4, 7), kMixedSizes, 100);
}

TEST(HalideBackend, Slak51PerBranchOutputs) {
  checkSizes({kSlak51, true, false}, schedule(8, 4, 2), kMixedSizes, 200);
}

TEST(HalideBackend, Slak13SummedUntransposed) {
  // Wide branches on untransposed planes, 512-bit vectors.
  checkSizes({kSlak13, false, true}, schedule(16, 3, 2, /*transposeWide=*/false), kMixedSizes, 300);
}

TEST(HalideBackend, Slak13PerBranchUnmerged) {
  checkSizes({kSlak13, true, false}, schedule(8, 7, 4, true, /*merge=*/false, 4, 4),
             {{3, 124, 14, 14, 1.0}, {1, 3, 17, 23, 0.1}, {3, 1, 7, 7, 0.0}, {1, 3, 1, 1, 0.6}},
             400);
}

TEST(HalideBackend, RepLkNet31Summed) {
  checkSizes({kRepLk31, false, true}, schedule(8, 2, 3, true, true, 12, 1),
             {{1, 3, 17, 23, 1.0}, {3, 1, 14, 14, 0.6}, {1, 124, 7, 7, 0.1}, {1, 3, 1, 1, 1.0}},
             500);
}

TEST(HalideBackend, RepLkNet31PerBranch) {
  checkSizes({kRepLk31, true, false}, schedule(4, 5, 5, true, true, 3, 3),
             {{1, 3, 14, 14, 1.0}, {3, 3, 17, 23, 0.6}, {1, 1, 7, 7, 0.0}}, 600);
}

TEST(HalideBackend, ConvNeXt7SummedDenseWeightGrad) {
  checkSizes(
      {kConvNeXt7, false, true, /*denseWeightGrad=*/true}, schedule(8, 8, 1, true, true, 8, 1),
      {{3, 124, 14, 14, 0.6}, {1, 3, 17, 23, 1.0}, {3, 3, 1, 1, 0.1}, {1, 249, 7, 7, 0.0}}, 700);
}

TEST(HalideBackend, ValidPaddingBranches) {
  // Not "same": 5x3 with padding 1x0 and 3x3 without padding both shrink a
  // HxW image to (H-2)x(W-2).
  const std::vector<Kernel> kernels = {{5, 3, 1, 0}, {3, 3, 0, 0}};
  checkSizes({kernels, false, true}, schedule(8, 4, 2),
             {{1, 3, 7, 7, 1.0}, {3, 3, 17, 23, 0.6}, {1, 1, 3, 3, 1.0}}, 800);
  checkSizes({kernels, true, false}, schedule(8, 4, 2), {{1, 3, 7, 9, 0.6}, {3, 1, 17, 23, 1.0}},
             810);
}

TEST(HalideBackend, ScheduleSweepGivesTheSameResults) {
  const Layer layer{kSlak13, false, true};
  CpuSchedule unaligned = schedule(8, 1, 7, true, true, 2, 2);
  unaligned.alignLoads = false; // one plane copy, unaligned loads
  for (const CpuSchedule &s :
       {schedule(4, 1, 1, true, false, 1, 1), schedule(16, 2, 2, true, true, 16, 3),
        schedule(8, 8, 3, false, false, 5, 7), unaligned})
    checkSizes(layer, s, {{3, 3, 17, 23, 0.6}, {1, 124, 7, 7, 1.0}}, 900);
}

TEST(HalideBackend, TapBlocksGiveTheSameResults) {
  // Vertical tap blocks (dead rows of a block at weight 0): summed and per
  // branch, transposed and not, aligned and not, blocks taller than the tile.
  for (int block : {2, 3, 4}) {
    CpuSchedule a = schedule(8, 4, 2);
    a.tapBlock = block;
    CpuSchedule b = schedule(16, 2, 1, /*transposeWide=*/false, /*merge=*/false, 4, 2);
    b.tapBlock = block;
    b.alignLoads = false;
    checkSizes({kSlak51, false, true}, a, {{1, 3, 17, 23, 0.6}, {2, 5, 14, 14, 1.0}}, 1300 + block);
    checkSizes({kSlak13, true, false}, b,
               {{1, 3, 17, 23, 0.3}, {3, 2, 7, 7, 1.0}, {1, 1, 1, 1, 0.6}}, 1310 + block);
    checkSizes({kRepLk31, false, true}, a, {{1, 4, 14, 14, 0.1}}, 1320 + block);
  }
}

TEST(HalideBackend, DefaultScheduleOnSlakStages) {
  // The default schedule picks the tile from the image: run the SLaK-T stage
  // 3 and 4 geometries (C reduced to keep the oracle quick), once with the
  // schedule given, once chosen per call size by a schedule-less CpuLkConv.
  for (auto [m, hw] : {std::pair<int, int>{47, 14}, {13, 7}}) {
    const Layer layer{{{m, 5, -1, -1}, {5, m, -1, -1}, {5, 5, -1, -1}}, false, true};
    for (double density : {1.0, 0.6}) {
      KernelSpec spec = makeSpec(layer, 16, density < 1.0);
      CpuLkConv given(spec, defaultCpuSchedule(spec, hw, hw));
      checkAgainstOracle(given, layer, {2, 16, hw, hw, density}, 1000 + m);
      CpuLkConv chosen(spec);
      EXPECT_EQ(chosen.scheduleFor(hw, hw).str(), given.schedule().str());
      checkAgainstOracle(chosen, layer, {1, 16, hw, hw, density}, 1100 + m);
    }
  }
}

TEST(HalideBackend, ThreadCountDoesNotChangeResults) {
  const Layer layer{kSlak13, false, true};
  KernelSpec spec = makeSpec(layer, 5, true);
  CpuLkConv conv(spec, schedule(8, 4, 2));
  checkAgainstOracle(conv, layer, {2, 5, 14, 14, 0.6}, 1100, /*threads=*/1);
  std::mt19937 rng(1101);
  const Shape shape{2, 5, 14, 14};
  std::vector<float> x = reference::uniform(rng, shape.numel());
  const reference::Weights w = reference::randomWeights(rng, spec.branches, 5);
  std::vector<const float *> wp;
  for (auto &v : w)
    wp.push_back(v.data());
  std::vector<float> bias = reference::uniform(rng, 5);
  std::vector<float> one(shape.numel()), two(shape.numel());
  conv.forward(shape, x.data(), wp, bias.data(), {one.data()}, 1);
  conv.forward(shape, x.data(), wp, bias.data(), {two.data()}, 2);
  EXPECT_EQ(one, two) << "each plane is summed in the same order whatever the thread count";
}

// A conv keeps the tap weights it gathered while the weights stay the same;
// weights changed in place (an optimizer step: same pointers) are gathered
// again, forward and backward-data, in both pipeline families.
TEST(HalideBackend, WeightsChangedInPlaceAreGatheredAgain) {
  const Layer layer{kSlak13, false, true};
  for (bool channelsLastSchedule : {false, true}) {
    SCOPED_TRACE(channelsLastSchedule ? "channels-last" : "NCHW");
    const int64_t C = channelsLastSchedule ? 40 : 5;
    KernelSpec spec = makeSpec(layer, C, false);
    CpuSchedule sched = schedule(8, 2, 2);
    sched.channelsLast = channelsLastSchedule;
    CpuLkConv conv(spec, sched);
    std::mt19937 rng(1150);
    const Shape shape{2, C, 9, 9};
    const reference::Shape refShape{2, C, 9, 9};
    std::vector<float> x = reference::uniform(rng, shape.numel());
    std::vector<float> dy = reference::uniform(rng, shape.numel());
    std::vector<float> bias = reference::uniform(rng, C);
    reference::Weights w = reference::randomWeights(rng, spec.branches, C);
    std::vector<const float *> wp;
    for (auto &v : w)
      wp.push_back(v.data());
    std::vector<float> y(shape.numel()), dx(shape.numel());
    for (int step = 0; step < 3; ++step) {
      if (step == 2) // an update after a repeated call with the same weights
        for (auto &v : w)
          for (float &value : v)
            value = 0.5f * value - 0.25f;
      conv.forward(shape, x.data(), wp, bias.data(), {y.data()}, 2);
      conv.backwardData(shape, {dy.data()}, wp, dx.data(), 2);
      reference::expectNear(y, reference::forward(spec, refShape, x, w, {}, bias)[0],
                            "forward, call " + std::to_string(step));
      reference::expectNear(dx, reference::backwardData(spec, refShape, {dy}, w, {}),
                            "backward-data, call " + std::to_string(step));
    }
  }
}

TEST(HalideBackend, PipelinesAreReusedAcrossShapes) {
  const Layer layer{kConvNeXt7, false, false};
  const CpuSchedule s = schedule(8, 3, 3);
  checkSizes(layer, s, {{1, 2, 9, 9, 1.0}}, 1200);
  const int before = compiledPipelineCount();
  checkSizes(layer, s, {{2, 3, 12, 5, 1.0}, {1, 7, 30, 2, 1.0}}, 1201);
  EXPECT_EQ(compiledPipelineCount(), before) << "new sizes and channel counts must not recompile";
}

// --- Channels-last: vectorised across channels -------------------------------

const std::vector<Kernel> kSlak47 = {{47, 5, -1, -1}, {5, 47, -1, -1}, {5, 5, -1, -1}};

CpuSchedule channelsLast(int vec, int rows, int pixels, int tapBlock, int wtaps = 8, int wvec = 4) {
  CpuSchedule s = schedule(vec, rows, pixels, true, true, wtaps, wvec);
  s.channelsLast = true;
  s.tapBlock = tapBlock;
  return s;
}

// SLaK-T stage 3 and 4 geometries with their channel counts (499, 998: not
// multiples of 16), the other stages' counts on small images, odd sizes,
// batch 1 to 3, densities 1, 0.6, 0.1 and 0.
const std::vector<Size> kChannelsLastSizes = {
    {2, 499, 14, 14, 1.0}, {1, 998, 7, 7, 0.6}, {2, 124, 14, 14, 0.6}, {1, 249, 7, 7, 1.0},
    {3, 3, 17, 23, 0.6},   {1, 17, 1, 1, 1.0},  {1, 33, 14, 14, 0.1},  {2, 16, 7, 9, 0.0},
};

TEST(HalideChannelsLast, Slak47SummedWithBias) {
  checkSizes({kSlak47, false, true}, channelsLast(16, 2, 7, 4), kChannelsLastSizes, 2000);
}

TEST(HalideChannelsLast, Slak13PerBranchOutputs) {
  checkSizes({kSlak13, true, false}, channelsLast(16, 4, 7, 1, 4, 7), kChannelsLastSizes, 2100);
}

TEST(HalideChannelsLast, Slak13SummedUntransposedUnmerged) {
  CpuSchedule s = channelsLast(8, 3, 5, 3, 12, 2);
  s.transposeWide = false;
  s.mergeTaps = false;
  checkSizes({kSlak13, false, true}, s, kChannelsLastSizes, 2200);
}

TEST(HalideChannelsLast, RepLkNetAndConvNeXtDenseWeightGrad) {
  checkSizes({kRepLk31, false, true, /*denseWeightGrad=*/true}, channelsLast(16, 1, 14, 2),
             {{1, 499, 14, 14, 0.6}, {2, 20, 7, 7, 1.0}, {1, 3, 17, 23, 0.1}}, 2300);
  checkSizes({kConvNeXt7, true, false}, channelsLast(4, 2, 3, 1, 1, 1),
             {{2, 249, 7, 7, 0.6}, {1, 5, 17, 23, 1.0}}, 2310);
}

TEST(HalideChannelsLast, ValidPaddingBranches) {
  const std::vector<Kernel> kernels = {{5, 3, 1, 0}, {3, 3, 0, 0}};
  checkSizes({kernels, false, true}, channelsLast(16, 2, 4, 2),
             {{1, 40, 7, 7, 1.0}, {3, 3, 17, 23, 0.6}, {1, 1, 3, 3, 1.0}}, 2400);
}

TEST(HalideChannelsLast, DefaultPicksChannelsForSmallImagesWithManyChannels) {
  const Layer stage3{kSlak47, false, true}, stage1{kSlak51, false, true};
  EXPECT_TRUE(defaultCpuSchedule(makeSpec(stage3, 499, false), 14, 14).channelsLast);
  EXPECT_TRUE(defaultCpuSchedule(makeSpec({kSlak13, false, true}, 998, false), 7, 7).channelsLast);
  EXPECT_TRUE(defaultCpuSchedule(makeSpec(stage1, 124, false), 56, 56).channelsLast);
  EXPECT_FALSE(defaultCpuSchedule(makeSpec(stage1, 124, false), 112, 112).channelsLast)
      << "rows of 64 pixels and more fill width vectors";
  // Hosts without AVX-512: 8 lanes, one row of 7 accumulators (16 registers).
  const CpuSchedule avx512 = defaultCpuSchedule(makeSpec(stage3, 499, false), 14, 14, 16);
  const CpuSchedule avx2 = defaultCpuSchedule(makeSpec(stage3, 499, false), 14, 14, 8);
  EXPECT_EQ(avx512.vectorWidth, 16);
  EXPECT_EQ(avx512.tileRows * avx512.tileVectors, 14);
  EXPECT_TRUE(avx2.channelsLast);
  EXPECT_EQ(avx2.vectorWidth, 8);
  EXPECT_EQ(avx2.tileRows * avx2.tileVectors, 7);
  EXPECT_EQ(avx2.validate(), "");
  EXPECT_FALSE(defaultCpuSchedule(makeSpec(stage3, 4, false), 14, 14).channelsLast)
      << "four channels fill a quarter of a 16-lane vector";
  // Backward-weight blocks are runs of one tap row: 5 taps for M x 5 + 5 x M
  // + 5 x 5 (the wide branch on a transposed plane), strips of 8 pixels on
  // 56-pixel rows and of 7 on 14-pixel rows (no padding either way).
  const CpuSchedule s1 = defaultCpuSchedule(makeSpec(stage1, 124, false), 56, 56);
  EXPECT_EQ(s1.weightTaps, 5);
  EXPECT_EQ(s1.weightVectors, 8);
  EXPECT_EQ(avx512.weightTaps, 5);
  EXPECT_EQ(avx512.weightVectors, 7);
  // A schedule-less CpuLkConv takes it per call size, NHWC memory included.
  KernelSpec spec = makeSpec(stage3, 499, true);
  CpuLkConv chosen(spec);
  EXPECT_TRUE(chosen.scheduleFor(14, 14).channelsLast);
  checkAgainstOracle(chosen, stage3, {1, 499, 14, 14, 0.6}, 2500, 2, /*nhwc=*/true);
}

TEST(HalideChannelsLast, NhwcNeedsAChannelsLastSchedule) {
  KernelSpec spec = makeSpec({kConvNeXt7, false, false}, 4, false);
  CpuLkConv conv(spec, schedule(8, 2, 1));
  std::vector<float> x(4 * 8 * 8), y(x.size()), w(4 * 49);
  try {
    conv.forward({1, 4, 8, 8, /*channelsLast=*/true}, x.data(), {w.data()}, nullptr, {y.data()});
    FAIL() << "NHWC memory with a width-vectorised schedule must be refused";
  } catch (const std::invalid_argument &e) {
    EXPECT_NE(std::string(e.what()).find("NHWC tensors need a channels-last schedule"),
              std::string::npos)
        << e.what();
  }
}

TEST(TapPlan, ChannelBlocksShareTheUnionOfTheirTaps) {
  KernelSpec spec = makeSpec({kConvNeXt7, false, false}, 3, true);
  std::vector<BranchMask> masks(1, BranchMask(3 * 49, 0));
  masks[0][0 * 49 + 24] = 1;                        // channel 0: centre
  masks[0][2 * 49 + 0] = masks[0][2 * 49 + 24] = 1; // channel 2: corner and centre
  TapTable table = buildTapTable(spec, masks);
  CpuSchedule s;
  s.channelsLast = true;
  s.vectorWidth = 4;
  TapPlan plan = planTaps(spec, s, Pass::Forward, &table, 10, 10);
  EXPECT_EQ(plan.channelBlock, 4);
  ASSERT_EQ(plan.groups.size(), 1u);
  const TapGroup &g = plan.groups[0];
  // One block of three channels: the union {(-3, -3), (0, 0)}.
  EXPECT_EQ(g.channelBegin, (std::vector<int32_t>{0, 2}));
  EXPECT_EQ(g.du, (std::vector<int32_t>{-3, 0}));
  EXPECT_EQ(g.dv, (std::vector<int32_t>{-3, 0}));
  // Sources: corner of channel 2 (lane 2), centres of channels 0 and 2.
  EXPECT_EQ(g.sourceTap, (std::vector<int32_t>{0, 1, 1}));
  EXPECT_EQ(g.sourceLane, (std::vector<int16_t>{2, 0, 2}));
  EXPECT_EQ(g.sourceIndex, (std::vector<int32_t>{2 * 49 + 0, 24, 2 * 49 + 24}));
}

// --- Errors -----------------------------------------------------------------

template <typename F> std::string errorOf(F &&f) {
  try {
    f();
  } catch (const std::invalid_argument &e) {
    return e.what();
  }
  return "no error";
}

TEST(HalideBackendErrors, RejectsWhatItCannotRun) {
  KernelSpec spec = makeSpec({kConvNeXt7, false, false}, 4, false);
  spec.elementType = ElementType::F16;
  EXPECT_NE(errorOf([&] { CpuLkConv(spec, CpuSchedule{}); }).find("element type f16"),
            std::string::npos);
  CpuSchedule bad;
  bad.vectorWidth = 5;
  spec.elementType = ElementType::F32;
  EXPECT_NE(errorOf([&] { CpuLkConv(spec, bad); }).find("vectorWidth is 5"), std::string::npos);
}

TEST(HalideBackendErrors, NamesBadArguments) {
  KernelSpec spec = makeSpec({kSlak13, false, false}, 4, /*sparse=*/true);
  CpuLkConv conv(spec, CpuSchedule{});
  std::vector<float> x(4 * 8 * 8), y(x.size()), w(4 * 65), w5(4 * 25);
  const Shape shape{1, 4, 8, 8};
  EXPECT_NE(errorOf([&] {
              conv.forward(shape, x.data(), {w.data(), w.data(), w5.data()}, nullptr, {y.data()});
            }).find("sparse branches but no tap table"),
            std::string::npos);
  EXPECT_NE(errorOf([&] {
              conv.forward(shape, x.data(), {w.data()}, nullptr, {y.data()});
            }).find("got 1 weights, expected 3"),
            std::string::npos);
  EXPECT_NE(
      errorOf([&] {
        conv.forward({1, 5, 8, 8}, x.data(), {w.data(), w.data(), w5.data()}, nullptr, {y.data()});
      }).find("input has 5 channels, expected 4"),
      std::string::npos);
  KernelSpec other = makeSpec({kSlak51, false, false}, 4, true);
  EXPECT_NE(errorOf([&] {
              conv.setTaps(buildTapTable(other, {{}, {}, {}}));
              conv.prepare(Pass::Forward, 8, 8);
            }).find("lies outside its 13x5 window"),
            std::string::npos);
}

// --- Tap planning -----------------------------------------------------------

TEST(TapPlan, SlakGroupsMergeAndTrim) {
  KernelSpec spec = makeSpec({kSlak51, false, false}, 2, false);
  const CpuSchedule s = schedule(8, 4, 7);
  TapPlan plan = planTaps(spec, s, Pass::Forward, nullptr, 56, 56);
  ASSERT_EQ(plan.groups.size(), 2u);
  EXPECT_TRUE(plan.groups[0].transposed);
  EXPECT_EQ(plan.groups[0].branches, std::vector<int>{1});
  EXPECT_EQ(plan.groups[1].branches, (std::vector<int>{0, 2}));
  // 51x5 and 5x5 merged: 255 distinct offsets per channel, 280 sources.
  EXPECT_EQ(plan.groups[1].numTaps(), 2 * 255);
  EXPECT_EQ(plan.groups[1].sourceTap.size(), 2u * 280);
  // The transposed 5x51 runs along rows: du in [-25, 25], dv in [-2, 2].
  EXPECT_EQ(plan.groups[0].duMin, -25);
  EXPECT_EQ(plan.groups[0].dvMax, 2);
  // On a 7x7 image only |du| <= 6 can reach the image: 13 of 51 rows.
  TapPlan small = planTaps(spec, s, Pass::Forward, nullptr, 7, 7);
  EXPECT_EQ(small.groups[0].numTaps(), 2 * 13 * 5);
  // Without merging and with per-branch inputs, one group per branch.
  spec.perBranchOutputs = true;
  TapPlan split = planTaps(spec, s, Pass::BackwardData, nullptr, 56, 56);
  ASSERT_EQ(split.groups.size(), 3u);
  EXPECT_EQ(split.numSlots, 3);
  EXPECT_EQ(split.groups[0].slot, 1); // the transposed 5x51 first
}

TEST(TapPlan, MaskedTapsAreAbsent) {
  KernelSpec spec = makeSpec({kConvNeXt7, false, false}, 3, true);
  std::vector<BranchMask> masks(1, BranchMask(3 * 49, 0));
  masks[0][0 * 49 + 24] = 1;                        // channel 0: centre
  masks[0][2 * 49 + 0] = masks[0][2 * 49 + 48] = 1; // channel 2: two corners
  TapTable table = buildTapTable(spec, masks);
  TapPlan plan = planTaps(spec, CpuSchedule{}, Pass::BackwardData, &table, 10, 10);
  ASSERT_EQ(plan.groups.size(), 1u);
  const TapGroup &g = plan.groups[0];
  EXPECT_EQ(g.channelBegin, (std::vector<int32_t>{0, 1, 1, 3}));
  // Backward-data flips taps: the top-left corner (-3, -3) becomes (3, 3)
  // and sorts last.
  EXPECT_EQ(g.du, (std::vector<int32_t>{0, -3, 3}));
  EXPECT_EQ(g.dv, (std::vector<int32_t>{0, -3, 3}));
  EXPECT_EQ(g.sourceIndex, (std::vector<int32_t>{24, 2 * 49 + 48, 2 * 49 + 0}));
}

} // namespace
} // namespace slak::codegen::cpu

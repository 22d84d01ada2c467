#include "tests/codegen/CodegenCases.h"

#include "codegen/DefaultSchedule.h"

namespace slak::codegen::testing {
namespace {

enum class Family { Slak13, Slak31, Slak51, RepLk31, ConvNeXt7, ValidPad };

/// The branches of a layer family; `sparse` marks which walk a tap table.
std::vector<Branch> branchesOf(Family family, bool sparse, bool smallSparse = true) {
  switch (family) {
  case Family::Slak13:
  case Family::Slak31:
  case Family::Slak51: {
    const int m = family == Family::Slak13 ? 13 : family == Family::Slak31 ? 31 : 51;
    return {Branch::same(m, 5, !sparse), Branch::same(5, m, !sparse),
            Branch::same(5, 5, !(sparse && smallSparse))};
  }
  case Family::RepLk31:
    return {Branch::same(31, 31, !sparse), Branch::same(5, 5, !(sparse && smallSparse))};
  case Family::ConvNeXt7:
    return {Branch::same(7, 7, !sparse)};
  case Family::ValidPad: // no "same" padding: output (H-4) x (W-4)
    return {Branch{7, 7, 1, 1, !sparse}, Branch{5, 5, 0, 0, !(sparse && smallSparse)}};
  }
  return {};
}

struct CaseBuilder {
  CodegenCase c;
  bool customSchedule = false;
  double densityHint = -1.0; // for defaultSchedule
  CaseBuilder(std::string name, Family family, bool sparse, int64_t channels) {
    c.name = std::move(name);
    c.spec.branches = branchesOf(family, sparse);
    c.spec.channels = channels;
  }
  CaseBuilder &smallDense() {
    c.spec.branches.back().dense = true;
    return *this;
  }
  CaseBuilder &type(ElementType t) {
    c.spec.elementType = t;
    return *this;
  }
  CaseBuilder &perBranch() {
    c.spec.perBranchOutputs = true;
    return *this;
  }
  CaseBuilder &channelsLast() {
    c.spec.layout = DataLayout::NHWC;
    return *this;
  }
  CaseBuilder &bias() {
    c.spec.hasBias = true;
    return *this;
  }
  CaseBuilder &denseWeightGrad() {
    c.spec.denseWeightGrad = true;
    return *this;
  }
  CaseBuilder &size(int64_t h, int64_t w) { // static spatial size
    c.spec.height = h;
    c.spec.width = w;
    return *this;
  }
  CaseBuilder &defaultFor(double density) {
    densityHint = density;
    return *this;
  }
  CaseBuilder &schedule(const Schedule &s) {
    c.spec.schedule = s;
    customSchedule = true;
    return *this;
  }
  CaseBuilder &shapes(std::vector<ImageShape> s) {
    c.shapes = std::move(s);
    return *this;
  }
  CaseBuilder &densities(std::vector<double> d) {
    c.densities = std::move(d);
    return *this;
  }
  CodegenCase done() {
    if (!customSchedule) {
      c.spec.schedule = defaultSchedule(c.spec, densityHint);
      c.defaultSchedule = true;
    }
    return c;
  }
};

Schedule tiles(int tileH, int tileW, int blockH, int blockW) {
  Schedule s;
  s.tileH = tileH;
  s.tileW = tileW;
  s.blockH = blockH;
  s.blockW = blockW;
  return s;
}

Schedule weightSchedule(Schedule s, int threads, int split, int tileH, int tileW) {
  s.weightThreads = threads;
  s.weightSplit = split;
  s.weightTileH = tileH;
  s.weightTileW = tileW;
  return s;
}

} // namespace

std::vector<CodegenCase> codegenCases() {
  using F = Family;
  const ElementType f16 = ElementType::F16, bf16 = ElementType::BF16;
  // Non-default schedules: odd register blocks (3x3: a rotation tail), tiles
  // that divide nothing, 35-thread blocks, no staging, few/many threads and
  // splits in backward-weight.
  const Schedule r2c2 = tiles(8, 16, 4, 8);
  const Schedule r3c3 = weightSchedule(tiles(12, 24, 4, 8), 128, 3, 4, 8);
  const Schedule r8c1 = tiles(16, 32, 2, 32);
  const Schedule r1c1 = weightSchedule(tiles(5, 7, 5, 7), 64, 1, 3, 5);
  Schedule noStageInput = tiles(8, 32, 2, 32);
  noStageInput.stageInput = false;
  Schedule noStageTaps = tiles(8, 16, 2, 16);
  noStageTaps.stageTaps = false;
  Schedule noStaging = r2c2;
  noStaging.stageInput = noStaging.stageTaps = false;
  const Schedule thin = weightSchedule(tiles(4, 64, 1, 32), 32, 3, 4, 8);
  const Schedule wide = weightSchedule(tiles(32, 16, 16, 16), 1024, 2, 16, 16);
  Schedule maskedR3c3 = r3c3;
  maskedR3c3.maskedWalk = true;
  Schedule maskedNoStageTaps = noStageTaps; // falls back to the tap table
  maskedNoStageTaps.maskedWalk = true;

  const std::vector<double> all = {1.0, 0.6, 0.1, 0.0};
  std::vector<CodegenCase> cases;
  auto add = [&](CaseBuilder b) { cases.push_back(b.done()); };

  // SLaK M = 51 (stage 1).
  add(CaseBuilder("slak51_default_f32_sum_bias", F::Slak51, true, 3)
          .bias()
          .shapes({{1, 56, 56}, {3, 17, 23}, {1, 7, 7}})
          .densities(all));
  add(CaseBuilder("slak51_default_f32_branches_c124", F::Slak51, true, 124)
          .perBranch()
          .shapes({{3, 14, 14}, {1, 1, 1}})
          .densities({0.6, 0.0}));
  add(CaseBuilder("slak51_nostageinput_f32_sum_bias", F::Slak51, true, 3)
          .bias()
          .schedule(noStageInput)
          .shapes({{1, 17, 23}, {3, 7, 7}})
          .densities({0.6}));
  add(CaseBuilder("slak51_nostagetaps_f32_branches", F::Slak51, true, 3)
          .perBranch()
          .schedule(noStageTaps)
          .shapes({{1, 17, 23}})
          .densities({0.6, 0.0}));
  add(CaseBuilder("slak51_thin_f32_branches", F::Slak51, true, 3)
          .perBranch()
          .schedule(thin)
          .shapes({{1, 17, 23}, {3, 1, 1}})
          .densities({1.0, 0.1}));
  add(CaseBuilder("slak51_dense_default_bf16_sum_static", F::Slak51, false, 3)
          .type(bf16)
          .size(14, 14)
          .shapes({{3, 14, 14}})
          .densities({1.0}));
  add(CaseBuilder("slak51_masked_default_f32_branches", F::Slak51, true, 3)
          .perBranch()
          .defaultFor(0.6)
          .shapes({{1, 56, 56}, {3, 17, 23}})
          .densities(all));
  add(CaseBuilder("slak51_masked_nostagetaps_f16_sum", F::Slak51, true, 3)
          .type(f16)
          .schedule(maskedNoStageTaps)
          .shapes({{1, 17, 23}})
          .densities({0.6}));
  // SLaK M = 31 (and 13).
  add(CaseBuilder("slak31_default_f16_sum_static", F::Slak31, true, 3)
          .type(f16)
          .size(17, 23)
          .shapes({{3, 17, 23}})
          .densities({0.6, 1.0}));
  add(CaseBuilder("slak31_default_bf16_branches_c124", F::Slak31, true, 124)
          .type(bf16)
          .perBranch()
          .shapes({{1, 7, 7}, {1, 14, 14}})
          .densities({0.1}));
  add(CaseBuilder("slak31_denseweightgrad_f32_sum", F::Slak31, true, 3)
          .denseWeightGrad()
          .shapes({{3, 14, 14}, {1, 17, 23}})
          .densities({0.6, 0.0}));
  add(CaseBuilder("slak31_r8c1_f32_sum_smalldense", F::Slak31, true, 1)
          .smallDense()
          .schedule(r8c1)
          .shapes({{1, 56, 56}, {3, 7, 7}})
          .densities({0.6}));
  add(CaseBuilder("slak13_default_f32_sum_bias_static", F::Slak13, true, 1)
          .bias()
          .size(56, 56)
          .shapes({{3, 56, 56}})
          .densities({1.0, 0.6}));
  add(CaseBuilder("slak13_r3c3_f32_branches", F::Slak13, true, 3)
          .perBranch()
          .schedule(r3c3)
          .shapes({{1, 17, 23}, {3, 7, 7}, {1, 1, 1}})
          .densities({0.6, 0.1}));
  add(CaseBuilder("slak13_nostaging_f16_sum", F::Slak13, true, 3)
          .type(f16)
          .schedule(noStaging)
          .shapes({{1, 14, 14}})
          .densities({0.6, 1.0}));
  add(CaseBuilder("slak13_wide_bf16_sum_c124", F::Slak13, true, 124)
          .type(bf16)
          .schedule(wide)
          .shapes({{1, 14, 14}, {3, 7, 7}})
          .densities({0.6}));
  add(CaseBuilder("slak13_dense_r2c2_f32_branches", F::Slak13, false, 3)
          .perBranch()
          .schedule(r2c2)
          .shapes({{1, 17, 23}, {1, 56, 56}})
          .densities({1.0}));
  add(CaseBuilder("slak13_masked_r3c3_bf16_branches", F::Slak13, true, 3)
          .type(bf16)
          .perBranch()
          .schedule(maskedR3c3)
          .shapes({{3, 17, 23}, {1, 7, 7}})
          .densities({0.6, 0.0}));
  // RepLKNet 31x31 + 5x5.
  add(CaseBuilder("replk31_dense_default_f32_sum_bias", F::RepLk31, false, 3)
          .bias()
          .shapes({{1, 56, 56}, {3, 14, 14}, {1, 1, 1}})
          .densities({1.0}));
  add(CaseBuilder("replk31_r8c1_f32_branches", F::RepLk31, true, 1)
          .perBranch()
          .schedule(r8c1)
          .shapes({{3, 17, 23}, {1, 7, 7}})
          .densities({0.6, 0.0}));
  add(CaseBuilder("replk31_default_f16_branches_c124_static", F::RepLk31, true, 124)
          .type(f16)
          .perBranch()
          .size(7, 7)
          .shapes({{3, 7, 7}})
          .densities({0.6}));
  add(CaseBuilder("replk31_masked_default_f16_sum_bias", F::RepLk31, true, 3)
          .type(f16)
          .bias()
          .defaultFor(0.6)
          .shapes({{1, 56, 56}, {3, 14, 14}})
          .densities({0.6, 0.1}));
  // ConvNeXt 7x7.
  add(CaseBuilder("convnext7_dense_default_f32_sum_bias_c124", F::ConvNeXt7, false, 124)
          .bias()
          .shapes({{3, 14, 14}, {1, 56, 56}, {1, 1, 1}})
          .densities({1.0}));
  add(CaseBuilder("convnext7_r2c2_bf16_sum", F::ConvNeXt7, true, 3)
          .type(bf16)
          .schedule(r2c2)
          .shapes({{3, 17, 23}, {1, 56, 56}})
          .densities({0.1, 1.0}));
  add(CaseBuilder("convnext7_r1c1_f32_branches", F::ConvNeXt7, true, 3)
          .perBranch()
          .schedule(r1c1)
          .shapes({{1, 17, 23}, {3, 7, 7}, {1, 1, 1}})
          .densities({0.6, 0.0}));
  add(CaseBuilder("convnext7_default_f32_sum_c249", F::ConvNeXt7, true, 249)
          .shapes({{1, 7, 7}})
          .densities({0.6}));
  // Padding other than "same": the output is (H-4) x (W-4).
  add(CaseBuilder("validpad_default_f32_sum_bias", F::ValidPad, true, 3)
          .bias()
          .shapes({{1, 17, 23}, {3, 7, 7}})
          .densities({0.6, 1.0}));
  // Channels-last (NHWC): channel lanes from 4 (3 channels) to 32 (124 and
  // 249), dense, tap table and masked walks, staged or not, blocked and
  // tap-table backward-weight, summed and per-branch outputs, bias.
  add(CaseBuilder("nhwc_slak51_default_f32_sum_bias", F::Slak51, true, 3)
          .channelsLast()
          .bias()
          .shapes({{1, 56, 56}, {3, 17, 23}, {1, 1, 1}})
          .densities(all));
  add(CaseBuilder("nhwc_slak51_default_f32_branches_c124", F::Slak51, true, 124)
          .channelsLast()
          .perBranch()
          .shapes({{3, 14, 14}, {1, 7, 7}})
          .densities({0.6, 0.0}));
  add(CaseBuilder("nhwc_slak51_masked_default_f32_branches", F::Slak51, true, 3)
          .channelsLast()
          .perBranch()
          .defaultFor(0.6)
          .shapes({{3, 17, 23}})
          .densities({1.0, 0.6, 0.0}));
  add(CaseBuilder("nhwc_slak31_nostageinput_f16_sum_bias", F::Slak31, true, 3)
          .channelsLast()
          .type(f16)
          .bias()
          .schedule(noStageInput)
          .shapes({{1, 17, 23}, {3, 7, 7}})
          .densities({0.6}));
  add(CaseBuilder("nhwc_slak13_nostagetaps_f32_branches", F::Slak13, true, 3)
          .channelsLast()
          .perBranch()
          .schedule(noStageTaps)
          .shapes({{1, 17, 23}})
          .densities({0.6, 0.0}));
  add(CaseBuilder("nhwc_slak13_nostaging_bf16_sum_c124", F::Slak13, true, 124)
          .channelsLast()
          .type(bf16)
          .schedule(noStaging)
          .shapes({{1, 14, 14}})
          .densities({0.6, 1.0}));
  add(CaseBuilder("nhwc_slak13_masked_r3c3_f32_branches", F::Slak13, true, 3)
          .channelsLast()
          .perBranch()
          .schedule(maskedR3c3)
          .shapes({{3, 17, 23}, {1, 7, 7}})
          .densities({0.6, 0.0}));
  add(CaseBuilder("nhwc_slak31_denseweightgrad_f32_sum_static", F::Slak31, true, 3)
          .channelsLast()
          .denseWeightGrad()
          .size(14, 14)
          .shapes({{3, 14, 14}})
          .densities({0.6}));
  add(CaseBuilder("nhwc_replk31_dense_default_bf16_sum_bias", F::RepLk31, false, 3)
          .channelsLast()
          .type(bf16)
          .bias()
          .shapes({{1, 56, 56}, {3, 14, 14}})
          .densities({1.0}));
  add(CaseBuilder("nhwc_replk31_r8c1_f32_branches", F::RepLk31, true, 1)
          .channelsLast()
          .perBranch()
          .schedule(r8c1)
          .shapes({{3, 17, 23}})
          .densities({0.6, 0.0}));
  add(CaseBuilder("nhwc_convnext7_r2c2_f16_sum_c249", F::ConvNeXt7, true, 249)
          .channelsLast()
          .type(f16)
          .schedule(r2c2)
          .shapes({{1, 7, 7}, {1, 17, 23}})
          .densities({0.1, 1.0}));
  add(CaseBuilder("nhwc_convnext7_r1c1_f32_branches", F::ConvNeXt7, true, 3)
          .channelsLast()
          .perBranch()
          .schedule(r1c1)
          .shapes({{1, 17, 23}, {3, 7, 7}})
          .densities({0.6, 0.0}));
  add(CaseBuilder("nhwc_validpad_wide_f32_sum_bias_c124", F::ValidPad, true, 124)
          .channelsLast()
          .bias()
          .schedule(wide)
          .shapes({{1, 17, 23}, {3, 7, 7}})
          .densities({0.6, 1.0}));
  return cases;
}

std::vector<CodegenCase> modelLayerCases() {
  std::vector<CodegenCase> cases;
  auto add = [&](const std::string &name, int64_t channels, int64_t size,
                 std::vector<Branch> branches, ElementType type, bool perBranch, bool bias,
                 bool dynamic, double density = -1.0, DataLayout layout = DataLayout::NCHW) {
    CodegenCase c;
    c.name = name + "_c" + std::to_string(channels) + "_" + elementTypeName(type) +
             (perBranch ? "_branches" : "_sum") + (dynamic ? "_dynamic" : "") +
             (layout == DataLayout::NHWC ? "_nhwc" : "");
    KernelSpec &s = c.spec;
    s.layout = layout;
    s.channels = channels;
    s.height = s.width = dynamic ? -1 : size;
    s.branches = std::move(branches);
    s.elementType = type;
    s.perBranchOutputs = perBranch;
    s.hasBias = bias;
    s.schedule = defaultSchedule(s, density);
    c.defaultSchedule = true;
    c.shapes = {{1, size, size}};
    c.densities = {0.6};
    cases.push_back(c);
  };
  const ElementType f32 = ElementType::F32, f16 = ElementType::F16, bf16 = ElementType::BF16;
  struct Stage {
    int64_t channels, size;
    int kernel;
  };
  // SLaK-T (and the odd SLaK-B width of stage 4).
  const Stage slak[] = {{124, 56, 51}, {249, 28, 49}, {499, 14, 47}, {998, 7, 13}, {1331, 7, 13}};
  for (const Stage &st : slak) {
    const int m = st.kernel;
    auto branches = [&](bool sparse) {
      return std::vector<Branch>{Branch::same(m, 5, !sparse), Branch::same(5, m, !sparse),
                                 Branch::same(5, 5, !sparse)};
    };
    const std::string name = "slak" + std::to_string(m);
    add(name + "_train", st.channels, st.size, branches(true), f32, true, false, false, 0.6);
    add(name + "_infer", st.channels, st.size, branches(true), f16, false, true, false);
    add(name + "_jit", st.channels, st.size, branches(true), bf16, true, false, true, 0.6);
    add(name + "_dense", st.channels, st.size, branches(false), f32, false, true, false);
    add(name + "_train", st.channels, st.size, branches(true), f32, true, false, false, 0.6,
        DataLayout::NHWC);
    add(name + "_infer", st.channels, st.size, branches(true), f16, false, true, false, -1.0,
        DataLayout::NHWC);
    add(name + "_dense", st.channels, st.size, branches(false), f32, false, true, false, -1.0,
        DataLayout::NHWC);
  }
  // RepLKNet-31B.
  const Stage replk[] = {{128, 56, 31}, {256, 28, 29}, {512, 14, 27}, {1024, 7, 13}};
  for (const Stage &st : replk) {
    const std::string name = "replk" + std::to_string(st.kernel);
    add(name + "_dense", st.channels, st.size,
        {Branch::same(st.kernel, st.kernel), Branch::same(5, 5)}, f32, false, true, false);
    add(name + "_sparse", st.channels, st.size,
        {Branch::same(st.kernel, st.kernel, false), Branch::same(5, 5, false)}, f16, true, false,
        false);
  }
  // ConvNeXt-T.
  const Stage convnext[] = {{96, 56, 7}, {192, 28, 7}, {384, 14, 7}, {768, 7, 7}};
  for (const Stage &st : convnext) {
    add("convnext7", st.channels, st.size, {Branch::same(7, 7)}, f32, false, true, false);
    add("convnext7", st.channels, st.size, {Branch::same(7, 7)}, bf16, false, true, true);
    add("convnext7", st.channels, st.size, {Branch::same(7, 7)}, f32, false, true, false, -1.0,
        DataLayout::NHWC);
  }
  return cases;
}

void PrintTo(const CodegenCase &c, std::ostream *os) { *os << c.name; }

} // namespace slak::codegen::testing

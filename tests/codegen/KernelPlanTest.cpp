// The kernel plan against what the emitted kernels declare, over the codegen
// case matrix and the model layers: each kernel's shared arrays add up to the
// plan's bytes, the staged tiles reach exactly the plan's halo, and that halo
// is the union of the branches' windows. Also: defaultSchedule, which asks
// the plan whether a schedule fits, picks what it picked when it emitted
// whole kernels to find out (values recorded from that implementation).
#include <gtest/gtest.h>

#include <regex>
#include <string>
#include <vector>

#include "codegen/DefaultSchedule.h"
#include "codegen/KernelEmitter.h"
#include "codegen/KernelPlan.h"
#include "tests/codegen/CodegenCases.h"

namespace slak::codegen {
namespace {

using testing::CodegenCase;

std::vector<CodegenCase> allCases() {
  std::vector<CodegenCase> cases = testing::codegenCases();
  for (CodegenCase &c : testing::modelLayerCases())
    cases.push_back(std::move(c));
  return cases;
}

/// The text of each entry point, from its launch bounds to the next one's.
std::vector<std::string> kernelTexts(const EmittedKernels &k) {
  std::vector<std::string> texts;
  size_t at = k.body.find("SLAK_KERNEL(");
  while (at != std::string::npos) {
    const size_t next = k.body.find("SLAK_KERNEL(", at + 1);
    texts.push_back(k.body.substr(at, next == std::string::npos ? std::string::npos : next - at));
    at = next;
  }
  return texts;
}

int64_t declaredSharedBytes(const std::string &text) {
  static const std::regex decl(R"(SLAK_SHARED (float|int) \w+\[(\d+)\];)");
  int64_t bytes = 0;
  for (std::sregex_iterator it(text.begin(), text.end(), decl), end; it != end; ++it)
    bytes += 4 * std::stoll((*it)[2].str());
  return bytes;
}

/// The union window of `branches` around an output, padding as the pass
/// sees it (backward-data flips each window).
Halo unionWindow(const KernelSpec &spec, const std::vector<int> &branches, bool flipped) {
  Halo h;
  for (int b : branches) {
    const Branch &br = spec.branches[b];
    const int ph = flipped ? br.kernelH - 1 - br.padH : br.padH;
    const int pw = flipped ? br.kernelW - 1 - br.padW : br.padW;
    h.minRow = std::min(h.minRow, -ph);
    h.maxRow = std::max(h.maxRow, br.kernelH - 1 - ph);
    h.minCol = std::min(h.minCol, -pw);
    h.maxCol = std::max(h.maxCol, br.kernelW - 1 - pw);
  }
  return h;
}

TEST(KernelPlan, SharedBytesAreWhatTheKernelsDeclare) {
  int checked = 0;
  for (const CodegenCase &c : allCases()) {
    const KernelPlan plan = planKernels(c.spec);
    ASSERT_EQ(plan.sharedMemoryError(), "") << c.name;
    const EmittedKernels k = emitKernels(c.spec);
    const std::vector<std::string> texts = kernelTexts(k);
    ASSERT_EQ(texts.size(), static_cast<size_t>(kNumKernelKinds)) << c.name;
    for (int i = 0; i < kNumKernelKinds; ++i) {
      const std::string label = c.name + " " + kernelKindName(static_cast<KernelKind>(i));
      ASSERT_NE(texts[i].find(k.names[i] + "("), std::string::npos) << label;
      EXPECT_EQ(plan.sharedBytes[i], declaredSharedBytes(texts[i])) << label;
      EXPECT_EQ(plan.sharedBytes[i], k.sharedBytes[i]) << label;
      EXPECT_EQ(plan.threads[i], k.threads[i]) << label;
      EXPECT_NE(texts[i].find("SLAK_KERNEL(" + std::to_string(plan.threads[i]) + ", " +
                              std::to_string(launchMinBlocks(plan.threads[i])) + ")"),
                std::string::npos)
          << label;
      ++checked;
    }
  }
  EXPECT_GT(checked, 100);
}

TEST(KernelPlan, ConvHaloIsWhatTheStagedTileReads) {
  static const std::regex rowsLoop(R"(for \(int r = ty; r < (\d+); r \+= \d+\))");
  static const std::regex rowStart(R"(const int iy = oy0 \+ \((-?\d+)\) \+ r;)");
  static const std::regex colsLoop(R"(for \(int q = tx; q < (\d+); q \+= \d+\))");
  static const std::regex colStart(R"(ox0 \+ \((-?\d+)\) \+ q,)");
  // NHWC stages [rows][cols][lanes] with the channel lane innermost.
  static const std::regex nhwcLoop(
      R"(for \(int e = tid; e < (\d+); e \+= \d+\) \{\n\s*const int l = e % (\d+);\n\s*const int rq = e / \d+;\n\s*const int r = rq / (\d+);\n\s*const int q = rq - r \* \d+;\n\s*xs\[e\] = c0 \+ l < \d+ \? \(\(oy0 \+ \((-?\d+)\) \+ r\) >= 0 && \(oy0 \+ \(-?\d+\) \+ r\) < \w+ && \(ox0 \+ \((-?\d+)\) \+ q\))");
  int checked = 0, checkedNhwc = 0;
  for (const CodegenCase &c : allCases()) {
    if (!c.spec.schedule.stageInput)
      continue;
    const KernelPlan plan = planKernels(c.spec);
    if (c.spec.channelsLast()) {
      const std::vector<std::string> texts = kernelTexts(emitKernels(c.spec));
      for (KernelKind kind : {KernelKind::Forward, KernelKind::BackwardData}) {
        const ConvPassPlan &pass = plan.pass(kind);
        const std::string &text = texts[static_cast<int>(kind)];
        const std::string label = c.name + " " + kernelKindName(kind);
        std::vector<std::smatch> loops;
        for (std::sregex_iterator it(text.begin(), text.end(), nhwcLoop), e; it != e; ++it)
          loops.push_back(*it);
        // One staged tile per branch, each with its own halo.
        ASSERT_EQ(loops.size(), c.spec.branches.size()) << label;
        ASSERT_EQ(pass.groups.size(), c.spec.branches.size()) << label;
        EXPECT_EQ(pass.lanes, convLanes(c.spec)) << label;
        EXPECT_EQ(pass.pixelCols * pass.lanes, c.spec.schedule.tileW) << label;
        for (size_t g = 0; g < loops.size(); ++g) {
          const InputGroup &group = pass.groups[g];
          const Halo want = unionWindow(c.spec, group.branches, kind == KernelKind::BackwardData);
          const int rows = c.spec.schedule.tileH + want.rows();
          const int cols = pass.pixelCols + want.cols();
          EXPECT_EQ(std::stoi(loops[g][1].str()), rows * cols * pass.lanes) << label;
          EXPECT_EQ(std::stoi(loops[g][2].str()), pass.lanes) << label;
          EXPECT_EQ(std::stoi(loops[g][3].str()), cols) << label;
          EXPECT_EQ(std::stoi(loops[g][4].str()), want.minRow) << label;
          EXPECT_EQ(std::stoi(loops[g][5].str()), want.minCol) << label;
          EXPECT_EQ(group.stride, cols * pass.lanes) << label;
          EXPECT_LE(rows * group.stride, pass.stagedInput) << label;
        }
        ++checkedNhwc;
      }
      continue;
    }
    const std::vector<std::string> texts = kernelTexts(emitKernels(c.spec));
    for (KernelKind kind : {KernelKind::Forward, KernelKind::BackwardData}) {
      const ConvPassPlan &pass = plan.pass(kind);
      const std::string &text = texts[static_cast<int>(kind)];
      const std::string label = c.name + " " + kernelKindName(kind);
      std::vector<std::smatch> rows, rowStarts, cols, colStarts;
      for (std::sregex_iterator it(text.begin(), text.end(), rowsLoop), e; it != e; ++it)
        rows.push_back(*it);
      for (std::sregex_iterator it(text.begin(), text.end(), rowStart), e; it != e; ++it)
        rowStarts.push_back(*it);
      for (std::sregex_iterator it(text.begin(), text.end(), colsLoop), e; it != e; ++it)
        cols.push_back(*it);
      for (std::sregex_iterator it(text.begin(), text.end(), colStart), e; it != e; ++it)
        colStarts.push_back(*it);
      // One staged tile per input: x once, or one dy per branch.
      ASSERT_EQ(rows.size(), pass.groups.size()) << label;
      ASSERT_EQ(rowStarts.size(), pass.groups.size()) << label;
      ASSERT_EQ(cols.size(), pass.groups.size()) << label;
      ASSERT_EQ(colStarts.size(), pass.groups.size()) << label;
      for (size_t g = 0; g < pass.groups.size(); ++g) {
        const InputGroup &group = pass.groups[g];
        const Halo want = unionWindow(c.spec, group.branches, kind == KernelKind::BackwardData);
        EXPECT_EQ(group.halo.minRow, want.minRow) << label;
        EXPECT_EQ(group.halo.maxRow, want.maxRow) << label;
        EXPECT_EQ(group.halo.minCol, want.minCol) << label;
        EXPECT_EQ(group.halo.maxCol, want.maxCol) << label;
        EXPECT_EQ(std::stoi(rows[g][1].str()), c.spec.schedule.tileH + want.rows()) << label;
        EXPECT_EQ(std::stoi(cols[g][1].str()), c.spec.schedule.tileW + want.cols()) << label;
        EXPECT_EQ(std::stoi(rowStarts[g][1].str()), want.minRow) << label;
        EXPECT_EQ(std::stoi(colStarts[g][1].str()), want.minCol) << label;
        EXPECT_EQ(group.rows, c.spec.schedule.tileH + want.rows()) << label;
        EXPECT_EQ(group.cols, c.spec.schedule.tileW + want.cols()) << label;
        EXPECT_GE(group.stride, group.cols) << label;
      }
      ++checked;
    }
  }
  EXPECT_GT(checked, 40);
  EXPECT_GT(checkedNhwc, 20);
}

TEST(KernelPlan, WeightGradHaloIsWhatTheStagedTileReads) {
  static const std::regex xLoad(
      R"(for \(int e = tid; e < (\d+); e \+= \d+\) \{\n\s*const int r = e / (\d+);\n\s*sm\[e\] = slak_ld2_\w+\(x, xb, i0 \+ \((-?\d+)\) \+ r, j0 \+ \((-?\d+)\) \+ e - r \* \d+, H, W\);)");
  int checked = 0;
  for (const CodegenCase &c : allCases()) {
    const Schedule &s = c.spec.schedule;
    const KernelPlan plan = planKernels(c.spec);
    const WeightGradPlan &wp = plan.weightGrad;
    const std::string text =
        kernelTexts(emitKernels(c.spec))[static_cast<int>(KernelKind::BackwardWeight)];
    std::smatch m;
    // NHWC reads x from global memory at the same halo, coalesced across
    // the channel lanes.
    const bool nhwc = c.spec.channelsLast();
    ASSERT_TRUE(nhwc || std::regex_search(text, m, xLoad)) << c.name;
    std::vector<int> all;
    bool blocked = true;
    for (size_t b = 0; b < c.spec.branches.size(); ++b) {
      all.push_back(static_cast<int>(b));
      blocked = blocked && (c.spec.branches[b].dense || c.spec.denseWeightGrad || s.maskedWalk);
    }
    const Halo want = unionWindow(c.spec, all, false);
    EXPECT_EQ(wp.blocked, blocked) << c.name;
    EXPECT_EQ(wp.halo.minRow, want.minRow) << c.name;
    EXPECT_EQ(wp.halo.minCol, want.minCol) << c.name;
    EXPECT_EQ(wp.halo.rows(), want.rows()) << c.name;
    EXPECT_EQ(wp.halo.cols(), want.cols()) << c.name;
    const int rows = s.weightTileH + want.rows() + (blocked ? s.weightRowsPerThread - 1 : 0);
    const int cols = s.weightTileW + want.cols();
    if (nhwc) {
      EXPECT_NE(text.find("slak_ld_" + std::string(elementTypeName(c.spec.elementType)) +
                          "(x, xb + ((slak_i64)(i0 + (" + std::to_string(want.minRow) + ") + "),
                std::string::npos)
          << c.name;
      EXPECT_NE(text.find("(j0 + (" + std::to_string(want.minCol) + ") + "), std::string::npos)
          << c.name;
      EXPECT_EQ(wp.channelLanes, weightLanes(c.spec)) << c.name;
      EXPECT_EQ(wp.channelThreads * wp.channelLanes, s.weightThreads) << c.name;
    } else {
      EXPECT_EQ(std::stoi(m[1].str()), rows * cols) << c.name;
      EXPECT_EQ(std::stoi(m[2].str()), cols) << c.name;
      EXPECT_EQ(std::stoi(m[3].str()), want.minRow) << c.name;
      EXPECT_EQ(std::stoi(m[4].str()), want.minCol) << c.name;
    }
    EXPECT_EQ(wp.tileRows, rows) << c.name;
    EXPECT_EQ(wp.tileCols, cols) << c.name;
    EXPECT_NE(text.find(blocked ? "SLAK_SHARED int boff[" : "SLAK_SHARED int toff["),
              std::string::npos)
        << c.name;
    ++checked;
  }
  EXPECT_GT(checked, 30);
}

TEST(KernelPlan, OverflowIsReportedNotThrown) {
  KernelSpec spec;
  spec.channels = 4;
  spec.height = spec.width = 56;
  spec.branches = {Branch::same(51, 5, false), Branch::same(5, 51, false)};
  spec.schedule.tileH = 64;
  spec.schedule.tileW = 64;
  spec.schedule.blockH = 8;
  const KernelPlan plan = planKernels(spec);
  EXPECT_FALSE(plan.convFits());
  EXPECT_TRUE(plan.weightGradFits());
  // (64 + 50) x (64 + 50) floats for the input tile alone.
  EXPECT_GT(plan.forward.sharedBytes, 4 * 114 * 114);
  EXPECT_NE(plan.sharedMemoryError().find("the forward kernel needs"), std::string::npos)
      << plan.sharedMemoryError();
  spec.schedule = Schedule{};
  spec.schedule.weightTileH = 64;
  spec.schedule.weightTileW = 64;
  const KernelPlan weight = planKernels(spec);
  EXPECT_TRUE(weight.convFits());
  EXPECT_FALSE(weight.weightGradFits());
  EXPECT_NE(weight.sharedMemoryError().find("weightTileH/weightTileW"), std::string::npos);
}

TEST(KernelPlan, RegisterBudgetFollowsTheLaunchBounds) {
  EXPECT_EQ(launchMinBlocks(128), 4);
  EXPECT_EQ(registerBudget(128), 128);
  EXPECT_EQ(launchMinBlocks(1024), 1);
  EXPECT_EQ(registerBudget(1024), 64);
  KernelSpec spec;
  spec.channels = 8;
  spec.branches = {Branch::same(7, 7)};
  spec.schedule.tileH = 16;
  spec.schedule.blockH = 4; // 4 x 1 outputs per thread, staged
  EXPECT_EQ(estimateRegisters(spec, KernelKind::Forward), 36 + 3 * 4);
}

// Recorded from defaultSchedule when it emitted the kernels and matched the
// text of their errors to decide which tile to shrink.
TEST(DefaultSchedule, ShrinksTheTilesTheSameWay) {
  struct Case {
    int window;
    int64_t size;
    bool perBranch;
    double density;
    const char *schedule;
  };
  const Case cases[] = {
      {51, 56, false, -1.0,
       "tile=32x64 block=4x32 stageInput=1 stageTaps=1 maskedWalk=0 weightSplit=9 "
       "weightThreads=256 weightTile=8x32 weightRows=5"},
      {81, 56, true, -1.0,
       "tile=1x32 block=1x32 stageInput=1 stageTaps=1 maskedWalk=0 weightSplit=9 "
       "weightThreads=256 weightTile=2x32 weightRows=5"},
      {81, 28, true, 0.6,
       "tile=16x32 block=4x32 stageInput=1 stageTaps=1 maskedWalk=1 weightSplit=9 "
       "weightThreads=256 weightTile=4x32 weightRows=5"},
      {91, 56, true, -1.0,
       "tile=1x16 block=1x16 stageInput=1 stageTaps=1 maskedWalk=0 weightSplit=9 "
       "weightThreads=256 weightTile=1x8 weightRows=5"},
      {91, 28, false, 0.6,
       "tile=2x32 block=2x32 stageInput=1 stageTaps=1 maskedWalk=1 weightSplit=9 "
       "weightThreads=256 weightTile=1x16 weightRows=5"},
      {91, 14, true, 0.6,
       "tile=16x16 block=2x16 stageInput=1 stageTaps=1 maskedWalk=1 weightSplit=9 "
       "weightThreads=256 weightTile=2x16 weightRows=5"},
  };
  for (const Case &c : cases) {
    KernelSpec spec;
    spec.channels = 124;
    spec.height = spec.width = c.size;
    spec.perBranchOutputs = c.perBranch;
    spec.branches = {Branch::same(c.window, 5, false), Branch::same(5, c.window, false),
                     Branch::same(5, 5, false)};
    const Schedule s = defaultSchedule(spec, c.density);
    EXPECT_EQ(s.str(), c.schedule) << c.window << " on " << c.size;
    spec.schedule = s;
    EXPECT_EQ(planKernels(spec).sharedMemoryError(), "") << s.str();
  }
}

} // namespace
} // namespace slak::codegen

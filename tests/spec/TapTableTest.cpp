// Tap tables from masks: contents, statistics and trimmed windows.
#include "codegen/TapTable.h"

#include <gtest/gtest.h>
#include <random>
#include <stdexcept>

using namespace slak::codegen;

namespace {

TEST(TapTable, DenseBranchListsEveryWindowPositionInRowMajorOrder) {
  KernelSpec spec;
  spec.channels = 2;
  spec.branches = {Branch::same(3, 1), Branch::same(1, 3)};
  TapTable table = buildTapTable(spec, {{}, {}});
  ASSERT_EQ(table.offsets.size(), 5u);
  EXPECT_EQ(table.offsets, (std::vector<int32_t>{0, 3, 6, 9, 12}));
  EXPECT_EQ(TapTable::unpackRow(table.taps[2]), 2);
  EXPECT_EQ(TapTable::unpackCol(table.taps[2]), 0);
  EXPECT_EQ(TapTable::unpackRow(table.taps[7]), 0); // branch 1, channel 0, third tap
  EXPECT_EQ(TapTable::unpackCol(table.taps[8]), 2);
}

TEST(TapTable, MaskKeepsOnlyLiveTapsPerChannel) {
  KernelSpec spec;
  spec.channels = 2;
  spec.branches = {Branch::same(3, 3)};
  // Channel 0: centre and bottom-right; channel 1: nothing.
  BranchMask mask(2 * 9, 0);
  mask[4] = 1;
  mask[8] = 1;
  TapTable table = buildTapTable(spec, {mask});
  EXPECT_EQ(table.count(0, 0), 2);
  EXPECT_EQ(table.count(0, 1), 0);
  EXPECT_EQ(table.taps[0], TapTable::pack(1, 1));
  EXPECT_EQ(table.taps[1], TapTable::pack(2, 2));

  BranchTapStats stats = branchTapStats(spec, table, 0);
  EXPECT_EQ(stats.minPerChannel, 0);
  EXPECT_EQ(stats.maxPerChannel, 2);
  EXPECT_DOUBLE_EQ(stats.meanPerChannel, 1.0);
  EXPECT_DOUBLE_EQ(stats.density, 2.0 / 18.0);
  EXPECT_EQ(stats.rowBegin, 1);
  EXPECT_EQ(stats.rowEnd, 3);
  EXPECT_EQ(stats.colBegin, 1);
  EXPECT_EQ(stats.colEnd, 3);
}

TEST(TapTable, RandomMaskCountsMatchTheMask) {
  KernelSpec spec;
  spec.channels = 13;
  spec.branches = {Branch::same(51, 5), Branch::same(5, 51)};
  std::mt19937 rng(7);
  std::vector<BranchMask> masks(2, BranchMask(13 * 255));
  for (auto &mask : masks)
    for (auto &m : mask)
      m = rng() % 10 < 6;
  TapTable table = buildTapTable(spec, masks);
  for (int b = 0; b < 2; ++b)
    for (int c = 0; c < 13; ++c) {
      int64_t live = 0;
      for (int k = 0; k < 255; ++k)
        live += masks[b][c * 255 + k];
      EXPECT_EQ(table.count(b, c), live) << "branch " << b << " channel " << c;
    }
}

TEST(TapTable, EmptyMaskGivesEmptyStatsWindow) {
  KernelSpec spec;
  spec.channels = 3;
  spec.branches = {Branch::same(5, 5)};
  TapTable table = buildTapTable(spec, {BranchMask(75, 0)});
  BranchTapStats stats = branchTapStats(spec, table, 0);
  EXPECT_EQ(stats.maxPerChannel, 0);
  EXPECT_EQ(stats.density, 0.0);
  EXPECT_EQ(stats.rowEnd - stats.rowBegin, 0);
}

TEST(TapTable, WrongMaskSizeIsAClearError) {
  KernelSpec spec;
  spec.channels = 4;
  spec.branches = {Branch::same(3, 3)};
  try {
    buildTapTable(spec, {BranchMask(35, 1)});
    FAIL() << "expected an error";
  } catch (const std::invalid_argument &e) {
    EXPECT_STREQ(e.what(), "buildTapTable: mask of branch 0 has 35 entries, expected 36 (C*KH*KW)");
  }
  EXPECT_THROW(buildTapTable(spec, {}), std::invalid_argument);
}

} // namespace

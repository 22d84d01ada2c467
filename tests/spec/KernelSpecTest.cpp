// KernelSpec validation: every illegal field gives a message that names it.
#include "codegen/KernelSpec.h"

#include <gtest/gtest.h>

using slak::codegen::Branch;
using slak::codegen::KernelSpec;

namespace {

KernelSpec slakSpec() {
  KernelSpec spec;
  spec.channels = 124;
  spec.height = 56;
  spec.width = 56;
  spec.branches = {Branch::same(51, 5), Branch::same(5, 51), Branch::same(5, 5)};
  return spec;
}

TEST(KernelSpec, SlakLayerIsValidAndKeepsItsSize) {
  KernelSpec spec = slakSpec();
  EXPECT_EQ(spec.validate(), "");
  EXPECT_EQ(spec.outHeight(56), 56);
  EXPECT_EQ(spec.outWidth(17), 17);
  EXPECT_FALSE(spec.anySparse());
  spec.branches[1].dense = false;
  EXPECT_TRUE(spec.anySparse());
}

TEST(KernelSpec, RejectsEvenKernel) {
  KernelSpec spec = slakSpec();
  spec.branches[2] = Branch::same(4, 5);
  EXPECT_EQ(spec.validate(), "branch 2 has kernel 4x5, expected odd positive sizes");
}

TEST(KernelSpec, RejectsBranchesWithDifferentOutputSizes) {
  KernelSpec spec = slakSpec();
  spec.branches[1].padW = 0;
  EXPECT_NE(spec.validate().find("branch 1 (kernel 5x51, padding 2x0) gives a different output"),
            std::string::npos)
      << spec.validate();
}

TEST(KernelSpec, RejectsPaddingAsLargeAsTheKernel) {
  KernelSpec spec;
  spec.channels = 3;
  spec.branches = {Branch{5, 5, 5, 2, true}};
  EXPECT_EQ(spec.validate(), "branch 0 has padding 5x2 for kernel 5x5, expected 0 <= pad < kernel");
}

TEST(KernelSpec, RejectsBiasWithPerBranchOutputs) {
  KernelSpec spec = slakSpec();
  spec.perBranchOutputs = true;
  spec.hasBias = true;
  EXPECT_NE(spec.validate().find("bias with per-branch outputs"), std::string::npos);
}

TEST(KernelSpec, RejectsNoChannelsOrBranches) {
  KernelSpec spec = slakSpec();
  spec.channels = 0;
  EXPECT_EQ(spec.validate(), "channels is 0, expected a positive count");
  spec.channels = 3;
  spec.branches.clear();
  EXPECT_EQ(spec.validate(), "a layer needs at least one branch, found none");
}

TEST(KernelSpec, ScheduleErrorsNameTheField) {
  KernelSpec spec = slakSpec();
  spec.schedule.tileW = 30;
  spec.schedule.blockW = 32;
  EXPECT_EQ(spec.validate(), "schedule tileW 30 is not a multiple of blockW 32; each thread "
                             "computes tile/block outputs");
  spec.schedule = {};
  spec.schedule.blockH = 64;
  spec.schedule.tileH = 64;
  EXPECT_EQ(spec.validate(),
            "schedule block 64x32 has 2048 threads, at most 1024 are allowed per block");
  spec.schedule = {};
  spec.schedule.weightSplit = 0;
  EXPECT_EQ(spec.validate(), "schedule weightSplit is 0, expected 1..2147483647");
}

TEST(KernelSpec, SignatureSeparatesWhatChangesTheCode) {
  KernelSpec a = slakSpec(), b = slakSpec();
  EXPECT_EQ(a.signature(), b.signature());
  b.branches[0].dense = false;
  EXPECT_NE(a.signature(), b.signature());
  b = slakSpec();
  b.schedule.tileH = 8;
  EXPECT_NE(a.signature(), b.signature());
  b = slakSpec();
  b.elementType = slak::codegen::ElementType::BF16;
  EXPECT_NE(a.signature(), b.signature());
}

} // namespace

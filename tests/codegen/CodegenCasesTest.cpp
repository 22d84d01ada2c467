// The case matrix covers every value the codegen issue lists (a covering
// set, not the product); editing the matrix cannot silently drop one.
#include <gtest/gtest.h>

#include <map>
#include <set>
#include <string>

#include "tests/codegen/CodegenCases.h"

namespace slak::codegen::testing {
namespace {

std::string familyOf(const KernelSpec &spec) {
  std::string family;
  for (const Branch &b : spec.branches)
    family +=
        (family.empty() ? "" : "+") + std::to_string(b.kernelH) + "x" + std::to_string(b.kernelW);
  return family;
}

TEST(CodegenCases, CoverEveryListedValue) {
  std::set<std::string> images, types;
  std::set<int64_t> channels, batches;
  std::set<double> densities;
  std::set<bool> perBranch, bias, dynamic, masked;
  std::map<std::string, std::set<std::string>> schedulesPerFamily;
  std::set<std::string> names;
  for (const CodegenCase &c : codegenCases()) {
    EXPECT_TRUE(names.insert(c.name).second) << "duplicate case name " << c.name;
    EXPECT_EQ(c.spec.validate(), "") << c.name;
    EXPECT_FALSE(c.shapes.empty()) << c.name;
    EXPECT_FALSE(c.densities.empty()) << c.name;
    for (const ImageShape &s : c.shapes) {
      images.insert(std::to_string(s.h) + "x" + std::to_string(s.w));
      batches.insert(s.n);
    }
    if (c.spec.anySparse())
      densities.insert(c.densities.begin(), c.densities.end());
    channels.insert(c.spec.channels);
    types.insert(elementTypeName(c.spec.elementType));
    perBranch.insert(c.spec.perBranchOutputs);
    bias.insert(c.spec.hasBias);
    dynamic.insert(c.spec.height < 0);
    masked.insert(c.spec.schedule.maskedWalk);
    schedulesPerFamily[familyOf(c.spec)].insert(c.spec.schedule.str());
  }
  for (const char *image : {"1x1", "7x7", "14x14", "17x23", "56x56"})
    EXPECT_TRUE(images.count(image)) << image;
  for (int64_t c : {1, 3, 124})
    EXPECT_TRUE(channels.count(c)) << c;
  EXPECT_EQ(batches, (std::set<int64_t>{1, 3}));
  EXPECT_EQ(densities, (std::set<double>{0.0, 0.1, 0.6, 1.0}));
  EXPECT_EQ(types, (std::set<std::string>{"bf16", "f16", "f32"}));
  EXPECT_EQ(perBranch.size(), 2u);
  EXPECT_EQ(bias.size(), 2u);
  EXPECT_EQ(dynamic.size(), 2u);
  EXPECT_EQ(masked.size(), 2u);
  for (const char *family :
       {"13x5+5x13+5x5", "31x5+5x31+5x5", "51x5+5x51+5x5", "31x31+5x5", "7x7"}) {
    ASSERT_TRUE(schedulesPerFamily.count(family)) << family;
    EXPECT_GE(schedulesPerFamily[family].size(), 2u) << family << " needs several schedules";
  }
}

TEST(CodegenCases, ModelLayersUseDefaultSchedules) {
  const auto layers = modelLayerCases();
  EXPECT_GE(layers.size(), 20u);
  std::set<int64_t> channels;
  for (const CodegenCase &c : layers) {
    EXPECT_TRUE(c.defaultSchedule) << c.name;
    EXPECT_EQ(c.spec.validate(), "") << c.name;
    channels.insert(c.spec.channels);
  }
  for (int64_t c : {124, 249, 499, 998})
    EXPECT_TRUE(channels.count(c)) << c;
}

} // namespace
} // namespace slak::codegen::testing

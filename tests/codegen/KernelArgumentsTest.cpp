// The argument binder against the emitted entry points: for every kernel
// kind of every codegen case, the bound arguments are the signature's
// parameters in its order with matching types; buffer sizes follow the
// buffer layout; scalars and grids follow the launch.
#include <gtest/gtest.h>

#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "codegen/BufferLayout.h"
#include "codegen/KernelArguments.h"
#include "codegen/KernelEmitter.h"
#include "tests/codegen/CodegenCases.h"

namespace slak::codegen {
namespace {

using Type = KernelParameter::Type;

struct DeclaredParameter {
  std::string type, name;
};

/// The parameter list of entry point `name` as written in `body`.
std::vector<DeclaredParameter> declaredParameters(const std::string &body,
                                                  const std::string &name) {
  const size_t open = body.find(name + "(");
  if (open == std::string::npos)
    return {};
  const size_t begin = open + name.size() + 1;
  const std::string list = body.substr(begin, body.find(')', begin) - begin);
  std::vector<DeclaredParameter> params;
  std::stringstream items(list);
  for (std::string item; std::getline(items, item, ',');) {
    item.erase(0, item.find_first_not_of(" \n"));
    const size_t cut = item.find_last_of(" *");
    params.push_back({item.substr(0, cut + 1), item.substr(cut + 1)});
  }
  return params;
}

/// The type text a parameter of `type` must have for element type `t`.
std::string expectedType(Type type, ElementType element) {
  const std::string t = std::string("slak_") + elementTypeName(element) + "_t";
  switch (type) {
  case Type::ConstElements:
    return "SLAK_GLOBAL const " + t + " *";
  case Type::Elements:
    return "SLAK_GLOBAL " + t + " *";
  case Type::ConstInts:
    return "SLAK_GLOBAL const int *";
  case Type::ConstFloats:
    return "SLAK_GLOBAL const float *";
  case Type::Floats:
    return "SLAK_GLOBAL float *";
  case Type::Int:
    return "int ";
  }
  return "?";
}

TEST(KernelArguments, BindInTheOrderOfEachEmittedSignature) {
  int checked = 0;
  for (const testing::CodegenCase &c : testing::codegenCases()) {
    const EmittedKernels k = emitKernels(c.spec);
    const testing::ImageShape shape = c.shapes.front();
    for (int i = 0; i < kNumKernelKinds; ++i) {
      const auto kind = static_cast<KernelKind>(i);
      const std::string label = c.name + " " + kernelKindName(kind);
      const std::vector<DeclaredParameter> declared = declaredParameters(k.body, k.names[i]);
      const KernelLaunch launch = bindKernel(k, kind, shape.n, shape.h, shape.w);
      EXPECT_EQ(launch.name, k.names[i]) << label;
      ASSERT_EQ(launch.arguments.size(), declared.size()) << label;
      for (size_t a = 0; a < declared.size(); ++a) {
        const KernelParameter &p = launch.arguments[a].parameter;
        EXPECT_EQ(p.name, declared[a].name) << label << " argument " << a;
        // SLAK_RESTRICT sits between the '*' and the name.
        std::string type = declared[a].type;
        if (const size_t r = type.find("SLAK_RESTRICT"); r != std::string::npos)
          type.erase(r);
        EXPECT_EQ(type, expectedType(p.type, c.spec.elementType)) << label << " " << p.name;
      }
      ++checked;
    }
  }
  EXPECT_GT(checked, 100);
}

TEST(KernelArguments, SizesFollowTheBufferLayout) {
  KernelSpec spec;
  spec.channels = 3;
  spec.branches = {Branch::same(5, 3), Branch::same(3, 3, false)};
  spec.perBranchOutputs = true;
  spec.elementType = ElementType::F16;
  spec.schedule.weightSplit = 4;
  spec.schedule.weightThreads = 64;
  const EmittedKernels k = emitKernels(spec);
  const int64_t n = 2, h = 7, w = 9;
  const int64_t x = n * 3 * h * w * 2;              // f16
  const int64_t y = 2 * x;                          // one output per branch, "same" size
  const int64_t weights = 3 * (5 * 3 + 3 * 3) * 2;  // branches concatenated
  const int64_t offsets = (2 * 3 + 1) * 4;          // B * C + 1 ints
  const int64_t workspace = 4 * (3 * (15 + 9)) * 4; // split x weights, float
  auto bytesOf = [](const KernelLaunch &l, const std::string &name) -> int64_t {
    for (const BoundArgument &a : l.arguments)
      if (a.parameter.name == name)
        return a.bytes;
    return -1;
  };
  const KernelLaunch fwd = bindKernel(k, KernelKind::Forward, n, h, w);
  EXPECT_EQ(bytesOf(fwd, "x"), x);
  EXPECT_EQ(bytesOf(fwd, "wt"), weights);
  EXPECT_EQ(bytesOf(fwd, "tapOffsets"), offsets);
  EXPECT_EQ(bytesOf(fwd, "bias"), 0); // no bias: not read
  EXPECT_EQ(bytesOf(fwd, "y"), y);
  const std::vector<int32_t> sizes = {fwd.arguments[6].value, fwd.arguments[7].value,
                                      fwd.arguments[8].value};
  EXPECT_EQ(sizes, (std::vector<int32_t>{2, 7, 9}));
  const LaunchGeometry g = k.geometry(KernelKind::Forward, n, h, w);
  EXPECT_EQ(fwd.geometry.blocks, g.blocks);
  EXPECT_EQ(fwd.geometry.threads, g.threads);
  EXPECT_EQ(fwd.geometry.sharedBytes, g.sharedBytes);

  const KernelLaunch bwd = bindKernel(k, KernelKind::BackwardData, n, h, w);
  EXPECT_EQ(bytesOf(bwd, "dy"), y);
  EXPECT_EQ(bytesOf(bwd, "dx"), x);

  // Backward-weight is both phases, sharing the workspace.
  const std::vector<KernelLaunch> weight = bindPass(k, KernelKind::BackwardWeight, n, h, w);
  ASSERT_EQ(weight.size(), 2u);
  EXPECT_EQ(weight[0].kind, KernelKind::BackwardWeight);
  EXPECT_EQ(weight[1].kind, KernelKind::BackwardWeightReduce);
  EXPECT_EQ(bytesOf(weight[0], "workspace"), workspace);
  EXPECT_EQ(bytesOf(weight[1], "workspace"), workspace);
  EXPECT_EQ(bytesOf(weight[1], "dw"), weights);
  EXPECT_EQ(weight[1].geometry.blocks, (3 * 24 + 63) / 64);
  const KernelBuffers<int64_t> need = bufferBytes(weight);
  EXPECT_EQ(need[static_cast<int>(KernelBuffer::X)], x);
  EXPECT_EQ(need[static_cast<int>(KernelBuffer::Dy)], y);
  EXPECT_EQ(need[static_cast<int>(KernelBuffer::Workspace)], workspace);
  EXPECT_EQ(need[static_cast<int>(KernelBuffer::Dw)], weights);
  EXPECT_EQ(need[static_cast<int>(KernelBuffer::Y)], 0);
  EXPECT_EQ(bindPass(k, KernelKind::BackwardWeightReduce, n, h, w).size(), 2u);
  EXPECT_EQ(bindPass(k, KernelKind::Forward, n, h, w).size(), 1u);
}

TEST(KernelArguments, ChannelsLastKeepsTheSizesAndGroupsChannelsPerBlock) {
  KernelSpec spec;
  spec.channels = 40;
  spec.branches = {Branch::same(7, 7)};
  spec.hasBias = true;
  spec.schedule.tileH = 8;
  spec.schedule.tileW = 16;
  spec.schedule.blockH = 4;
  spec.schedule.blockW = 16;
  KernelSpec nhwc = spec;
  nhwc.layout = DataLayout::NHWC;
  const EmittedKernels planar = emitKernels(spec), last = emitKernels(nhwc);
  EXPECT_NE(spec.signature(), nhwc.signature());
  EXPECT_NE(last.name(KernelKind::Forward).find("slak_lk_nhwc_"), std::string::npos);
  EXPECT_EQ(planar.name(KernelKind::Forward).find("nhwc"), std::string::npos);
  const int64_t n = 2, h = 9, w = 10;
  for (KernelKind kind : {KernelKind::Forward, KernelKind::BackwardData, KernelKind::BackwardWeight,
                          KernelKind::BackwardWeightReduce}) {
    // The same elements in another order: the same bytes for every buffer.
    EXPECT_EQ(bufferBytes({bindKernel(planar, kind, n, h, w)}),
              bufferBytes({bindKernel(last, kind, n, h, w)}))
        << kernelKindName(kind);
  }
  // 16 channel lanes (blockW 16, at most 32): blocks of 8x1 pixels x 16
  // channels, 3 channel groups for 40 channels.
  EXPECT_EQ(convLanes(nhwc), 16);
  EXPECT_EQ(convLanes(spec), 1);
  EXPECT_EQ(bindKernel(last, KernelKind::Forward, n, h, w).geometry.blocks, 2 * 3 * 2 * 10);
  EXPECT_EQ(bindKernel(planar, KernelKind::Forward, n, h, w).geometry.blocks, 2 * 40 * 2 * 1);
  const int lanes = weightLanes(nhwc);
  EXPECT_GT(lanes, 1);
  EXPECT_EQ(bindKernel(last, KernelKind::BackwardWeight, n, h, w).geometry.blocks,
            (40 + lanes - 1) / lanes * spec.schedule.weightSplit);
  const ImageStrides strides = imageStrides(nhwc, h, w);
  EXPECT_EQ(strides.channel, 1);
  EXPECT_EQ(strides.pixel, 40);
  EXPECT_EQ(strides.row, 40 * w);
  EXPECT_EQ(imageStrides(spec, h, w).channel, h * w);
}

TEST(KernelArguments, RefusesSizesPastTheKernelsInts) {
  KernelSpec spec;
  spec.channels = 1;
  spec.branches = {Branch::same(3, 1)};
  spec.schedule.tileH = 128;
  spec.schedule.blockH = 4;
  spec.schedule.tileW = spec.schedule.blockW = 32;
  const EmittedKernels k = emitKernels(spec);
  const int64_t tall = int64_t(1) << 31;
  std::string err;
  try {
    bindKernel(k, KernelKind::Forward, 1, tall, 1);
  } catch (const std::invalid_argument &e) {
    err = e.what();
  }
  EXPECT_NE(err.find("height 2147483648 exceeds the kernels' 32-bit sizes"), std::string::npos)
      << err;
}

} // namespace
} // namespace slak::codegen

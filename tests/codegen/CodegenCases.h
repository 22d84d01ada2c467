// The matrix of kernel specs the codegen tests run: SLaK (M in 13/31/51,
// N = 5), RepLKNet (31x31 + 5x5) and ConvNeXt (7x7) layers, over images
// 1x1 .. 56x56, 1/3/124 channels, batch 1/3, mask densities 1/0.6/0.1/0,
// several schedules, per-branch and summed outputs, with and without bias,
// f32/f16/bf16, NCHW and channels-last (NHWC). A covering set, not the Cartesian product: every
// listed value appears, and each case (one spec = one compiled program) runs on a few shapes and
// densities. The OpenCL test runs it; the CUDA test compiles it.
#pragma once

#include <cstdint>
#include <ostream>
#include <string>
#include <vector>

#include "codegen/KernelSpec.h"

namespace slak::codegen::testing {

struct ImageShape {
  int64_t n = 1, h = 1, w = 1;
};

struct CodegenCase {
  std::string name; // a valid GoogleTest parameter name
  KernelSpec spec;
  bool defaultSchedule = false; // spec.schedule is defaultSchedule(spec)
  std::vector<ImageShape> shapes;
  std::vector<double> densities; // of the sparse branches' masks
};

std::vector<CodegenCase> codegenCases();

/// Layers of the real models with their default schedules: SLaK-T/B stages
/// (M = 51/49/47/13, sparse), RepLKNet-31B and ConvNeXt-T stages, static and
/// dynamic sizes, all element types, summed and per-branch outputs, NCHW and
/// NHWC. The CUDA
/// test checks that their defaults compile without register spills; the
/// OpenCL test runs those of 14x14 and smaller at batch 1 (odd channel
/// counts 499, 998, 1331).
std::vector<CodegenCase> modelLayerCases();

/// gtest prints the case by name.
void PrintTo(const CodegenCase &c, std::ostream *os);

} // namespace slak::codegen::testing

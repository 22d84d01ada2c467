// The emitter's API: schedule and spec validation messages, launch geometry,
// shared-memory accounting, names, the backend-neutral body, the default
// schedule and the buffer layout helpers. Correctness of the generated code
// is OpenCLKernelTest's job; compilation with nvcc is CudaCompileTest's.
#include <gtest/gtest.h>

#include <regex>
#include <set>
#include <stdexcept>
#include <utility>

#include "codegen/BufferLayout.h"
#include "codegen/DefaultSchedule.h"
#include "codegen/KernelEmitter.h"

namespace slak::codegen {
namespace {

KernelSpec slakStage1(int64_t channels = 124, int64_t size = 56) {
  KernelSpec spec;
  spec.channels = channels;
  spec.height = spec.width = size;
  spec.branches = {Branch::same(51, 5, false), Branch::same(5, 51, false), Branch::same(5, 5)};
  return spec;
}

std::string emitError(const KernelSpec &spec) {
  try {
    emitKernels(spec);
  } catch (const std::invalid_argument &e) {
    return e.what();
  }
  return {};
}

TEST(ScheduleValidation, NamesTheField) {
  struct Case {
    void (*mutate)(Schedule &);
    const char *field;
  };
  const Case cases[] = {
      {[](Schedule &s) { s.tileH = 0; }, "tileH"},
      {[](Schedule &s) { s.tileW = -3; }, "tileW"},
      {[](Schedule &s) { s.blockH = 0; }, "blockH"},
      {[](Schedule &s) { s.blockW = 0; }, "blockW"},
      {[](Schedule &s) { s.weightSplit = 0; }, "weightSplit"},
      {[](Schedule &s) { s.weightThreads = 100; }, "weightThreads"},
      {[](Schedule &s) { s.weightTileH = 0; }, "weightTileH"},
      {[](Schedule &s) { s.weightTileW = 0; }, "weightTileW"},
      {[](Schedule &s) { s.tileW = 48; }, "blockW"}, // 48 is not a multiple of 32
      {[](Schedule &s) {
         s.blockH = 64;
         s.tileH = 64;
       },
       "allowed per block"},
  };
  for (const Case &c : cases) {
    KernelSpec spec = slakStage1();
    c.mutate(spec.schedule);
    const std::string err = emitError(spec);
    EXPECT_NE(err.find(c.field), std::string::npos) << "expected '" << c.field << "' in: " << err;
  }
  EXPECT_EQ(Schedule{}.validate(), "");
}

TEST(ScheduleValidation, BoundsTheOutputsPerThread) {
  // Found by slak-fuzz-readers (a tuning-database row "tile=865536x8
  // block=2x8 stageInput=0 ..."): the emitter unrolled 432768 outputs per
  // thread into a 200 MB source instead of refusing the schedule.
  Schedule s;
  s.stageInput = false;
  s.tileH = 865536;
  s.blockH = 2;
  s.tileW = s.blockW = 8;
  EXPECT_NE(s.validate().find("each thread 432768x1 outputs (tileH/blockH x tileW/blockW), at "
                              "most 128 are allowed"),
            std::string::npos)
      << s.validate();
  s.tileH = 2 * 64; // 64 x 2 = 128 outputs: the limit itself is legal
  s.tileW = 16;
  EXPECT_EQ(s.validate(), "");
}

TEST(KernelEmitter, RejectsInvalidSpecsWithTheReason) {
  KernelSpec spec = slakStage1();
  spec.channels = 0;
  EXPECT_NE(emitError(spec).find("channels is 0"), std::string::npos) << emitError(spec);
  spec = slakStage1();
  spec.branches[1].kernelW = 50;
  EXPECT_NE(emitError(spec).find("branch 1 has kernel 5x50"), std::string::npos) << emitError(spec);
}

TEST(KernelEmitter, RejectsTilesThatOverflowSharedMemory) {
  KernelSpec spec = slakStage1();
  spec.schedule.tileH = 64;
  spec.schedule.tileW = 64;
  spec.schedule.blockH = 8;
  // (64 + 50) x (64 + 50) floats = 51984 bytes for the input tile alone.
  const std::string err = emitError(spec);
  EXPECT_NE(err.find("forward kernel needs"), std::string::npos) << err;
  EXPECT_NE(err.find("tileH/tileW"), std::string::npos) << err;
  EXPECT_NE(err.find("114x114"), std::string::npos) << err;
  // Without input staging it fits.
  spec.schedule.stageInput = false;
  EXPECT_EQ(emitError(spec), "");
  // The backward-weight tile has its own fields.
  spec = slakStage1();
  spec.schedule.weightTileH = 64;
  spec.schedule.weightTileW = 64;
  EXPECT_NE(emitError(spec).find("weightTileH/weightTileW"), std::string::npos) << emitError(spec);
}

TEST(KernelEmitter, GeometryFollowsTheSchedule) {
  KernelSpec spec = slakStage1();
  spec.schedule.tileH = 16;
  spec.schedule.tileW = 32;
  spec.schedule.blockH = 4;
  spec.schedule.blockW = 32;
  spec.schedule.weightSplit = 5;
  spec.schedule.weightThreads = 128;
  const EmittedKernels k = emitKernels(spec);

  const LaunchGeometry fwd = k.geometry(KernelKind::Forward, 3, 56, 56);
  EXPECT_EQ(fwd.blocks, 3 * 124 * 4 * 2); // ceil(56/16) x ceil(56/32) tiles per plane
  EXPECT_EQ(fwd.threads, 128);
  // Staged input: the union halo of 51x5, 5x51 and 5x5 is 50 x 50; staged
  // weights of all branches (255 + 255 + 25) and offsets of the two table
  // branches (255 + 255).
  EXPECT_EQ(fwd.sharedBytes, 4 * ((16 + 50) * (32 + 50) + 535 + 510));

  const LaunchGeometry bwd = k.geometry(KernelKind::BackwardData, 3, 56, 56);
  EXPECT_EQ(bwd.blocks, fwd.blocks);
  EXPECT_EQ(bwd.threads, 128);

  const LaunchGeometry wgt = k.geometry(KernelKind::BackwardWeight, 3, 56, 56);
  EXPECT_EQ(wgt.blocks, 124 * 5);
  EXPECT_EQ(wgt.threads, 128);
  EXPECT_GT(wgt.sharedBytes, 0);
  EXPECT_LE(wgt.sharedBytes, kMaxSharedBytes);

  const LaunchGeometry red = k.geometry(KernelKind::BackwardWeightReduce, 3, 56, 56);
  EXPECT_EQ(red.blocks, (124 * 535 + 127) / 128);
  EXPECT_EQ(red.threads, 128);
  EXPECT_EQ(red.sharedBytes, 0);

  // Dynamic size: the grid follows the launch size; tiles need not divide it.
  spec.height = spec.width = -1;
  const EmittedKernels dyn = emitKernels(spec);
  EXPECT_EQ(dyn.geometry(KernelKind::Forward, 1, 17, 23).blocks, 124 * 2 * 1);
  EXPECT_EQ(dyn.geometry(KernelKind::Forward, 2, 1, 1).blocks, 2 * 124);
}

TEST(KernelEmitter, GeometryWithNonSamePaddingTilesOutputAndInputSeparately) {
  KernelSpec spec;
  spec.channels = 3;
  spec.branches = {Branch{7, 7, 0, 0, true}}; // "valid": output is (H-6) x (W-6)
  spec.schedule.tileH = 8;
  spec.schedule.tileW = 8;
  spec.schedule.blockH = 2;
  spec.schedule.blockW = 8;
  const EmittedKernels k = emitKernels(spec);
  EXPECT_EQ(k.geometry(KernelKind::Forward, 1, 20, 20).blocks, 3 * 2 * 2);      // 14x14 out
  EXPECT_EQ(k.geometry(KernelKind::BackwardData, 1, 20, 20).blocks, 3 * 3 * 3); // 20x20 dx
}

TEST(KernelEmitter, GeometryRejectsShapesTheKernelCannotRun) {
  const EmittedKernels k = emitKernels(slakStage1());
  auto error = [&](int64_t n, int64_t h, int64_t w) -> std::string {
    try {
      k.geometry(KernelKind::Forward, n, h, w);
    } catch (const std::invalid_argument &e) {
      return e.what();
    }
    return {};
  };
  EXPECT_NE(error(1, 28, 56).find("height is 28"), std::string::npos) << error(1, 28, 56);
  EXPECT_NE(error(1, 56, 57).find("width is 57"), std::string::npos) << error(1, 56, 57);
  EXPECT_NE(error(0, 56, 56).find("batch is 0"), std::string::npos) << error(0, 56, 56);
  EXPECT_EQ(error(1, 56, 56), "");
  // The kernels read the block index as an int: 2^22 images of 124 planes
  // of 4x2 tiles are 2^32 blocks. A batch of 2^62 overflowed the int64_t
  // product (found by slak-fuzz-ir with a 2^31-pixel image; docs/fuzzing.md).
  for (int64_t n : {int64_t(1) << 22, int64_t(1) << 62})
    EXPECT_NE(error(n, 56, 56).find("needs more than 2147483647 blocks"), std::string::npos)
        << n << ": " << error(n, 56, 56);
  EXPECT_EQ(error(int64_t(1) << 20, 56, 56), ""); // 2^30 blocks
}

TEST(KernelEmitter, RejectsSizesTheKernelsCannotIndex) {
  // Channels, height and width reach the kernels as ints; larger values
  // were accepted and cut (the kernel package reader took them).
  KernelSpec spec = slakStage1();
  spec.channels = int64_t(1) << 31;
  EXPECT_NE(emitError(spec).find("channels 2147483648, height 56 or width 56 is too large"),
            std::string::npos)
      << emitError(spec);
  spec = slakStage1();
  spec.height = spec.width = int64_t(1) << 32;
  EXPECT_NE(emitError(spec).find("is too large, at most 2147483647"), std::string::npos)
      << emitError(spec);
}

TEST(KernelEmitter, NamesDeriveFromTheSpec) {
  const KernelSpec a = slakStage1();
  KernelSpec b = a;
  b.elementType = ElementType::BF16;
  KernelSpec c = a;
  c.schedule.tileH = 8;
  const EmittedKernels ka = emitKernels(a), kb = emitKernels(b), kc = emitKernels(c);
  EXPECT_EQ(ka.names, emitKernels(a).names); // stable
  EXPECT_NE(ka.name(KernelKind::Forward), kb.name(KernelKind::Forward));
  EXPECT_NE(ka.name(KernelKind::Forward), kc.name(KernelKind::Forward));
  const std::regex pattern("slak_lk_[0-9a-f]{16}_(fwd|bwd_data|bwd_weight|bwd_weight_reduce)");
  std::set<std::string> unique;
  for (const std::string &name : ka.names) {
    EXPECT_TRUE(std::regex_match(name, pattern)) << name;
    EXPECT_NE(ka.body.find(name + "("), std::string::npos) << name;
    unique.insert(name);
  }
  EXPECT_EQ(unique.size(), 4u);
  EXPECT_EQ(ka.name(KernelKind::Forward), kernelBaseName(a) + "_fwd");
}

TEST(KernelEmitter, BackendsShareTheBodyAndDifferInThePrelude) {
  const EmittedKernels k = emitKernels(slakStage1());
  const std::string cuda = assembleSource(GpuLanguage::Cuda, {k});
  const std::string opencl = assembleSource(GpuLanguage::OpenCL, {k});
  EXPECT_EQ(cuda, emitPrelude(GpuLanguage::Cuda) + "\n" + k.body);
  EXPECT_EQ(opencl, emitPrelude(GpuLanguage::OpenCL) + "\n" + k.body);
  EXPECT_NE(emitPrelude(GpuLanguage::Cuda), emitPrelude(GpuLanguage::OpenCL));
  EXPECT_NE(emitPrelude(GpuLanguage::Cuda).find("extern \"C\" __global__"), std::string::npos);
  EXPECT_NE(emitPrelude(GpuLanguage::OpenCL).find("__kernel"), std::string::npos);
  EXPECT_NE(emitPrelude(GpuLanguage::OpenCL).find("vload_half"), std::string::npos);
  // The body uses only the prelude's vocabulary.
  for (const char *word : {"__global__", "__shared__", "__syncthreads", "threadIdx", "__kernel",
                           "__local", "barrier(", "get_local_id", "#include"})
    EXPECT_EQ(k.body.find(word), std::string::npos) << word;
  // Several specs in one file, each body once.
  KernelSpec other = slakStage1();
  other.perBranchOutputs = true;
  const EmittedKernels k2 = emitKernels(other);
  const std::string both = assembleSource(GpuLanguage::Cuda, {k, k2, k});
  EXPECT_EQ(both, emitPrelude(GpuLanguage::Cuda) + "\n" + k.body + "\n" + k2.body);
}

TEST(KernelEmitter, DenseBranchesReadNoTapTable) {
  KernelSpec spec = slakStage1();
  for (Branch &b : spec.branches)
    b.dense = true;
  const std::string body = emitKernels(spec).body;
  EXPECT_EQ(body.find("tapOffsets["), std::string::npos);
  EXPECT_EQ(body.find("taps["), std::string::npos);
  spec.branches[0].dense = false;
  EXPECT_NE(emitKernels(spec).body.find("tapOffsets[0 + c]"), std::string::npos);
}

TEST(DefaultSchedule, FitsTheImage) {
  KernelSpec spec = slakStage1(124, 56);
  Schedule s = defaultSchedule(spec);
  EXPECT_EQ(s.validate(), "");
  EXPECT_EQ(s.blockW, 32);
  EXPECT_EQ(s.rowsPerThread(), 8); // a 51-tall window: reuse each row 8 times
  EXPECT_LE(s.tileH, 64);
  EXPECT_GE(s.threadsPerBlock(), 64);

  KernelSpec small = slakStage1(998, 7);
  small.branches = {Branch::same(13, 5, false), Branch::same(5, 13, false), Branch::same(5, 5)};
  s = defaultSchedule(small);
  EXPECT_EQ(s.validate(), "");
  EXPECT_LE(s.tileH, 8);
  EXPECT_LE(s.tileW, 8);
  EXPECT_GE(s.threadsPerBlock(), 32); // at least a warp
  EXPECT_LE(s.weightTileH * s.weightTileW, 64);
  // Few channels: more backward-weight splits to fill the device.
  EXPECT_GT(defaultSchedule(slakStage1(3, 56)).weightSplit, s.weightSplit);
}

TEST(DefaultSchedule, EveryKernelFitsSharedMemory) {
  KernelSpec spec = slakStage1(124, -1);
  spec.branches = {Branch::same(51, 51), Branch::same(5, 5)};
  spec.schedule = defaultSchedule(spec);
  const EmittedKernels k = emitKernels(spec);
  for (int64_t bytes : k.sharedBytes)
    EXPECT_LE(bytes, kMaxSharedBytes);
  EXPECT_GT(k.sharedBytes[0], 0);
}

TEST(DefaultSchedule, SaysWhenNoTileIsSmallEnoughForTheWindows) {
  // Found by slak-fuzz-readers (slak-autotune --layer ...,branches=771x5+5x51+5x5):
  // even a 1x8 backward-weight tile needs 771 x 58 staged floats, and the
  // message advised lowering the tiles the default had already minimised.
  for (const auto &[kh, kw] : {std::pair{771, 51}, std::pair{121, 121}}) {
    KernelSpec spec = slakStage1(124, 56);
    spec.branches = {Branch::same(kh, 5, false), Branch::same(5, kw, false), Branch::same(5, 5)};
    std::string err;
    try {
      defaultSchedule(spec);
    } catch (const std::invalid_argument &e) {
      err = e.what();
    }
    EXPECT_NE(err.find("no schedule fits this layer, not even with the smallest tiles"),
              std::string::npos)
        << kh << "x" << kw << ": " << err;
    EXPECT_NE(err.find("windows this large are not supported: use smaller kernels"),
              std::string::npos)
        << err;
  }
  // SLaK's largest, 61x5 + 5x61, fits.
  KernelSpec spec = slakStage1(124, 56);
  spec.branches = {Branch::same(61, 5, false), Branch::same(5, 61, false)};
  EXPECT_EQ(defaultSchedule(spec).validate(), "");
}

TEST(BufferLayout, BranchesConcatenateInOrder) {
  KernelSpec spec = slakStage1(124, 56);
  EXPECT_EQ(weightOffset(spec, 0), 0);
  EXPECT_EQ(weightOffset(spec, 1), 124 * 255);
  EXPECT_EQ(weightOffset(spec, 2), 124 * 510);
  EXPECT_EQ(weightCount(spec), 124 * 535);
  EXPECT_EQ(inputCount(spec, 2, 56, 56), 2 * 124 * 56 * 56);
  EXPECT_EQ(outputCount(spec, 2, 56, 56), 2 * 124 * 56 * 56);
  spec.perBranchOutputs = true;
  EXPECT_EQ(outputCount(spec, 2, 56, 56), 3 * 2 * 124 * 56 * 56);
  spec.schedule.weightSplit = 4;
  EXPECT_EQ(weightWorkspaceCount(spec), 4 * 124 * 535);
}

} // namespace
} // namespace slak::codegen

// The CUDA backend's compile path without a GPU: NVRTC (dlopen()ed) compiles
// the generated CUDA source of real SLaK layers to a cubin for sm_80 and to
// PTX for an architecture newer than it knows, through the kernel cache. The
// driver is loaded the same way; where there is none the error says so.
#include <gtest/gtest.h>

#include <unistd.h>

#include <cstdio>
#include <filesystem>

#include "codegen/DefaultSchedule.h"
#include "codegen/KernelEmitter.h"
#include "runtime/KernelCache.h"
#include "runtime/cuda/CudaCompiler.h"
#include "runtime/cuda/CudaDriver.h"
#include "runtime/cuda/Nvrtc.h"

namespace slak::runtime::cuda {
namespace {

namespace fs = std::filesystem;
using codegen::Branch;
using codegen::ElementType;
using codegen::KernelSpec;

bool nvrtcOrSkip() {
  std::string why;
  if (Nvrtc::available(&why))
    return true;
  std::printf("[SKIP] NVRTC not available: %s\n", why.c_str());
  return false;
}

/// SLaK-T stage-1-like layers (51x5 + 5x51 + 5x5), sparse and dense, every
/// element type, summed and per-branch outputs, with default schedules.
std::vector<codegen::EmittedKernels> slakLayers() {
  std::vector<codegen::EmittedKernels> layers;
  for (ElementType type : {ElementType::F32, ElementType::F16, ElementType::BF16})
    for (bool perBranch : {false, true}) {
      KernelSpec spec;
      spec.channels = 124;
      spec.height = spec.width = 56;
      spec.branches = {Branch::same(51, 5, false), Branch::same(5, 51, false),
                       Branch::same(5, 5, true)};
      spec.perBranchOutputs = perBranch;
      spec.hasBias = !perBranch;
      spec.elementType = type;
      spec.schedule = codegen::defaultSchedule(spec, perBranch ? 0.6 : 0.1);
      layers.push_back(codegen::emitKernels(spec));
    }
  return layers;
}

std::string freshDir(const std::string &name) {
  const fs::path dir =
      fs::path(::testing::TempDir()) / ("slak_nvrtc_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  return dir.string();
}

TEST(NvrtcCompileTest, GeneratedSourceCompilesToCubinForSm80) {
  if (!nvrtcOrSkip())
    GTEST_SKIP() << "NVRTC not available";
  const Nvrtc &nvrtc = Nvrtc::get();
  std::printf("NVRTC %s from %s\n", nvrtc.versionString().c_str(), nvrtc.libraryName().c_str());
  const auto layers = slakLayers();
  const std::string source = codegen::assembleSource(codegen::GpuLanguage::Cuda, layers);
  const NvrtcImage image = nvrtc.compile(source, "slak_layers.cu", 80);
  ASSERT_TRUE(image.cubin);
  EXPECT_EQ(image.arch, 80);
  ASSERT_GT(image.image.size(), 4u);
  EXPECT_EQ(image.image.substr(0, 4), "\x7f"
                                      "ELF");
  // Every entry point is in the cubin's symbol table.
  for (const auto &layer : layers)
    for (const std::string &name : layer.names)
      EXPECT_NE(image.image.find(name), std::string::npos) << name;
}

TEST(NvrtcCompileTest, NewerDeviceGetsPtxForTheNewestKnownArch) {
  if (!nvrtcOrSkip())
    GTEST_SKIP() << "NVRTC not available";
  const Nvrtc &nvrtc = Nvrtc::get();
  ASSERT_FALSE(nvrtc.supportedArchs().empty());
  const int newest = nvrtc.supportedArchs().back();
  bool cubin = true;
  int target = 0;
  EXPECT_EQ(nvrtc.architectureOption(newest + 1000, &cubin, &target),
            "--gpu-architecture=compute_" + std::to_string(newest));
  EXPECT_FALSE(cubin);
  EXPECT_EQ(target, newest);
  EXPECT_THROW(nvrtc.architectureOption(10), CudaError); // sm_10: older than any

  const auto layers = slakLayers();
  const std::string source = codegen::assembleSource(codegen::GpuLanguage::Cuda, {layers[0]});
  const NvrtcImage ptx = nvrtc.compile(source, "slak_layer.cu", newest + 1000);
  ASSERT_FALSE(ptx.cubin);
  ASSERT_FALSE(ptx.image.empty());
  EXPECT_EQ(ptx.image.back(), '\0') << "the driver needs NUL-terminated PTX";
  EXPECT_NE(ptx.image.find(".entry " + layers[0].name(codegen::KernelKind::Forward)),
            std::string::npos);
  EXPECT_NE(ptx.image.find(".target sm_" + std::to_string(newest)), std::string::npos);
}

TEST(NvrtcCompileTest, CompileErrorsCarryTheLog) {
  if (!nvrtcOrSkip())
    GTEST_SKIP() << "NVRTC not available";
  try {
    Nvrtc::get().compile("extern \"C\" __global__ void k() { undeclared_name = 1; }", "bad.cu", 80);
    FAIL() << "expected a CudaError";
  } catch (const CudaError &e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("bad.cu"), std::string::npos) << what;
    EXPECT_NE(what.find("undeclared_name"), std::string::npos) << what;
  }
}

TEST(NvrtcCompileTest, ImagesAreCachedInMemoryAndOnDisk) {
  if (!nvrtcOrSkip())
    GTEST_SKIP() << "NVRTC not available";
  const std::string dir = freshDir("cache");
  const std::string source = codegen::assembleSource(codegen::GpuLanguage::Cuda, {slakLayers()[0]});
  KernelCache cache(dir);
  const auto first = compileCuda(source, "layer.cu", 80, cache);
  const auto second = compileCuda(source, "layer.cu", 80, cache);
  EXPECT_EQ(cache.stats().builds, 1);
  EXPECT_EQ(cache.stats().memoryHits, 1);
  EXPECT_EQ(first->image, second->image);
  EXPECT_TRUE(fs::exists(cache.entryPath("cuda", cudaImageKey(source, 80))));

  KernelCache next(dir); // the next process
  const auto third = compileCuda(source, "layer.cu", 80, next);
  EXPECT_EQ(next.stats().diskHits, 1);
  EXPECT_EQ(next.stats().builds, 0);
  EXPECT_TRUE(third->cubin);
  EXPECT_EQ(third->arch, 80);
  EXPECT_EQ(third->image, first->image);
  // Another architecture is another entry.
  EXPECT_NE(cudaImageKey(source, 80), cudaImageKey(source, 90));
  EXPECT_NE(cudaImageKey(source, 80), cudaImageKey(source + " ", 80));
}

TEST(CudaDriverTest, MissingDriverIsAClearErrorOnlyWhenUsed) {
  std::string why;
  if (CudaDriver::available(&why)) {
    const CudaDriver &driver = CudaDriver::get();
    std::printf("CUDA driver %d, %d device(s), device 0: %s (sm_%d)\n", driver.version(),
                driver.deviceCount(), driver.deviceName(0).c_str(), driver.computeCapability(0));
    EXPECT_GT(driver.computeCapability(0), 0);
    return;
  }
  std::printf("[SKIP] no CUDA device: %s\n", why.c_str());
  // Loading the library at startup did not fail; asking for it does, saying why.
  try {
    CudaDriver::get();
    // A driver without devices: available() said why.
    EXPECT_NE(why.find("no device"), std::string::npos) << why;
  } catch (const CudaError &e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("no CUDA driver"), std::string::npos) << what;
    EXPECT_NE(what.find("libcuda.so.1"), std::string::npos) << what;
  }
}

} // namespace
} // namespace slak::runtime::cuda

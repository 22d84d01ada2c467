// Warm starts: CPU pipelines compiled in one process are kept in the kernel
// cache on disk and loaded by the next process without a Halide compile
// (compiledPipelineCount stays 0), with results that match the oracle; a
// corrupted or foreign entry is refused with a warning and compiled again;
// the store key changes with the schedule and the target.
//
// The second process is this binary run again with --gtest_filter on the
// WarmStartChild test and SLAK_WARM_TEST_* telling it where the cache is and
// what it must see.
#include "codegen/halide/CpuLkConv.h"
#include "codegen/halide/HostAot.h"
#include "codegen/halide/HostJit.h"
#include "codegen/reference/Reference.h"
#include "runtime/PipelineStoreOnDisk.h"
#include "tests/reference/LayerCases.h"

#include <dirent.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <gtest/gtest.h>
#include <iterator>
#include <random>
#include <string>
#include <utility>
#include <vector>

namespace slak::codegen::cpu {
namespace {

/// A small sparse SLaK layer (13x5 + 5x13 + 5x5) with `schedule`: forward,
/// backward-data, backward-weight and the bias gradient against the oracle.
void runLayerAgainstOracle(const CpuSchedule &schedule) {
  KernelSpec spec;
  spec.channels = 6;
  spec.branches = {Branch::same(13, 5, false), Branch::same(5, 13, false),
                   Branch::same(5, 5, false)};
  std::mt19937 rng(7);
  std::vector<BranchMask> masks;
  for (const Branch &b : spec.branches)
    masks.push_back(reference::randomMask(rng, spec.channels * b.windowSize(), 0.6));
  CpuLkConv conv(spec, schedule);
  conv.setTaps(buildTapTable(spec, masks));
  const reference::Shape ref{2, spec.channels, 11, 9};
  const Shape shape{ref.n, ref.c, ref.h, ref.w, false};
  const std::vector<float> x = reference::uniform(rng, ref.numel());
  const reference::Weights weights = reference::randomWeights(rng, spec.branches, spec.channels);
  std::vector<const float *> weightPtrs;
  for (const auto &w : weights)
    weightPtrs.push_back(w.data());

  const auto yRef = reference::forward(spec, ref, x, weights, masks, {});
  std::vector<float> y(ref.numel(), -7.0f);
  conv.forward(shape, x.data(), weightPtrs, nullptr, {y.data()}, 2);
  reference::expectNear(y, yRef[0], "forward");

  const std::vector<std::vector<float>> dy = {reference::uniform(rng, ref.numel())};
  std::vector<float> dx(ref.numel(), -7.0f);
  conv.backwardData(shape, {dy[0].data()}, weightPtrs, dx.data(), 2);
  reference::expectNear(dx, reference::backwardData(spec, ref, dy, weights, masks),
                        "backward-data");

  const auto dwRef = reference::backwardWeight(spec, ref, x, dy, masks);
  std::vector<std::vector<float>> dw(spec.branches.size());
  std::vector<float *> dwPtrs;
  for (size_t b = 0; b < dw.size(); ++b) {
    dw[b].assign(dwRef[b].size(), -7.0f);
    dwPtrs.push_back(dw[b].data());
  }
  conv.backwardWeight(shape, x.data(), {dy[0].data()}, dwPtrs, 2);
  for (size_t b = 0; b < dw.size(); ++b)
    reference::expectNear(dw[b], dwRef[b], "backward-weight branch " + std::to_string(b));

  std::vector<float> db(spec.channels, -7.0f);
  conv.backwardBias(shape, {dy[0].data()}, db.data(), 2);
  reference::expectNear(db, reference::backwardBias(spec, ref, dy), "bias gradient");
}

CpuSchedule scheduleA() {
  CpuSchedule s;
  s.tileRows = 4;
  return s;
}

std::vector<std::string> entries(const std::string &folder) {
  std::vector<std::string> out;
  if (DIR *dir = ::opendir(folder.c_str())) {
    while (const dirent *e = ::readdir(dir)) {
      const std::string name = e->d_name;
      if (name.size() > 4 && name.substr(name.size() - 4) == ".bin")
        out.push_back(folder + "/" + name);
    }
    ::closedir(dir);
  }
  return out;
}

/// The whole content of the file at `path`.
std::string readBytes(const std::string &path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

struct ChildResult {
  int status = -1;
  std::string output;
};

/// Runs this binary's WarmStartChild test in a new process on cache `dir`;
/// it must see `expect` ("compile" or "load") and, with `corrupt` > 0, that
/// many invalid entries.
ChildResult runChild(const std::string &dir, const std::string &expect, int corrupt = 0) {
  const std::string command = "SLAK_WARM_TEST_DIR='" + dir + "' SLAK_WARM_TEST_EXPECT=" + expect +
                              " SLAK_WARM_TEST_CORRUPT=" + std::to_string(corrupt) + " /proc/" +
                              std::to_string(::getpid()) +
                              "/exe --gtest_filter=WarmStartChild.Run 2>&1";
  ChildResult result;
  FILE *pipe = ::popen(command.c_str(), "r");
  if (!pipe)
    return result;
  char buffer[512];
  while (size_t n = std::fread(buffer, 1, sizeof buffer, pipe))
    result.output.append(buffer, n);
  result.status = ::pclose(pipe);
  return result;
}

std::string freshFolder() {
  char pattern[] = "/tmp/slak-warm-test-XXXXXX";
  const char *dir = ::mkdtemp(pattern);
  return dir ? dir : "";
}

void removeFolder(const std::string &dir) {
  if (!dir.empty())
    std::system(("rm -rf '" + dir + "'").c_str());
}

// The second process: compiles nothing when the entries are there.
TEST(WarmStartChild, Run) {
  const char *dir = std::getenv("SLAK_WARM_TEST_DIR");
  if (!dir)
    GTEST_SKIP() << "run by the WarmStart tests in a second process";
  const std::string expect = std::getenv("SLAK_WARM_TEST_EXPECT");
  runtime::KernelCache cache(dir);
  setPipelineStore(runtime::makePipelineStoreOnDisk(cache));
  runLayerAgainstOracle(scheduleA());
  std::printf("compiled=%d loaded=%d corrupt=%lld\n", compiledPipelineCount(),
              loadedPipelineCount(), static_cast<long long>(cache.stats().corrupt));
  if (expect == "load") {
    EXPECT_EQ(compiledPipelineCount(), 0);
    EXPECT_GE(loadedPipelineCount(), 3); // forward, backward-data, backward-weight
  } else {
    EXPECT_GE(compiledPipelineCount(), 3);
    EXPECT_EQ(loadedPipelineCount(), 0);
  }
  EXPECT_EQ(cache.stats().corrupt, std::atoi(std::getenv("SLAK_WARM_TEST_CORRUPT")));
}

TEST(WarmStart, SecondProcessLoadsWithoutCompiling) {
  const std::string dir = freshFolder();
  ASSERT_FALSE(dir.empty());
  const ChildResult cold = runChild(dir, "compile");
  EXPECT_EQ(cold.status, 0) << cold.output;
  EXPECT_GE(entries(dir + "/halide").size(), 4u) << "runtime + three pipelines";
  const ChildResult warm = runChild(dir, "load");
  EXPECT_EQ(warm.status, 0) << warm.output;
  removeFolder(dir);
}

TEST(WarmStart, CorruptEntriesAreRefusedAndCompiledAgain) {
  const std::string dir = freshFolder();
  ASSERT_FALSE(dir.empty());
  ASSERT_EQ(runChild(dir, "compile").status, 0);
  std::vector<std::string> files = entries(dir + "/halide");
  ASSERT_GE(files.size(), 4u);
  // Flip one payload byte in every entry: the checksum refuses them all.
  for (const std::string &path : files) {
    std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
    f.seekg(200);
    char c = 0;
    f.read(&c, 1);
    c = static_cast<char>(c ^ 0x5a);
    f.seekp(200);
    f.write(&c, 1);
  }
  const ChildResult again = runChild(dir, "compile", static_cast<int>(files.size()));
  EXPECT_EQ(again.status, 0) << again.output;
  EXPECT_NE(again.output.find("ignoring and removing invalid entry"), std::string::npos)
      << again.output;
  EXPECT_EQ(runChild(dir, "load").status, 0);
  removeFolder(dir);
}

TEST(WarmStart, ForeignEntriesAreRefusedAndCompiledAgain) {
  const std::string dir = freshFolder();
  ASSERT_FALSE(dir.empty());
  ASSERT_EQ(runChild(dir, "compile").status, 0);
  // Give every entry another entry's valid library (the largest one, a
  // pipeline): headers and checksums pass, the code is the wrong pipeline's.
  std::vector<std::string> files = entries(dir + "/halide");
  ASSERT_GE(files.size(), 4u);
  runtime::KernelCache cache(dir);
  std::string donor;
  for (const std::string &path : files)
    if (std::string bytes = readBytes(path); bytes.size() > donor.size())
      donor = std::move(bytes);
  std::string payload = donor.substr(64);
  int replaced = 0;
  for (const std::string &path : files) {
    if (readBytes(path) == donor)
      continue;
    runtime::CacheKey key;
    const std::string hex = path.substr(path.size() - 36, 32);
    key.high = std::stoull(hex.substr(0, 16), nullptr, 16);
    key.low = std::stoull(hex.substr(16), nullptr, 16);
    std::ofstream(path, std::ios::binary | std::ios::trunc)
        << runtime::encodeCacheEntry(key, payload);
    ++replaced;
  }
  ASSERT_GE(replaced, 3);
  const ChildResult again = runChild(dir, "compile");
  EXPECT_EQ(again.status, 0) << again.output;
  EXPECT_NE(again.output.find("ignoring and removing unusable entry"), std::string::npos)
      << again.output;
  EXPECT_EQ(runChild(dir, "load").status, 0);
  removeFolder(dir);
}

TEST(WarmStart, KeyCoversScheduleAndTarget) {
  Halide::Func f("f");
  Halide::Var x("x");
  Halide::Param<int> offset("offset");
  f(x) = x + offset;
  Halide::Pipeline p(f);
  const Halide::Target host = aotTarget();
  const std::string base = pipelineDescription(p, "conv", "conv tile=8x2", host);
  EXPECT_EQ(base, pipelineDescription(p, "conv", "conv tile=8x2", host));
  EXPECT_NE(base, pipelineDescription(p, "conv", "conv tile=4x2", host));
  const Halide::Target other = host.has_feature(Halide::Target::AVX512)
                                   ? host.without_feature(Halide::Target::AVX512)
                                   : host.with_feature(Halide::Target::AVX512);
  EXPECT_NE(base, pipelineDescription(p, "conv", "conv tile=8x2", other));
  EXPECT_NE(runtime::pipelineCacheKey(base),
            runtime::pipelineCacheKey(pipelineDescription(p, "conv", "conv tile=4x2", host)));

  // In use: a second schedule stores entries of its own beside the first's.
  const std::string dir = freshFolder();
  ASSERT_FALSE(dir.empty());
  {
    runtime::KernelCache cache(dir);
    setPipelineStore(runtime::makePipelineStoreOnDisk(cache));
    runLayerAgainstOracle(scheduleA());
    const size_t first = entries(dir + "/halide").size();
    CpuSchedule b = scheduleA();
    b.tileRows = 2;
    runLayerAgainstOracle(b);
    EXPECT_GT(entries(dir + "/halide").size(), first);
    setPipelineStore(nullptr);
  }
  removeFolder(dir);
}

} // namespace
} // namespace slak::codegen::cpu

// slak-warm-start: how long the first call of each SLaK-T layer's CPU
// pipelines takes in a process that compiles them (cold: empty kernel cache)
// and in the next process, which loads them from the cache (warm). The tool
// runs itself twice per row (one layer and pass: forward, backward-data,
// backward-weight) on a fresh cache folder and prints one table; batch 1,
// dense weights, the per-size default schedule (as the runtime picks without
// a tuning database).
//
//   slak-warm-start [--threads N] [--keep DIR]
#include "codegen/halide/CpuLkConv.h"
#include "codegen/halide/HalideThreads.h"
#include "codegen/halide/HostAot.h"
#include "codegen/halide/HostJit.h"
#include "runtime/PipelineStoreOnDisk.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <sstream>
#include <string>
#include <vector>

namespace {

using namespace slak::codegen;
using namespace slak::codegen::cpu;

struct Layer {
  const char *name;
  int channels, size, kernel;
};

// SLaK-T: one layer per stage, the long kernels' M x 5 strips plus 5x5.
const Layer kLayers[] = {{"stage 1 (124 ch, 56x56, 51x5+5x51+5x5)", 124, 56, 51},
                         {"stage 2 (249 ch, 28x28, 49x5+5x49+5x5)", 249, 28, 49},
                         {"stage 3 (499 ch, 14x14, 47x5+5x47+5x5)", 499, 14, 47},
                         {"stage 4 (998 ch, 7x7, 13x5+5x13+5x5)", 998, 7, 13}};
const char *kPasses[] = {"forward", "backward-data", "backward-weight"};

double millisecondsSince(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start)
      .count();
}

/// One process, one layer and pass: the one-time Halide start-up (thread
/// pool), then the pass's first call and a second call; prints
/// "startup first second compiled loaded".
int measure(const std::string &cacheDir, int l, int p, int threads) {
  slak::runtime::KernelCache cache(cacheDir);
  setPipelineStore(slak::runtime::makePipelineStoreOnDisk(cache));
  const Layer &layer = kLayers[l];
  KernelSpec spec;
  spec.channels = layer.channels;
  spec.branches = {Branch::same(layer.kernel, 5, true), Branch::same(5, layer.kernel, true),
                   Branch::same(5, 5, true)};
  const Shape shape{1, layer.channels, layer.size, layer.size, false};
  std::vector<float> x(shape.numel(), 0.5f), y(shape.numel()), dy(shape.numel(), 0.25f),
      dx(shape.numel());
  std::vector<std::vector<float>> w, dw;
  std::vector<const float *> wp;
  std::vector<float *> dwp;
  for (const Branch &b : spec.branches) {
    w.emplace_back(layer.channels * b.windowSize(), 0.01f);
    dw.emplace_back(layer.channels * b.windowSize());
  }
  for (size_t b = 0; b < w.size(); ++b) {
    wp.push_back(w[b].data());
    dwp.push_back(dw[b].data());
  }
  auto start = std::chrono::steady_clock::now();
  setHalideThreads(threads);
  const double startup = millisecondsSince(start);
  CpuLkConv conv(spec);
  double times[2];
  for (double &t : times) {
    start = std::chrono::steady_clock::now();
    if (p == 0)
      conv.forward(shape, x.data(), wp, nullptr, {y.data()}, threads);
    else if (p == 1)
      conv.backwardData(shape, {dy.data()}, wp, dx.data(), threads);
    else
      conv.backwardWeight(shape, x.data(), {dy.data()}, dwp, threads);
    t = millisecondsSince(start);
  }
  std::printf("%.3f %.3f %.3f %d %d\n", startup, times[0], times[1], compiledPipelineCount(),
              loadedPipelineCount());
  return 0;
}

struct Run {
  double startup = 0, first = 0, second = 0;
  int compiled = -1, loaded = -1;
};

bool runProcess(const std::string &self, const std::string &dir, int l, int p, int threads,
                Run &run) {
  const std::string command = "'" + self + "' --measure '" + dir + "' " + std::to_string(l) + " " +
                              std::to_string(p) + " --threads " + std::to_string(threads);
  FILE *pipe = ::popen(command.c_str(), "r");
  if (!pipe)
    return false;
  char line[256];
  int fields = 0;
  while (std::fgets(line, sizeof line, pipe))
    fields = std::max(fields, std::sscanf(line, "%lf %lf %lf %d %d", &run.startup, &run.first,
                                          &run.second, &run.compiled, &run.loaded));
  return ::pclose(pipe) == 0 && fields == 5;
}

} // namespace

int main(int argc, char **argv) {
  int threads = 2, layer = -1, pass = -1;
  std::string keep, measureDir;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--threads" && i + 1 < argc)
      threads = std::atoi(argv[++i]);
    else if (a == "--keep" && i + 1 < argc)
      keep = argv[++i];
    else if (a == "--measure" && i + 3 < argc) {
      measureDir = argv[++i];
      layer = std::atoi(argv[++i]);
      pass = std::atoi(argv[++i]);
    } else {
      std::fprintf(stderr,
                   "slak-warm-start: unknown argument %s\nusage: slak-warm-start [--threads N] "
                   "[--keep DIR]\n",
                   argv[i]);
      return 2;
    }
  }
  if (!measureDir.empty())
    return layer >= 0 && layer < 4 && pass >= 0 && pass < 3
               ? measure(measureDir, layer, pass, threads)
               : 2;

  std::string dir = keep;
  if (dir.empty()) {
    char pattern[] = "/tmp/slak-warm-start-XXXXXX";
    if (!::mkdtemp(pattern)) {
      std::perror("slak-warm-start: mkdtemp");
      return 1;
    }
    dir = pattern;
  }
  char self[4096];
  const ssize_t n = ::readlink("/proc/self/exe", self, sizeof self - 1);
  if (n <= 0)
    return 1;
  self[n] = '\0';
  std::printf("CPU pipelines, first call of one layer and pass in a fresh process (batch 1, %d "
              "threads); cold: empty kernel cache, warm: the next process on that cache\n\n",
              threads);
  std::printf("| layer | pass | cold first call | warm first call | steady call | cold / warm "
              "(first call minus steady) |\n|---|---|---|---|---|---|\n");
  double worst = 1e30, startupCold = 0, startupWarm = 0;
  for (int l = 0; l < 4; ++l)
    for (int p = 0; p < 3; ++p) {
      // One cache folder per row, so that each cold process compiles.
      const std::string rowDir = dir + "/" + std::to_string(l) + "-" + std::to_string(p);
      if (std::system(("rm -rf '" + rowDir + "'").c_str()) != 0)
        return 1;
      Run cold, warm;
      if (!runProcess(self, rowDir, l, p, threads, cold) ||
          !runProcess(self, rowDir, l, p, threads, warm)) {
        std::fprintf(stderr, "slak-warm-start: a measuring process failed\n");
        return 1;
      }
      if (warm.compiled != 0 || warm.loaded <= 0)
        std::fprintf(stderr, "slak-warm-start: the warm process compiled %d pipelines\n",
                     warm.compiled);
      const double steady = std::min(cold.second, warm.second);
      const double ratio = std::max(cold.first - steady, 0.0) / std::max(warm.first - steady, 0.05);
      worst = std::min(worst, ratio);
      startupCold = std::max(startupCold, cold.startup);
      startupWarm = std::max(startupWarm, warm.startup);
      std::printf("| %s | %s | %.1f ms | %.1f ms | %.1f ms | %.0fx |\n", kLayers[l].name,
                  kPasses[p], cold.first, warm.first, steady, ratio);
      std::fflush(stdout);
    }
  std::printf("\nsmallest cold / warm ratio: %.0fx. Once per process, before any call: Halide "
              "thread-pool start-up up to %.0f ms (cold) / %.0f ms (warm), not in the rows.\n",
              worst, startupCold, startupWarm);
  if (keep.empty())
    std::system(("rm -rf '" + dir + "'").c_str());
  return 0;
}

// The schedules the model chooses for the SLaK-T stage layers on a100 and
// h100 compile with nvcc for their architecture (sm_80 / sm_90) without
// register spills, checked on ptxas' report. No GPU is needed; without nvcc
// the test prints [SKIP]. It also prints the predicted times.
#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <map>
#include <regex>
#include <sstream>
#include <sys/stat.h>

#include "autotune/ScheduleText.h"
#include "autotune/Tuner.h"
#include "codegen/KernelEmitter.h"
#include "tests/autotune/AutotuneTestLayers.h"

#ifndef SLAK_NVCC
#define SLAK_NVCC ""
#endif

namespace slak::autotune {
namespace {

struct Ptxas {
  int registers = -1;
  int spillBytes = -1;
};

std::map<std::string, Ptxas> parsePtxas(const std::string &log) {
  static const std::regex entry(R"(Compiling entry function '([A-Za-z0-9_]+)')");
  static const std::regex spills(R"((\d+) bytes spill stores, (\d+) bytes spill loads)");
  static const std::regex used(R"(Used (\d+) registers)");
  std::map<std::string, Ptxas> out;
  std::string current;
  std::istringstream lines(log);
  for (std::string line; std::getline(lines, line);) {
    std::smatch m;
    if (std::regex_search(line, m, entry))
      out[current = m[1]];
    else if (!current.empty() && std::regex_search(line, m, spills))
      out[current].spillBytes = std::stoi(m[1]) + std::stoi(m[2]);
    else if (!current.empty() && std::regex_search(line, m, used))
      out[current].registers = std::stoi(m[1]);
  }
  return out;
}

TEST(NvccTest, ParsesPtxasReports) {
  const auto r = parsePtxas("ptxas info    : Compiling entry function 'k1' for 'sm_90'\n"
                            "    0 bytes stack frame, 8 bytes spill stores, 4 bytes spill loads\n"
                            "ptxas info    : Used 96 registers\n");
  ASSERT_EQ(r.count("k1"), 1u);
  EXPECT_EQ(r.at("k1").registers, 96);
  EXPECT_EQ(r.at("k1").spillBytes, 12);
}

class ChosenSchedulesCompile : public ::testing::TestWithParam<const char *> {};

TEST_P(ChosenSchedulesCompile, WithoutSpills) {
  const GpuDevice &device = findGpu(GetParam());
  const std::string nvcc = SLAK_NVCC;
  struct stat st;
  if (nvcc.empty() || stat(nvcc.c_str(), &st) != 0) {
    std::printf("[SKIP] nvcc not found (SLAK_NVCC='%s')\n", nvcc.c_str());
    GTEST_SKIP() << "nvcc not found";
  }
  std::vector<LayerDescription> layers = testLayers();
  for (const LayerDescription &l : slakTinyLayers(0.6, false, 8))
    layers.push_back(l); // inference form: summed output with bias
  std::vector<codegen::EmittedKernels> emitted;
  std::map<std::string, std::string> scheduleOf;
  std::printf("%s (%s), model-chosen schedules, predicted ms:\n", device.name.c_str(),
              device.arch().c_str());
  for (const LayerDescription &layer : layers) {
    TuneOptions options;
    options.kinds = layer.kinds;
    const TuningResult r = tuneGpu(layer.spec, layer.workload, device, options);
    KernelSpec spec = layer.spec;
    spec.schedule = parseSchedule(r.schedule);
    emitted.push_back(codegen::emitKernels(spec));
    for (const std::string &name : emitted.back().names)
      scheduleOf[name] = r.schedule;
    std::printf("  %-75s", layer.text.c_str());
    for (KernelKind k : r.kinds)
      std::printf(" %s %.4f (default %.4f)", codegen::kernelKindName(k),
                  r.predictedMs[kindIndex(k)], r.defaultPredictedMs[kindIndex(k)]);
    std::printf("\n    %s\n", r.schedule.c_str());
  }
  const std::string stem =
      ::testing::TempDir() + "slak_autotune_" + device.name + "_" + std::to_string(getpid());
  std::ofstream(stem + ".cu") << codegen::assembleSource(codegen::GpuLanguage::Cuda, emitted);
  const std::string command = nvcc + " -cubin -arch=" + device.arch() + " -Xptxas -v -o " + stem +
                              ".cubin " + stem + ".cu 2>&1";
  std::string log;
  FILE *pipe = popen(command.c_str(), "r");
  ASSERT_NE(pipe, nullptr);
  char buffer[4096];
  while (size_t n = fread(buffer, 1, sizeof buffer, pipe))
    log.append(buffer, n);
  ASSERT_EQ(pclose(pipe), 0) << command << "\n" << log;
  const auto reports = parsePtxas(log);
  int maxRegisters = 0;
  for (const auto &[name, schedule] : scheduleOf) {
    auto it = reports.find(name);
    ASSERT_NE(it, reports.end()) << "ptxas did not report " << name;
    EXPECT_EQ(it->second.spillBytes, 0)
        << name << " spills on " << device.arch() << " with " << it->second.registers
        << " registers; schedule " << schedule;
    maxRegisters = std::max(maxRegisters, it->second.registers);
  }
  std::printf("%s: %zu kernels compiled without spills, at most %d registers\n",
              device.arch().c_str(), scheduleOf.size(), maxRegisters);
  std::remove((stem + ".cu").c_str());
  std::remove((stem + ".cubin").c_str());
}

INSTANTIATE_TEST_SUITE_P(Gpu, ChosenSchedulesCompile, ::testing::Values("a100", "h100"),
                         [](const ::testing::TestParamInfo<const char *> &info) {
                           return std::string(info.param);
                         });

} // namespace
} // namespace slak::autotune

// Compiles every distinct CUDA source of the codegen case matrix, plus the
// default schedules of the real models' layers, with nvcc for sm_80 and sm_90
// (one translation unit per architecture), and checks ptxas' report: every
// entry point compiled, and the default schedules spill no registers. No GPU
// is needed; without nvcc the test prints [SKIP].
#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <map>
#include <regex>
#include <set>
#include <sys/stat.h>

#include "codegen/KernelEmitter.h"
#include "tests/codegen/CodegenCases.h"

#ifndef SLAK_NVCC
#define SLAK_NVCC ""
#endif

namespace slak::codegen::testing {
namespace {

struct PtxasReport {
  int registers = -1;
  int stackFrame = -1;
  int spillStores = -1;
  int spillLoads = -1;
};

/// Entry name -> ptxas statistics, from `nvcc -Xptxas -v` output.
std::map<std::string, PtxasReport> parsePtxas(const std::string &log) {
  std::map<std::string, PtxasReport> reports;
  static const std::regex entry(R"(Compiling entry function '([A-Za-z0-9_]+)')");
  static const std::regex frame(
      R"((\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads)");
  static const std::regex used(R"(Used (\d+) registers)");
  std::string current;
  std::istringstream lines(log);
  for (std::string line; std::getline(lines, line);) {
    std::smatch m;
    if (std::regex_search(line, m, entry)) {
      current = m[1];
      reports[current];
    } else if (!current.empty() && std::regex_search(line, m, frame)) {
      reports[current].stackFrame = std::stoi(m[1]);
      reports[current].spillStores = std::stoi(m[2]);
      reports[current].spillLoads = std::stoi(m[3]);
    } else if (!current.empty() && std::regex_search(line, m, used)) {
      reports[current].registers = std::stoi(m[1]);
    }
  }
  return reports;
}

/// Runs `command`, returning its exit status and combined output.
int run(const std::string &command, std::string &output) {
  FILE *pipe = popen((command + " 2>&1").c_str(), "r");
  if (!pipe)
    return -1;
  char buffer[4096];
  while (size_t n = fread(buffer, 1, sizeof buffer, pipe))
    output.append(buffer, n);
  return pclose(pipe);
}

bool fileExists(const std::string &path) {
  struct stat st;
  return !path.empty() && stat(path.c_str(), &st) == 0;
}

TEST(CudaCompileTest, ParsesPtxasReport) {
  const std::string log = "ptxas info    : Compiling entry function 'k_fwd' for 'sm_80'\n"
                          "ptxas info    : Function properties for k_fwd\n"
                          "    8 bytes stack frame, 12 bytes spill stores, 16 bytes spill loads\n"
                          "ptxas info    : Used 72 registers, used 1 barriers, 9 bytes smem\n"
                          "ptxas info    : Compiling entry function 'k_bwd' for 'sm_80'\n"
                          "    0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads\n"
                          "ptxas info    : Used 40 registers\n";
  const auto reports = parsePtxas(log);
  ASSERT_EQ(reports.size(), 2u);
  EXPECT_EQ(reports.at("k_fwd").registers, 72);
  EXPECT_EQ(reports.at("k_fwd").stackFrame, 8);
  EXPECT_EQ(reports.at("k_fwd").spillStores, 12);
  EXPECT_EQ(reports.at("k_fwd").spillLoads, 16);
  EXPECT_EQ(reports.at("k_bwd").registers, 40);
  EXPECT_EQ(reports.at("k_bwd").spillLoads, 0);
}

class CudaCompileTest : public ::testing::TestWithParam<int> {};

TEST_P(CudaCompileTest, MatrixCompilesAndDefaultsDoNotSpill) {
  const int arch = GetParam();
  const std::string nvcc = SLAK_NVCC;
  if (!fileExists(nvcc)) {
    std::printf("[SKIP] nvcc not found (SLAK_NVCC='%s')\n", nvcc.c_str());
    GTEST_SKIP() << "nvcc not found";
  }
  std::vector<EmittedKernels> layers;
  std::set<std::string> defaultKernels, allKernels;
  std::map<std::string, std::string> signatureOf;
  auto add = [&](const KernelSpec &spec, bool isDefault) {
    layers.push_back(emitKernels(spec));
    for (const std::string &name : layers.back().names) {
      allKernels.insert(name);
      signatureOf[name] = spec.signature();
      if (isDefault)
        defaultKernels.insert(name);
    }
  };
  for (const CodegenCase &c : codegenCases())
    add(c.spec, c.defaultSchedule);
  for (const CodegenCase &c : modelLayerCases())
    add(c.spec, true);

  const std::string dir = ::testing::TempDir();
  const std::string stem = dir + "slak_codegen_sm" + std::to_string(arch);
  std::ofstream(stem + ".cu") << assembleSource(GpuLanguage::Cuda, layers);
  std::string log;
  const int status = run(nvcc + " -cubin -arch=sm_" + std::to_string(arch) + " -Xptxas -v -o " +
                             stem + ".cubin " + stem + ".cu",
                         log);
  ASSERT_EQ(status, 0) << "nvcc failed on " << stem << ".cu:\n" << log;
  EXPECT_EQ(log.find("warning"), std::string::npos) << log;

  const auto reports = parsePtxas(log);
  EXPECT_EQ(reports.size(), allKernels.size());
  int maxRegisters = 0;
  for (const std::string &name : allKernels) {
    auto it = reports.find(name);
    ASSERT_NE(it, reports.end()) << "ptxas did not report " << name;
    ASSERT_GE(it->second.registers, 0) << name;
    if (defaultKernels.count(name)) {
      EXPECT_EQ(it->second.spillStores + it->second.spillLoads, 0)
          << name << " (default schedule) spills on sm_" << arch << " with " << it->second.registers
          << " registers: " << signatureOf[name];
      maxRegisters = std::max(maxRegisters, it->second.registers);
    }
  }
  std::printf("sm_%d: %zu kernels compiled (%zu with default schedules, at most %d registers)\n",
              arch, allKernels.size(), defaultKernels.size(), maxRegisters);
  // Per-kind register use of the real models' defaults, for the record.
  for (const CodegenCase &c : modelLayerCases()) {
    const std::string base = kernelBaseName(c.spec);
    std::printf("  %-36s", c.name.c_str());
    for (const char *suffix : {"_fwd", "_bwd_data", "_bwd_weight", "_bwd_weight_reduce"}) {
      const PtxasReport &r = reports.at(base + suffix);
      std::printf(" %s=%d/%d", suffix + 1, r.registers, r.spillStores + r.spillLoads);
    }
    std::printf("\n");
  }
}

INSTANTIATE_TEST_SUITE_P(Arch, CudaCompileTest, ::testing::Values(80, 90),
                         [](const ::testing::TestParamInfo<int> &info) {
                           return "sm" + std::to_string(info.param);
                         });

} // namespace
} // namespace slak::codegen::testing

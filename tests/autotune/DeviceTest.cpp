// The GPU table: the names the issue asks for, internally consistent
// numbers, name matching, and the unknown-name error.
#include <gtest/gtest.h>

#include <cmath>
#include <set>
#include <stdexcept>

#include "autotune/Device.h"

namespace slak::autotune {
namespace {

TEST(DeviceTest, TableHasTheRequiredGpus) {
  std::set<std::string> names;
  for (const GpuDevice &d : gpuTable())
    names.insert(d.name);
  for (const char *required : {"v100", "a100", "h100", "h200", "l4", "a10", "rtx3090", "rtx4090"})
    EXPECT_TRUE(names.count(required)) << required;
}

TEST(DeviceTest, PublishedPeakMatchesSmsLanesAndClock) {
  for (const GpuDevice &d : gpuTable()) {
    const double derived = 2.0 * d.sms * d.fp32LanesPerSm * d.boostClockGHz / 1000.0;
    EXPECT_NEAR(derived / d.fp32Tflops, 1.0, 0.02)
        << d.name << ": 2 x " << d.sms << " x " << d.fp32LanesPerSm << " x " << d.boostClockGHz
        << " GHz";
    EXPECT_GT(d.memoryGBs, 0) << d.name;
    EXPECT_GT(d.l2Bytes, 0) << d.name;
    EXPECT_GE(d.sharedPerBlock, 48 * 1024) << d.name;
    EXPECT_LE(d.sharedPerBlock, d.sharedPerSm) << d.name;
    EXPECT_FALSE(d.sources.empty()) << d.name;
  }
}

TEST(DeviceTest, KnownNumbers) {
  EXPECT_EQ(findGpu("a100").sms, 108);
  EXPECT_EQ(findGpu("h100").sms, 132);
  EXPECT_EQ(findGpu("h100").arch(), "sm_90");
  EXPECT_EQ(findGpu("a100").arch(), "sm_80");
  EXPECT_EQ(findGpu("l4").maxThreadsPerSm, 1536);
  EXPECT_EQ(findGpu("v100").sharedPerSm, 96 * 1024);
}

TEST(DeviceTest, MatchesDriverNames) {
  EXPECT_EQ(findGpu("A100").name, "a100");
  EXPECT_EQ(findGpu("NVIDIA A100-SXM4-80GB").name, "a100-80gb");
  EXPECT_EQ(canonicalGpuName("NVIDIA H100 80GB HBM3"), "h100");
  EXPECT_EQ(canonicalGpuName("NVIDIA H100 PCIe"), "h100-pcie");
  EXPECT_EQ(canonicalGpuName("NVIDIA GeForce RTX 4090"), "rtx4090");
  EXPECT_EQ(canonicalGpuName("NVIDIA L4"), "l4");
  EXPECT_EQ(canonicalGpuName("NVIDIA L40S"), "nvidia-l40s");
  EXPECT_EQ(findGpu("a100-80gb").family, "a100");
}

TEST(DeviceTest, UnknownGpuListsTheKnownOnes) {
  try {
    findGpu("gtx480");
    FAIL() << "no error for an unknown GPU";
  } catch (const std::invalid_argument &e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("'gtx480'"), std::string::npos) << what;
    for (const GpuDevice &d : gpuTable())
      EXPECT_NE(what.find(d.name), std::string::npos) << what;
    EXPECT_NE(what.find("local"), std::string::npos) << what;
  }
}

TEST(DeviceTest, HostCpuIsDescribed) {
  const CpuDevice cpu = hostCpu(3);
  EXPECT_EQ(cpu.threads, 3);
  EXPECT_GT(cpu.clockGHz, 0.1);
  EXPECT_GE(cpu.maxVectorBits, 128);
  EXPECT_LE(cpu.datapathBits, cpu.maxVectorBits);
  EXPECT_NE(cpu.name.find(":3t"), std::string::npos) << cpu.name;
}

} // namespace
} // namespace slak::autotune

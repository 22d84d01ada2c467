#include "autotune/Device.h"

#include <algorithm>
#include <cctype>
#include <fstream>
#include <stdexcept>
#include <thread>
#include <unistd.h>

namespace slak::autotune {
namespace {

constexpr int64_t KB = 1024;
constexpr int64_t MB = 1024 * 1024;

// Per compute capability (CUDA C++ Programming Guide, "Technical
// Specifications per Compute Capability"): shared memory per SM (largest
// carve-out) and per block (opt-in), 1 KB reserved per block from 8.0 on,
// resident threads and blocks per SM. 64K 32-bit registers per SM and 255
// per thread everywhere listed here.
GpuDevice ccLimits(int cc) {
  GpuDevice d;
  d.computeCapability = cc;
  switch (cc) {
  case 70: // Volta
    d.sharedPerSm = 96 * KB, d.sharedPerBlock = 96 * KB, d.sharedReservedPerBlock = 0;
    d.maxThreadsPerSm = 2048, d.maxBlocksPerSm = 32;
    break;
  case 80: // A100
    d.sharedPerSm = 164 * KB, d.sharedPerBlock = 163 * KB, d.sharedReservedPerBlock = 1 * KB;
    d.maxThreadsPerSm = 2048, d.maxBlocksPerSm = 32;
    break;
  case 86: // GA10x
    d.sharedPerSm = 100 * KB, d.sharedPerBlock = 99 * KB, d.sharedReservedPerBlock = 1 * KB;
    d.maxThreadsPerSm = 1536, d.maxBlocksPerSm = 16;
    break;
  case 89: // Ada
    d.sharedPerSm = 100 * KB, d.sharedPerBlock = 99 * KB, d.sharedReservedPerBlock = 1 * KB;
    d.maxThreadsPerSm = 1536, d.maxBlocksPerSm = 24;
    break;
  case 90: // Hopper
    d.sharedPerSm = 228 * KB, d.sharedPerBlock = 227 * KB, d.sharedReservedPerBlock = 1 * KB;
    d.maxThreadsPerSm = 2048, d.maxBlocksPerSm = 32;
    break;
  default:
    throw std::logic_error("ccLimits: no limits for compute capability " + std::to_string(cc));
  }
  return d;
}

GpuDevice gpu(const char *name, const char *family, const char *marketing, int cc, int sms,
              int lanes, double clockGHz, double tflops, double memGBs, int64_t l2, double l2GBs,
              const char *sources) {
  GpuDevice d = ccLimits(cc);
  d.name = name;
  d.family = family;
  d.marketingName = marketing;
  d.sms = sms;
  d.fp32LanesPerSm = lanes;
  d.boostClockGHz = clockGHz;
  d.fp32Tflops = tflops;
  d.memoryGBs = memGBs;
  d.l2Bytes = l2;
  d.l2BytesPerClock = l2GBs / clockGHz;
  d.sources = sources;
  return d;
}

// SMs, FP32 lanes/SM, boost clock, FP32 TFLOPS, DRAM GB/s and L2 size are
// NVIDIA's published numbers (whitepaper / datasheet named in the last
// column). The FP32 peak is 2 * SMs * lanes * clock, as published. L2 read
// bandwidth is not in NVIDIA's datasheets: V100/A100/H100 use microbenchmark
// figures (3.1 / 7.2 / 9.0 TB/s, e.g. Table 3 of doi:10.1016/j.ultsonch.
// 2023.106546, H200 as H100); GDDR parts assume 2.5x their DRAM bandwidth.
// The model uses L2 bandwidth only for halo re-reads, rarely the bound.
std::vector<GpuDevice> buildTable() {
  std::vector<GpuDevice> t;
  t.push_back(gpu("v100", "v100", "Tesla V100 SXM2", 70, 80, 64, 1.530, 15.7, 900, 6 * MB, 3133,
                  "NVIDIA Tesla V100 GPU Architecture whitepaper (WP-08608-001 v1.1) Table 1; "
                  "V100 datasheet (SXM2: 15.7 TFLOPS FP32, 900 GB/s HBM2)"));
  t.push_back(gpu("a100", "a100", "A100 SXM4 40GB", 80, 108, 64, 1.410, 19.5, 1555, 40 * MB, 7219,
                  "NVIDIA A100 Tensor Core GPU Architecture whitepaper (v1.0) Table 3; A100 "
                  "datasheet (40GB SXM: 19.5 TFLOPS FP32, 1555 GB/s HBM2)"));
  t.push_back(gpu("a100-80gb", "a100", "A100 SXM4 80GB", 80, 108, 64, 1.410, 19.5, 2039, 40 * MB,
                  7219,
                  "NVIDIA A100 datasheet (80GB SXM: 19.5 TFLOPS FP32, 2039 GB/s HBM2e); "
                  "A100 whitepaper Table 3"));
  t.push_back(gpu("h100", "h100", "H100 SXM5 80GB", 90, 132, 128, 1.980, 67.0, 3350, 50 * MB, 8986,
                  "NVIDIA H100 Tensor Core GPU Architecture whitepaper (v1.03) Table 3; H100 "
                  "datasheet (SXM: 67 TFLOPS FP32, 3.35 TB/s HBM3)"));
  t.push_back(gpu("h100-pcie", "h100", "H100 PCIe 80GB", 90, 114, 128, 1.755, 51.2, 2000, 50 * MB,
                  6000,
                  "NVIDIA H100 datasheet (PCIe: 51 TFLOPS FP32, 2 TB/s HBM2e); H100 whitepaper "
                  "Table 3 (114 SMs); L2 bandwidth assumed 3x DRAM"));
  t.push_back(gpu("h200", "h200", "H200 SXM 141GB", 90, 132, 128, 1.980, 67.0, 4800, 50 * MB, 8986,
                  "NVIDIA H200 Tensor Core GPU datasheet (SXM: 67 TFLOPS FP32, 4.8 TB/s "
                  "HBM3e); same GH100 SM configuration as H100 SXM5"));
  t.push_back(gpu("l4", "l4", "L4 24GB", 89, 58, 128, 2.040, 30.3, 300, 48 * MB, 750,
                  "NVIDIA L4 Tensor Core GPU datasheet (30.3 TFLOPS FP32, 300 GB/s GDDR6, "
                  "7424 CUDA cores = 58 SMs); Ada Lovelace architecture whitepaper (v2.1)"));
  t.push_back(gpu("a10", "a10", "A10 24GB", 86, 72, 128, 1.695, 31.2, 600, 6 * MB, 1500,
                  "NVIDIA A10 Tensor Core GPU datasheet (31.2 TFLOPS FP32, 600 GB/s GDDR6, "
                  "9216 CUDA cores = 72 SMs); NVIDIA Ampere GA102 GPU Architecture whitepaper"));
  t.push_back(gpu("rtx3090", "rtx3090", "GeForce RTX 3090", 86, 82, 128, 1.695, 35.6, 936, 6 * MB,
                  2340,
                  "NVIDIA Ampere GA102 GPU Architecture whitepaper (v2.0) Table 1: 82 SMs, "
                  "35.6 TFLOPS FP32, 936 GB/s GDDR6X, 6144 KB L2"));
  t.push_back(gpu("rtx4090", "rtx4090", "GeForce RTX 4090", 89, 128, 128, 2.520, 82.6, 1008,
                  72 * MB, 2520,
                  "NVIDIA Ada Lovelace GPU Architecture whitepaper (v1.01) Table 1: 128 SMs, "
                  "82.6 TFLOPS FP32, 1008 GB/s GDDR6X, 73728 KB L2"));
  return t;
}

std::string lower(std::string s) {
  for (char &ch : s)
    ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  return s;
}

/// Lower-case letters and digits only: "NVIDIA A100-SXM4-40GB" -> "nvidiaa100sxm440gb".
std::string squash(const std::string &s) {
  std::string out;
  for (char ch : s)
    if (std::isalnum(static_cast<unsigned char>(ch)))
      out += static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  return out;
}

/// Matches driver and marketing names to table keys.
const GpuDevice *matchDriverName(const std::string &name) {
  const std::string s = squash(name);
  auto has = [&](const char *part) { return s.find(part) != std::string::npos; };
  const char *key = nullptr;
  if (has("h200"))
    key = "h200";
  else if (has("h100"))
    key = has("pcie") ? "h100-pcie" : "h100";
  else if (has("a100"))
    key = has("80g") ? "a100-80gb" : "a100";
  else if (has("v100"))
    key = "v100";
  else if (has("rtx4090") || has("geforcertx4090"))
    key = "rtx4090";
  else if (has("rtx3090"))
    key = "rtx3090";
  else if (has("a10") && !has("a100"))
    key = "a10";
  else if (has("l4") && !has("l40"))
    key = "l4";
  if (!key)
    return nullptr;
  for (const GpuDevice &d : gpuTable())
    if (d.name == key)
      return &d;
  return nullptr;
}

std::string cpuinfoField(const std::string &field) {
  std::ifstream in("/proc/cpuinfo");
  for (std::string line; std::getline(in, line);) {
    if (line.compare(0, field.size(), field) != 0)
      continue;
    const size_t colon = line.find(':');
    if (colon == std::string::npos)
      continue;
    std::string value = line.substr(colon + 1);
    value.erase(0, value.find_first_not_of(" \t"));
    return value;
  }
  return {};
}

} // namespace

const std::vector<GpuDevice> &gpuTable() {
  static const std::vector<GpuDevice> table = buildTable();
  return table;
}

std::string knownGpuNames() {
  std::string names;
  for (const GpuDevice &d : gpuTable())
    names += (names.empty() ? "" : ", ") + d.name;
  return names;
}

const GpuDevice &findGpu(const std::string &name) {
  std::string key = lower(name);
  if (key.rfind("nvidia-", 0) == 0)
    key = key.substr(7);
  for (const GpuDevice &d : gpuTable())
    if (d.name == key)
      return d;
  if (const GpuDevice *d = matchDriverName(name))
    return *d;
  throw std::invalid_argument("unknown GPU '" + name + "'; known GPUs: " + knownGpuNames() +
                              " (or 'local' to measure the GPU of this machine)");
}

std::string canonicalGpuName(const std::string &driverName) {
  if (const GpuDevice *d = matchDriverName(driverName))
    return d->name;
  std::string out;
  for (char ch : lower(driverName))
    out += ch == ' ' ? '-' : ch;
  return out;
}

CpuDevice hostCpu(int threads) {
  CpuDevice d;
  const unsigned cores = std::max(1u, std::thread::hardware_concurrency());
  d.threads = threads > 0 ? threads : static_cast<int>(cores);
  d.modelName = cpuinfoField("model name");
  if (d.modelName.empty())
    d.modelName = "unknown";
  const std::string flags = " " + cpuinfoField("flags") + " ";
  const bool avx512 = flags.find(" avx512f ") != std::string::npos;
  const bool avx2 = flags.find(" avx2 ") != std::string::npos;
  d.maxVectorBits = avx512 ? 512 : avx2 ? 256 : 128;
  // Intel's AVX-512 cores load and multiply 512 bits at once; AMD's Zen 4
  // (family 25) splits 512-bit operations into two 256-bit halves.
  const bool amd = cpuinfoField("vendor_id") == "AuthenticAMD";
  int family = 0;
  try {
    family = std::stoi(cpuinfoField("cpu family"));
  } catch (const std::exception &) {
  }
  d.datapathBits = avx512 && !(amd && family <= 25) ? 512 : std::min(d.maxVectorBits, 256);
  d.vectorRegisters = avx512 ? 32 : 16;
  // Two FMA pipes and two vector loads per clock on every AVX2/AVX-512 core
  // of the last decade (Skylake-X .. Sapphire Rapids, Zen 2 .. Zen 5); a
  // 512-bit operation is at least as wide in lanes per clock as two 256-bit ones.
  d.fmaLanesPerCycle = avx2 ? 16 : 8;
  d.loadLanesPerCycle = avx2 ? 16 : 8;
  d.issuePerCycle = 4;
  if (const std::string mhz = cpuinfoField("cpu MHz"); !mhz.empty()) {
    try {
      d.clockGHz = std::stod(mhz) / 1000.0;
    } catch (const std::exception &) {
    }
  }
  if (long l1 = sysconf(_SC_LEVEL1_DCACHE_SIZE); l1 > 0)
    d.l1Bytes = l1;
  if (long l2 = sysconf(_SC_LEVEL2_CACHE_SIZE); l2 > 0)
    d.l2Bytes = l2;
  d.name = "cpu:" + d.modelName + ":" + std::to_string(d.threads) + "t";
  return d;
}

} // namespace slak::autotune

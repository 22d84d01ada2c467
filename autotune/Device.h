// Device: what the cost models know about a target. GPUs come from a table
// of named parts (published NVIDIA numbers, sources in Device.cpp beside each
// row) or from the properties a runtime reads off the local device; the CPU
// is described from /proc/cpuinfo and sysconf on the host.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace slak::autotune {

/// One GPU as the analytic model sees it.
struct GpuDevice {
  std::string name;   // table key: "a100", "h100", ...
  std::string family; // lookups fall back to it ("a100" for "a100-80gb")
  std::string marketingName;
  int computeCapability = 80; // 80 = sm_80
  int sms = 0;
  int fp32LanesPerSm = 64; // FP32 FMA lanes per SM per clock
  double boostClockGHz = 1.0;
  int64_t sharedPerSm = 0;            // bytes, largest carve-out
  int64_t sharedPerBlock = 0;         // bytes, opt-in maximum (static kernels get 48 KB)
  int64_t sharedReservedPerBlock = 0; // bytes the system keeps per resident block
  int registersPerSm = 65536;
  int maxRegistersPerThread = 255;
  int maxThreadsPerSm = 2048;
  int maxThreadsPerBlock = 1024;
  int maxBlocksPerSm = 32;
  double fp32Tflops = 0; // published peak (2 * lanes * SMs * clock)
  double memoryGBs = 0;  // DRAM bandwidth, GB/s
  int64_t l2Bytes = 0;
  double l2BytesPerClock = 0; // whole-chip L2 read bandwidth
  std::string sources;        // where the numbers come from

  /// sm_XX for nvcc -arch.
  std::string arch() const { return "sm_" + std::to_string(computeCapability); }
};

/// The named GPUs, in table order.
const std::vector<GpuDevice> &gpuTable();
/// "v100, a100, a100-80gb, ...": for help texts and errors.
std::string knownGpuNames();
/// The table entry for `name` (case-insensitive; "A100", "nvidia-a100" and
/// "NVIDIA A100-SXM4-40GB" all work). Throws std::invalid_argument listing
/// the known names when there is none.
const GpuDevice &findGpu(const std::string &name);
/// The table key for a driver's device name ("NVIDIA H100 80GB HBM3" ->
/// "h100"), or the name lower-cased with spaces as '-' when unknown.
std::string canonicalGpuName(const std::string &driverName);

/// The host CPU as the Halide cost model sees it. Per-cycle rates are per
/// core and in fp32 lanes, so 256- and 512-bit code compare directly.
struct CpuDevice {
  std::string name; // "cpu:<model name>:<threads>t", the database key
  std::string modelName;
  int threads = 1;         // worker threads the pipelines run on
  int maxVectorBits = 256; // 512 with AVX-512
  /// Width of the load/FMA datapath: 512-bit operations on a 256-bit
  /// datapath (Zen 4) run as two halves, so cache-line splits are those of
  /// 256-bit loads.
  int datapathBits = 256;
  double clockGHz = 2.5;
  double fmaLanesPerCycle = 16;   // fp32 FMA lanes per core per clock
  double loadLanesPerCycle = 16;  // fp32 lanes loaded per core per clock (L1 hits)
  double l2LoadLanesPerCycle = 8; // the same from L2 (32 bytes per clock: an assumption)
  double issuePerCycle = 4;       // vector + scalar instructions per clock
  int vectorRegisters = 16;       // 32 with AVX-512
  int64_t l1Bytes = 32 * 1024;
  int64_t l2Bytes = 1024 * 1024;
};

/// The host, running `threads` worker threads (<= 0: every core).
CpuDevice hostCpu(int threads = 0);

} // namespace slak::autotune

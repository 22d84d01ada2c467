// GpuCostModel: an analytic time estimate for one emitted kernel kind of a
// spec on a named GPU, without running anything. It follows the emitter's
// algorithm (codegen/KernelEmitter.h) step by step over the kernel plan
// (codegen/KernelPlan.h):
//
//   per block:  staging (input tile + halo, taps) and the tap loop, counted
//               as per-thread FMAs, shared-memory loads and other
//               instructions, from the schedule, the windows and the live
//               tap fraction (tap-table walks pay two extra loads per tap,
//               masked walks a test per tap, out-of-image taps of the
//               window are computed like any other);
//   per SM:     time of a block = max(FMA pipe, shared-load pipe, issue
//               slots), divided by a latency-hiding factor that grows with
//               resident warps x independent accumulators;
//   occupancy:  resident blocks per SM from threads, registers (estimated,
//               see ScheduleSpace.h) and shared memory (+ the per-block
//               reserve);
//   waves:      full rounds of (SMs x resident blocks) blocks, then a tail
//               round with the remaining blocks spread over the SMs (each
//               round at least one block's own time plus its staging and
//               barrier waits);
//   memory:     DRAM bytes (each tensor once) over DRAM bandwidth and L2
//               bytes (every staged tile, halo included) over L2 bandwidth;
//   total:      max(compute, memory) plus a launch overhead per kernel.
//
// Backward-weight adds its fixed-order reduction kernel. Times are meant to
// rank schedules and to give the right order of magnitude, not to be exact.
#pragma once

#include <string>

#include "autotune/Device.h"
#include "autotune/ScheduleSpace.h"
#include "autotune/Workload.h"

namespace slak::autotune {

struct GpuPrediction {
  double ms = 0;        // predicted time of the kind
  double computeMs = 0; // SM-side time (instruction throughput, waves)
  double memoryMs = 0;  // max(DRAM, L2) time
  double launchMs = 0;
  int64_t blocks = 0;
  int threads = 0;
  int blocksPerSm = 0;     // resident blocks per SM
  double occupancy = 0;    // resident warps / maximum
  double waves = 0;        // blocks / (SMs * resident blocks)
  double fmasPerLoad = 0;  // FMAs per shared-memory load in the inner loop
  double haloOverhead = 0; // staged input elements per useful output
  double usefulGflop = 0;  // 2 x live in-image taps x outputs
  const char *bound = "";  // "fma", "shared", "issue", "latency", "dram", "l2"
  std::string str() const; // one line for logs and --verbose
};

/// Predicts `kind` (Forward, BackwardData or BackwardWeight, the latter with
/// its reduction) of `spec` with spec.schedule on `device`. `candidate` is
/// describeSchedule(spec): its kernel plan gives the staged tiles, the
/// backward-weight form, shared memory and registers.
GpuPrediction predictGpu(const KernelSpec &spec, const Workload &workload, const GpuDevice &device,
                         KernelKind kind, const GpuCandidate &candidate);
GpuPrediction predictGpu(const KernelSpec &spec, const Workload &workload, const GpuDevice &device,
                         KernelKind kind);

/// 2 x (live taps of each output that land in the image) x outputs, in
/// GFLOP: the work every schedule must do (a roofline floor).
double usefulGflop(const KernelSpec &spec, const Workload &workload, KernelKind kind);

} // namespace slak::autotune

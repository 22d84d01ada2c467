// ScheduleSpace: the legal GPU schedules (codegen::Schedule) for one
// KernelSpec on one device. A schedule has two independent parts: the conv
// part (tile, block, staging, masked walk) read by forward and
// backward-data, and the weight part (split, threads, tile, rows per
// thread) read by backward-weight; only maskedWalk couples them (it picks
// the blocked backward-weight kernel). Each part is enumerated with the
// other held at a base schedule, which keeps the space in the thousands
// instead of millions; the search recombines the best of each part.
//
// A schedule is legal when spec.validate() passes, every kernel fits the
// static shared-memory limit (the kernel plan decides) and the device's
// per-block limits, and the estimated registers per thread fit the budget
// the emitted __launch_bounds__ promise (so ptxas does not spill).
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "autotune/Device.h"
#include "autotune/Workload.h"
#include "codegen/KernelPlan.h"

namespace slak::autotune {

enum class SchedulePart { Conv, Weight };
const char *schedulePartName(SchedulePart part); // "conv", "weight"
/// The part a kernel kind reads.
SchedulePart partOf(KernelKind kind);

/// One schedule with its kernel plan and what the cost model and the fit
/// check read from it.
struct GpuCandidate {
  codegen::Schedule schedule;
  codegen::KernelPlan plan;
  std::array<int, codegen::kNumKernelKinds> threads{};
  std::array<int64_t, codegen::kNumKernelKinds> sharedBytes{};
  /// Estimated registers per thread of each kind (codegen::estimateRegisters).
  std::array<int, codegen::kNumKernelKinds> registers{};
};

using codegen::estimateRegisters;
using codegen::registerBudget;

/// The plan of spec.schedule and the facts the cost model needs. Throws
/// std::invalid_argument when the schedule is illegal for the spec (a kernel
/// overflows the static shared-memory limit).
GpuCandidate describeSchedule(const KernelSpec &spec);
/// Empty when `candidate` fits `device` (threads, shared memory, register
/// budget), else why not.
std::string checkFits(const GpuCandidate &candidate, const GpuDevice &device);

/// Called with (done, total) while the space is checked; may be empty.
using ProgressCallback = std::function<void(size_t, size_t)>;

/// Every legal schedule of `part` for `spec` on `device`, the other part
/// taken from `base` (a legal schedule, e.g. codegen::defaultSchedule). The
/// values tried: conv: blockW 8..128, blockH 1..32, rows per thread
/// 1/2/4/7/8/14/16, columns per thread 1/2/4/7, staging on/off, masked walk
/// for sparse specs; weight: threads 128..1024, split 1..64 (and base's),
/// tile 1..16 x 8..64, rows per thread 1..8 (blocked kernels only). Tiles
/// that would compute more than twice the image are skipped. May be empty.
std::vector<GpuCandidate> gpuScheduleSpace(const KernelSpec &spec, const Workload &workload,
                                           const GpuDevice &device, SchedulePart part,
                                           const codegen::Schedule &base,
                                           const ProgressCallback &progress = {});

/// The space of the part `kind` reads, around codegen::defaultSchedule(spec,
/// workload density).
std::vector<GpuCandidate> gpuScheduleSpace(const KernelSpec &spec, const Workload &workload,
                                           const GpuDevice &device, KernelKind kind);

/// `conv`'s conv fields with `weight`'s weight fields.
codegen::Schedule combineParts(const codegen::Schedule &conv, const codegen::Schedule &weight);

} // namespace slak::autotune

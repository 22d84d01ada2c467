// CpuScheduleSpace: the legal codegen::cpu::CpuSchedule values of a layer
// for the CPU (Halide) tuner, and the CPU pass each kernel kind runs.
#pragma once

#include <vector>

#include "autotune/Device.h"
#include "autotune/ScheduleSpace.h"
#include "autotune/Tuner.h"
#include "autotune/Workload.h"
#include "codegen/halide/CpuSchedule.h"
#include "codegen/halide/TapPlan.h"

namespace slak::autotune {

using codegen::cpu::CpuSchedule;

/// The CPU pipeline pass that computes `kind`.
codegen::cpu::Pass cpuPassOf(KernelKind kind);

/// The legal CPU schedules of `part` for `spec` on `cpu`, the other part's
/// fields taken from `base`. Conv: vector width 8/16 (16 needs AVX-512),
/// tile rows 1..8 and tall tiles of 10..28 rows x tile vectors 1..8 within
/// the vector registers, vertical tap blocks of 1..4 rows (tapBlock),
/// transposeWide where a branch is wider than tall, alignLoads, mergeTaps for
/// summed outputs. Weight: weightTaps 1..28 x weightVectors 1..8 (and
/// the coupled fields: vector axis, vector width, transposeWide,
/// alignLoads). Both vector axes: along the width, and across channels
/// (channelsLast, 8 or 16 lanes, tiles of pixels) for layers of at least 8
/// channels. Tiles wider than twice the image are skipped.
std::vector<CpuSchedule> cpuScheduleSpace(const KernelSpec &spec, const Workload &workload,
                                          const CpuDevice &cpu, SchedulePart part,
                                          const CpuSchedule &base);

} // namespace slak::autotune

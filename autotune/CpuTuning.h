// CpuTuning: the CPU (Halide) backend's side of the autotuner: tuneCpu
// searches the CPU schedule space (CpuScheduleSpace.h) ranked by the cost
// model (CpuCostModel.h) and, with a timer (CpuKernelTimer.h), measured for
// real. Built only where the Halide backend is (target slak_halide);
// SLAK_AUTOTUNE_WITH_CPU is defined for users of slak_autotune then.
#pragma once

#include "autotune/CpuCostModel.h"
#include "autotune/CpuKernelTimer.h"
#include "autotune/CpuScheduleLookup.h"
#include "autotune/CpuScheduleSpace.h"
#include "autotune/Device.h"
#include "autotune/Tuner.h"
#include "autotune/Workload.h"

namespace slak::autotune {

/// CPU tuning on the host: model only without a timer, measured with one.
/// The key's device is cpu.name (model name and thread count).
TuningResult tuneCpu(const KernelSpec &spec, const Workload &workload, const CpuDevice &cpu,
                     const TuneOptions &options, CpuKernelTimer *timer = nullptr);

} // namespace slak::autotune

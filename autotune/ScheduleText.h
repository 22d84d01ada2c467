// ScheduleText: schedules as the text the tuning database stores:
// codegen::Schedule::str() ("tile=16x32 block=4x32 stageInput=1 ...") and
// codegen::cpu::CpuSchedule::str() ("vec=8 tile=4x7 ..."), read through each
// schedule's field table (codegen/ScheduleFields.h). Parsing is strict: an
// unknown or missing field is an error, so a database written by another
// code generator is never half-read.
#pragma once

#include <string>

#include "codegen/KernelSpec.h"
#include "codegen/halide/CpuSchedule.h"

namespace slak::autotune {

/// Inverse of codegen::Schedule::str(). Throws std::invalid_argument naming
/// the bad field; the result is validated (Schedule::validate()).
codegen::Schedule parseSchedule(const std::string &text);

/// Inverse of CpuSchedule::str(); validated. Throws std::invalid_argument.
codegen::cpu::CpuSchedule parseCpuSchedule(const std::string &text);

} // namespace slak::autotune

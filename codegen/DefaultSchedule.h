// DefaultSchedule: a sensible schedule for a KernelSpec without tuning. It
// fits the tile to the image (a 7x7 image does not get a 32x32 tile), keeps
// register use moderate (at most 8x2 outputs per thread) and stays within the
// shared-memory limit of every emitted kernel. The autotuner starts from it.
#pragma once

#include "codegen/KernelSpec.h"

namespace slak::codegen {

/// A legal schedule for `spec` (spec.schedule is ignored). Dynamic sizes are
/// assumed to be around 56x56. `sparseDensity` is the live fraction of the
/// sparse branches' taps when known (BranchTapStats::density): from 0.3 up,
/// sparse branches use the masked window walk, below (or unknown, < 0) they
/// walk the tap table. Throws std::invalid_argument when the spec itself is
/// illegal or no schedule fits.
Schedule defaultSchedule(const KernelSpec &spec, double sparseDensity = -1.0);

} // namespace slak::codegen

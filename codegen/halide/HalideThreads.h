// HalideThreads: where the pipelines' parallel loops run. LibTorch computes
// its own ops on an OpenMP team; a second pool (Halide's) on the same cores
// competes with that team's spinning waiters (a SLaK-T step took twice as
// long). Where the process has OpenMP loaded (LibTorch's libgomp), the
// pipelines run their parallel loops on the same team; elsewhere on
// Halide's own pool, sized like LibTorch's.
#pragma once

#include <Halide.h>

namespace slak::codegen::cpu {

/// Sets the number of threads the pipelines' parallel loops use (the
/// runtime passes at::get_num_threads()); cheap when unchanged. `threads`
/// <= 0 means the number of cores.
void setHalideThreads(int threads);

/// Makes `pipeline` run its parallel loops on the process's OpenMP team when
/// there is one (see the header comment); call before its first realize.
void useHostThreadPool(Halide::Pipeline &pipeline);

/// Whether parallel loops run on an OpenMP team (else Halide's pool).
bool parallelLoopsOnOpenMp();

} // namespace slak::codegen::cpu

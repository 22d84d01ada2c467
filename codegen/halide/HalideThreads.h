// HalideThreads: the size of Halide's JIT thread pool, shared by every
// pipeline of the process.
#pragma once

namespace slak::codegen::cpu {

/// Sets the size of Halide's JIT thread pool (the runtime passes
/// at::get_num_threads()); cheap when unchanged. `threads` <= 0 means the
/// number of cores.
void setHalideThreads(int threads);

} // namespace slak::codegen::cpu

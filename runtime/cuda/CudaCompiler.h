// CudaCompiler: CUDA source -> device image through NVRTC, remembered in the
// KernelCache (memory and disk), keyed by the source, the compile options,
// the target architecture, the NVRTC version and the runtime version.
// LibTorch-free; needs NVRTC but no driver or GPU.
#pragma once

#include <memory>
#include <string>

#include "runtime/KernelCache.h"
#include "runtime/cuda/Nvrtc.h"

namespace slak::runtime::cuda {

/// Options every kernel is compiled with (part of the key).
const std::vector<std::string> &defaultNvrtcOptions();

/// The cache key of `source` compiled for compute capability `arch`.
CacheKey cudaImageKey(const std::string &source, int arch);

/// The image of `source` for a device of compute capability `arch` (e.g.
/// 90), compiled on a cache miss. `name` labels compiler messages.
std::shared_ptr<const NvrtcImage> compileCuda(const std::string &source, const std::string &name,
                                              int arch, KernelCache &cache = KernelCache::global());

} // namespace slak::runtime::cuda

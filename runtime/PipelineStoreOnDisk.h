// PipelineStoreOnDisk: the kernel cache as the store of compiled CPU
// pipelines (codegen/halide/PipelineStore.h), entries under the "halide"
// kind, keyed by a hash of the pipeline's description and the runtime
// version, written and verified like the GPU kernels' images.
#pragma once

#include "codegen/halide/PipelineStore.h"
#include "runtime/KernelCache.h"

#include <memory>

namespace slak::runtime {

/// The kernel-cache key of a CPU pipeline described by `description`.
CacheKey pipelineCacheKey(const std::string &description);

/// A store over `cache`; null when the cache keeps nothing on disk (no
/// folder), so that pipelines are JIT-compiled instead.
std::shared_ptr<codegen::cpu::PipelineStore> makePipelineStoreOnDisk(KernelCache &cache);

} // namespace slak::runtime

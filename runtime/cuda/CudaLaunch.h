// CudaLaunch: runs a bound kernel launch (codegen/KernelArguments.h) on a
// loaded CudaModule: the kernel parameters in the binder's order, device
// pointers looked up by KernelBuffer. The CUDA backend and the autotuner's
// CUDA timer both launch through it. LibTorch-free.
#pragma once

#include <cstdint>

#include "codegen/KernelArguments.h"
#include "runtime/cuda/CudaDriver.h"

namespace slak::runtime::cuda {

/// Device buffers of one pass: a pointer and its size in bytes per
/// KernelBuffer (null and 0 where the pass reads none).
struct DeviceBuffers {
  codegen::KernelBuffers<void *> pointers{};
  codegen::KernelBuffers<int64_t> bytes{};

  void set(codegen::KernelBuffer which, void *pointer, int64_t size) {
    pointers[static_cast<int>(which)] = pointer;
    bytes[static_cast<int>(which)] = size;
  }
};

/// Launches `launch` on `stream` (nullptr: the legacy default stream).
/// Throws CudaError naming the kernel and the buffer when a buffer the launch
/// reads is missing or smaller than the launch needs.
void launchBound(CudaModule &module, const codegen::KernelLaunch &launch,
                 const DeviceBuffers &buffers, CUstream stream);

} // namespace slak::runtime::cuda

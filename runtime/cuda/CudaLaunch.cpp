#include "runtime/cuda/CudaLaunch.h"

#include <string>
#include <vector>

#include "runtime/cuda/Nvrtc.h"

namespace slak::runtime::cuda {

void launchBound(CudaModule &module, const codegen::KernelLaunch &launch,
                 const DeviceBuffers &buffers, CUstream stream) {
  // cuLaunchKernel reads each argument's value through a pointer: keep the
  // values in place until the call returns.
  codegen::KernelBuffers<void *> pointers = buffers.pointers;
  std::vector<int32_t> scalars(launch.arguments.size());
  std::vector<void *> args;
  for (size_t i = 0; i < launch.arguments.size(); ++i) {
    const codegen::BoundArgument &a = launch.arguments[i];
    if (!a.parameter.isBuffer()) {
      scalars[i] = a.value;
      args.push_back(&scalars[i]);
      continue;
    }
    const int b = static_cast<int>(a.parameter.buffer);
    if (!pointers[b] || buffers.bytes[b] < a.bytes)
      throw CudaError(launch.name + " needs a " + codegen::kernelBufferName(a.parameter.buffer) +
                      " buffer of at least " + std::to_string(a.bytes) + " bytes, got " +
                      (pointers[b] ? std::to_string(buffers.bytes[b]) : std::string("none")));
    args.push_back(&pointers[b]);
  }
  module.launch(launch.name, launch.geometry.blocks, launch.geometry.threads, stream,
                std::move(args));
}

} // namespace slak::runtime::cuda

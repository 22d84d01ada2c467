// LkConvExecutor: runs the emitted kernels of one KernelSpec on an OpenCL
// device with host buffers: forward, backward-data and backward-weight (both
// phases). Host data is f32; it is encoded to the spec's element type on
// upload and decoded on download. Buffer layouts: codegen/BufferLayout.h.
// The Runtime's OpenCL backend reuses it; tests run it on PoCL against the
// reference oracle.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "codegen/KernelArguments.h"
#include "codegen/KernelEmitter.h"
#include "codegen/TapTable.h"
#include "runtime/opencl/OpenCLContext.h"

namespace slak::runtime::opencl {

/// Sets the arguments of `kernel` from `launch` (each buffer parameter takes
/// its handle from `buffers`, each scalar its bound value), enqueues the
/// launch's grid on `queue` and waits. Throws std::invalid_argument when a
/// buffer the launch reads is missing or smaller than the launch needs.
void runKernel(cl_kernel kernel, cl_command_queue queue, const codegen::KernelLaunch &launch,
               const codegen::KernelBuffers<cl_mem> &buffers);

/// Builds one program holding the kernels of all `layers` (deduplicated).
std::shared_ptr<Program> buildProgram(std::shared_ptr<Context> context,
                                      const std::vector<codegen::EmittedKernels> &layers);

class LkConvExecutor {
public:
  /// `program` must contain `kernels` (see buildProgram).
  LkConvExecutor(std::shared_ptr<Program> program, codegen::EmittedKernels kernels);

  const codegen::KernelSpec &spec() const { return kernels_.spec; }

  /// y for an n x C x h x w input: [N][C][Ho][Wo], or [B][N][C][Ho][Wo] with
  /// per-branch outputs. `weights` are all branches concatenated; `bias` is
  /// [C] or empty.
  std::vector<float> forward(int64_t n, int64_t h, int64_t w, const std::vector<float> &x,
                             const std::vector<float> &weights, const codegen::TapTable &table,
                             const std::vector<float> &bias);
  /// dx [N][C][h][w] from dy ([N][C][Ho][Wo], or one per branch concatenated).
  std::vector<float> backwardData(int64_t n, int64_t h, int64_t w, const std::vector<float> &dy,
                                  const std::vector<float> &weights,
                                  const codegen::TapTable &table);
  /// dW, all branches concatenated like the weights (dead taps 0 unless
  /// spec.denseWeightGrad).
  std::vector<float> backwardWeight(int64_t n, int64_t h, int64_t w, const std::vector<float> &x,
                                    const std::vector<float> &dy, const codegen::TapTable &table);

  /// Runs the launches of pass `kind` (codegen::bindPass) for a batch-n
  /// input of h x w on device buffers and waits. For callers that keep their
  /// buffers on the device.
  void run(codegen::KernelKind kind, int64_t n, int64_t h, int64_t w,
           const codegen::KernelBuffers<cl_mem> &buffers);

private:
  void checkTable(const codegen::TapTable &table) const;

  std::shared_ptr<Program> program_;
  codegen::EmittedKernels kernels_;
};

} // namespace slak::runtime::opencl

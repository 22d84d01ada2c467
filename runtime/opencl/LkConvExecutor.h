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

#include "codegen/KernelEmitter.h"
#include "codegen/TapTable.h"
#include "runtime/opencl/OpenCLContext.h"

namespace slak::runtime::opencl {

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

  /// Runs kernel `kind` on device buffers and waits: `buffers` are the entry
  /// point's pointer arguments in order (codegen/KernelEmitter.h); batch,
  /// height and width follow for all but the reduce kernel. For callers that
  /// keep their buffers on the device.
  void launch(codegen::KernelKind kind, int64_t n, int64_t h, int64_t w,
              const std::vector<cl_mem> &buffers);

private:
  void checkTable(const codegen::TapTable &table) const;

  std::shared_ptr<Program> program_;
  codegen::EmittedKernels kernels_;
};

} // namespace slak::runtime::opencl

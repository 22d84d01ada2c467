// KernelArguments: the one place that says what each emitted entry point
// takes and how a launch binds it: which buffers and scalars in which order,
// how many bytes each buffer must hold (codegen/BufferLayout.h) and the
// launch geometry (codegen/KernelPlan.h). The emitter writes the entry
// points' parameter lists from kernelParameters; the CUDA and OpenCL
// launchers pass what bindPass gives, in that order, with their own buffer
// handles looked up by KernelBuffer.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "codegen/KernelEmitter.h"

namespace slak::codegen {

/// The buffers the kernels read and write (layouts: codegen/BufferLayout.h).
enum class KernelBuffer { X, Weights, TapOffsets, Taps, Bias, Y, Dy, Dx, Workspace, Dw };
constexpr int kNumKernelBuffers = 10;
const char *kernelBufferName(KernelBuffer buffer); // "x", "weights", ...

/// A backend's handle (cl_mem, a device pointer) for each KernelBuffer.
template <typename Handle> using KernelBuffers = std::array<Handle, kNumKernelBuffers>;

enum class KernelScalar { Batch, Height, Width };

struct KernelParameter {
  enum class Type {
    ConstElements, // const T * (T: the spec's element type)
    Elements,      // T *
    ConstInts,     // const int *
    ConstFloats,   // const float *
    Floats,        // float *
    Int,           // int, by value
  };
  std::string name; // as in the kernel text
  Type type = Type::Int;
  KernelBuffer buffer = KernelBuffer::X; // pointer parameters
  KernelScalar scalar = KernelScalar::Batch;

  bool isBuffer() const { return type != Type::Int; }
};

/// The parameters of entry point `kind`, in order:
///   forward          x, wt, tapOffsets, taps, bias, y, batch, height, width
///   backward-data    dy, wt, tapOffsets, taps, dx, batch, height, width
///   backward-weight  x, dy, tapOffsets, taps, workspace, batch, height, width
///   reduce           workspace, dw
const std::vector<KernelParameter> &kernelParameters(KernelKind kind);

struct BoundArgument {
  KernelParameter parameter;
  /// Buffers: bytes the buffer must hold at least (the tap list's own
  /// length for taps, at least one entry). Scalars: 4.
  int64_t bytes = 0;
  int32_t value = 0; // scalars
};

/// One kernel launch with its arguments bound.
struct KernelLaunch {
  KernelKind kind = KernelKind::Forward;
  std::string name;
  LaunchGeometry geometry;
  std::vector<BoundArgument> arguments;
};

/// The launch of entry point `kind` of `kernels` for a batch-n input of h x w.
/// Throws std::invalid_argument naming the bad size (see launchBlocks, and
/// sizes past the kernels' 32-bit ints).
KernelLaunch bindKernel(const EmittedKernels &kernels, KernelKind kind, int64_t n, int64_t h,
                        int64_t w);

/// The launches one pass needs, in order: forward or backward-data is one
/// kernel; backward-weight (either weight kind) is phase 1 then the reduction,
/// which share the workspace.
std::vector<KernelLaunch> bindPass(const EmittedKernels &kernels, KernelKind kind, int64_t n,
                                   int64_t h, int64_t w);

/// The most bytes each buffer must hold over `launches` (0: unused).
KernelBuffers<int64_t> bufferBytes(const std::vector<KernelLaunch> &launches);

} // namespace slak::codegen

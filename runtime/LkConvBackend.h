// LkConvBackend: the interface every backend of the lk_conv op implements
// (CPU via Halide or the reference oracle, CUDA via NVRTC + the driver API,
// OpenCL), and the registry that compiles one kernel per (backend, device,
// KernelSpec signature) and keeps it. Callers (the op, the module, the
// kernel-package loader) hand over contiguous tensors of the spec's dtype on
// the backend's device; the backend writes the preallocated outputs.
//
// Buffer layouts are codegen/BufferLayout.h's: x, dx [N][C][H][W]; y and dy
// [N][C][Ho][Wo] or, with per-branch outputs, [B][N][C][Ho][Wo]; weights and
// dW all branches' [C][KH][KW] concatenated (one flat tensor); bias [C].
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "codegen/KernelEmitter.h"
#include "codegen/KernelSpec.h"
#include "codegen/halide/CpuSchedule.h"
#include "runtime/LayerTaps.h"

namespace slak::runtime {

enum class BackendKind {
  Auto,      // by device: CPU tensors -> Cpu, CUDA tensors -> Cuda
  Cpu,       // Halide pipelines where built, else the reference oracle
  Reference, // the reference oracle (slow; tests and last resort)
  OpenCL,    // CPU tensors through the OpenCL device (PoCL in CI); opt-in
  Cuda,
};

const char *backendKindName(BackendKind kind); // "auto", "cpu", ...
/// Parses "auto", "cpu", "reference", "opencl", "cuda"; throws c10::Error
/// naming the value and the choices.
BackendKind parseBackendKind(const std::string &name);
/// The backend that runs tensors on `device` for the requested kind; throws
/// c10::Error when they do not fit (e.g. "opencl" with a CUDA tensor).
BackendKind resolveBackend(BackendKind requested, const c10::Device &device);
/// Whether this build has the OpenCL backend.
bool openclBackendBuilt();
/// Whether it is built and finds an OpenCL device (the first call opens it).
bool openclDeviceAvailable();

class LkConvKernel {
public:
  virtual ~LkConvKernel() = default;
  const codegen::KernelSpec &spec() const { return spec_; }
  virtual BackendKind kind() const = 0;
  /// The schedule the kernel was built with and where it came from, e.g.
  /// "cpu vec=16 tile=4x7 ... (measured, tuning.db)"; empty where the spec's
  /// own GPU schedule says it all.
  virtual std::string scheduleDescription() const { return {}; }

  /// y = the layer applied to x (plus bias when the spec has one).
  virtual void forward(const at::Tensor &x, const at::Tensor &weights, const at::Tensor &bias,
                       LayerTaps &taps, at::Tensor &y) = 0;
  /// dx from dy (flipped taps).
  virtual void backwardData(const at::Tensor &dy, const at::Tensor &weights, LayerTaps &taps,
                            at::Tensor &dx) = 0;
  /// dW of all branches; dead taps get 0 unless spec.denseWeightGrad.
  virtual void backwardWeight(const at::Tensor &x, const at::Tensor &dy, LayerTaps &taps,
                              at::Tensor &dw) = 0;

protected:
  explicit LkConvKernel(codegen::KernelSpec spec) : spec_(std::move(spec)) {}
  codegen::KernelSpec spec_;
};

/// Generated GPU code for one layer: the entry points and launch data of its
/// spec, and the whole translation unit that holds them (emitted for the spec
/// in the JIT path, a kernel package's kernels.cu/.cl in the AOT path).
struct GpuKernelSource {
  codegen::EmittedKernels kernels;
  std::string source;
  std::string label; // names it in messages: "lk_conv JIT", "package <dir> op <name>"
};

/// The kernel for `spec` on `device` with backend `kind` (not Auto),
/// compiled on first use and kept for the life of the process. The GPU
/// backends compile `packaged` (a kernel package's text for this spec) where
/// given, else what the emitter writes for the spec; the CPU backends build
/// from the spec either way.
std::shared_ptr<LkConvKernel> getKernel(BackendKind kind, const codegen::KernelSpec &spec,
                                        const c10::Device &device,
                                        const GpuKernelSource *packaged = nullptr);

// Backend factories (LkConvBackend.cpp dispatches to them).
std::shared_ptr<LkConvKernel> makeCpuKernel(const codegen::KernelSpec &spec);
std::shared_ptr<LkConvKernel> makeReferenceKernel(const codegen::KernelSpec &spec);
std::shared_ptr<LkConvKernel> makeOpenCLKernel(const GpuKernelSource &source);
std::shared_ptr<LkConvKernel> makeCudaKernel(const GpuKernelSource &source, int device);
/// Which CPU implementation makeCpuKernel uses: "halide" or "reference".
const char *cpuBackendName();

/// The GPU schedule for a spec: the schedule provider's answer when one is
/// set, else the tuning database's choice for `deviceKey` ("a100", "h100":
/// tuningDatabasePath(); see scheduleDeviceKey), else the default heuristic
/// codegen::defaultSchedule. A missing database is silent, a corrupt or
/// foreign one gives a warning once; never an error. Memoised per spec,
/// density and device; SLAK_LOG=debug logs each choice.
codegen::Schedule chooseSchedule(const codegen::KernelSpec &spec, double sparseDensity,
                                 const std::string &deviceKey = "");
/// The tuning database key of the device tensors on `device` run on with
/// backend `kind`: the GPU's table name for CUDA ("h100"), "opencl", "cpu".
std::string scheduleDeviceKey(BackendKind kind, const c10::Device &device);
/// $SLAK_TUNING_DB, else autotune's default path (~/.cache/slak/tuning.db).
std::string tuningDatabasePath();
/// The Halide backend's schedule for `spec` (f32): the database's CPU
/// choice for this host (autotune::hostCpuKeys(threads)), else nullopt (the
/// per-size default). `description` gets "<origin> (<db>)" or why not.
std::optional<codegen::cpu::CpuSchedule> tunedCpuSchedule(const codegen::KernelSpec &spec,
                                                          int threads, std::string *description);
/// Replaces the GPU schedule provider: (spec without schedule, live density
/// of its sparse branches or -1) -> schedule. An empty function restores the
/// database lookup. Clears the GPU and CPU memos; kernels already compiled
/// stay (clearKernelRegistry drops them).
using ScheduleProvider =
    std::function<codegen::Schedule(const codegen::KernelSpec &spec, double sparseDensity)>;
void setScheduleProvider(ScheduleProvider provider);

/// Runs `kernel` through the op's autograd function: x [N, C, H, W], one
/// weight [C, 1, KH, KW] per branch of the kernel's spec, bias [C] when the
/// spec has one; all of the spec's dtype and on the kernel's device.
at::Tensor applyLkConv(const at::Tensor &x, at::TensorList weights,
                       const std::optional<at::Tensor> &bias, std::shared_ptr<LkConvKernel> kernel,
                       std::shared_ptr<LayerTaps> taps);

struct RuntimeStats {
  int64_t kernelsBuilt = 0; // getKernel misses: JIT compiles (or cache loads)
  int64_t kernelHits = 0;   // getKernel hits
  int64_t tapUploads = 0;   // LayerTaps uploads
};
RuntimeStats runtimeStats();
/// Drops every compiled kernel held in memory (tests: the next call reloads
/// from the on-disk cache).
void clearKernelRegistry();

} // namespace slak::runtime

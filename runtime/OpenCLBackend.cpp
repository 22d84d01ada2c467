// The OpenCL backend: the generated kernel text on the OpenCL device (PoCL on
// the CPU in CI) for CPU tensors. Buffers are copied in and out per call;
// tap tables are uploaded once per LayerTaps. Programs come from the
// OpenCLProgramCache (memory, then cached binaries, then source).
#include <ATen/ATen.h>

#include "codegen/BufferLayout.h"
#include "codegen/KernelArguments.h"
#include "runtime/LkConvBackend.h"
#include "runtime/OpenCLProgramCache.h"
#include "runtime/opencl/LkConvExecutor.h"

namespace slak::runtime {
namespace {

using codegen::KernelBuffer;
using codegen::KernelBuffers;
using codegen::KernelKind;
using opencl::Buffer;

struct UploadedTaps {
  std::unique_ptr<Buffer> offsets, taps;
};

class OpenCLKernel final : public LkConvKernel {
public:
  explicit OpenCLKernel(const GpuKernelSource &source)
      : LkConvKernel(source.kernels.spec), kernels_(source.kernels),
        program_(OpenCLProgramCache::global().get(source.source)) {}
  BackendKind kind() const override { return BackendKind::OpenCL; }

  void forward(const at::Tensor &x, const at::Tensor &weights, const at::Tensor &bias,
               LayerTaps &taps, at::Tensor &y) override {
    auto xb = upload(x), wb = upload(weights);
    auto bb = spec_.hasBias ? upload(bias) : std::make_unique<Buffer>(context(), 4);
    Buffer yb(context(), y.nbytes());
    auto t = tapBuffers(taps);
    KernelBuffers<cl_mem> buffers{};
    buffers[index(KernelBuffer::X)] = xb->mem();
    buffers[index(KernelBuffer::Weights)] = wb->mem();
    buffers[index(KernelBuffer::Bias)] = bb->mem();
    buffers[index(KernelBuffer::Y)] = yb.mem();
    run(KernelKind::Forward, x, *t, buffers);
    yb.read(y.data_ptr(), y.nbytes());
  }

  void backwardData(const at::Tensor &dy, const at::Tensor &weights, LayerTaps &taps,
                    at::Tensor &dx) override {
    auto dyb = upload(dy), wb = upload(weights);
    Buffer dxb(context(), dx.nbytes());
    auto t = tapBuffers(taps);
    KernelBuffers<cl_mem> buffers{};
    buffers[index(KernelBuffer::Dy)] = dyb->mem();
    buffers[index(KernelBuffer::Weights)] = wb->mem();
    buffers[index(KernelBuffer::Dx)] = dxb.mem();
    run(KernelKind::BackwardData, dx, *t, buffers);
    dxb.read(dx.data_ptr(), dx.nbytes());
  }

  void backwardWeight(const at::Tensor &x, const at::Tensor &dy, LayerTaps &taps,
                      at::Tensor &dw) override {
    auto xb = upload(x), dyb = upload(dy);
    Buffer workspace(context(), codegen::weightWorkspaceCount(spec_) * sizeof(float));
    Buffer dwb(context(), dw.nbytes());
    auto t = tapBuffers(taps);
    KernelBuffers<cl_mem> buffers{};
    buffers[index(KernelBuffer::X)] = xb->mem();
    buffers[index(KernelBuffer::Dy)] = dyb->mem();
    buffers[index(KernelBuffer::Workspace)] = workspace.mem();
    buffers[index(KernelBuffer::Dw)] = dwb.mem();
    run(KernelKind::BackwardWeight, x, *t, buffers);
    dwb.read(dw.data_ptr(), dw.nbytes());
  }

private:
  std::shared_ptr<opencl::Context> context() const { return program_->context(); }

  std::unique_ptr<Buffer> upload(const at::Tensor &t) const {
    return std::make_unique<Buffer>(context(), t.nbytes(), t.data_ptr());
  }

  std::shared_ptr<UploadedTaps> tapBuffers(LayerTaps &taps) {
    auto p = taps.upload("opencl", [&] {
      auto up = std::make_shared<UploadedTaps>();
      const codegen::TapTable &table = taps.table();
      up->offsets = std::make_unique<Buffer>(context(), table.offsets.size() * sizeof(int32_t),
                                             table.offsets.data());
      up->taps = std::make_unique<Buffer>(context(), table.taps.size() * sizeof(int32_t),
                                          table.taps.data());
      return std::static_pointer_cast<void>(up);
    });
    return std::static_pointer_cast<UploadedTaps>(p);
  }

  static int index(KernelBuffer buffer) { return static_cast<int>(buffer); }

  /// Runs pass `kind` for input `x` (sizes from its NCHW shape) with the
  /// layer's tap table and waits.
  void run(KernelKind kind, const at::Tensor &x, const UploadedTaps &taps,
           KernelBuffers<cl_mem> buffers) {
    buffers[index(KernelBuffer::TapOffsets)] = taps.offsets->mem();
    buffers[index(KernelBuffer::Taps)] = taps.taps->mem();
    const auto launches = codegen::bindPass(kernels_, kind, x.size(0), x.size(2), x.size(3));
    std::lock_guard<std::mutex> lock(program_->launchMutex());
    for (const codegen::KernelLaunch &launch : launches)
      opencl::runKernel(program_->kernel(launch.name), context()->queue(), launch, buffers);
  }

  codegen::EmittedKernels kernels_;
  std::shared_ptr<OpenCLProgram> program_;
};

} // namespace

bool openclDeviceAvailable() {
  try {
    openclContext();
    return true;
  } catch (const std::exception &) {
    return false;
  }
}

std::shared_ptr<LkConvKernel> makeOpenCLKernel(const GpuKernelSource &source) {
  return std::make_shared<OpenCLKernel>(source);
}

} // namespace slak::runtime

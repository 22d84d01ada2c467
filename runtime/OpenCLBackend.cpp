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
    run(KernelKind::Forward, x, taps,
        {{KernelBuffer::X, x},
         {KernelBuffer::Weights, weights},
         {KernelBuffer::Bias, spec_.hasBias ? bias : at::Tensor()}},
        KernelBuffer::Y, y);
  }

  void backwardData(const at::Tensor &dy, const at::Tensor &weights, LayerTaps &taps,
                    at::Tensor &dx) override {
    run(KernelKind::BackwardData, dx, taps,
        {{KernelBuffer::Dy, dy}, {KernelBuffer::Weights, weights}}, KernelBuffer::Dx, dx);
  }

  void backwardWeight(const at::Tensor &x, const at::Tensor &dy, LayerTaps &taps,
                      at::Tensor &dw) override {
    run(KernelKind::BackwardWeight, x, taps, {{KernelBuffer::X, x}, {KernelBuffer::Dy, dy}},
        KernelBuffer::Dw, dw, codegen::weightWorkspaceCount(spec_) * sizeof(float));
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
  /// layer's tap table and waits: copies `inputs` to the device (an undefined
  /// one, an absent bias, gets a valid unread buffer), gives the kernels
  /// `workspaceBytes` of workspace, and copies buffer `result` back to `out`.
  void run(KernelKind kind, const at::Tensor &x, LayerTaps &taps,
           std::initializer_list<std::pair<KernelBuffer, at::Tensor>> inputs, KernelBuffer result,
           at::Tensor &out, size_t workspaceBytes = 0) {
    KernelBuffers<cl_mem> buffers{};
    std::vector<std::unique_ptr<Buffer>> held;
    auto hold = [&](KernelBuffer which, std::unique_ptr<Buffer> buffer) {
      buffers[index(which)] = buffer->mem();
      held.push_back(std::move(buffer));
    };
    for (const auto &[which, t] : inputs)
      hold(which, t.defined() ? upload(t) : std::make_unique<Buffer>(context(), 4));
    if (workspaceBytes > 0)
      hold(KernelBuffer::Workspace, std::make_unique<Buffer>(context(), workspaceBytes));
    hold(result, std::make_unique<Buffer>(context(), out.nbytes()));
    const std::shared_ptr<UploadedTaps> t = tapBuffers(taps);
    buffers[index(KernelBuffer::TapOffsets)] = t->offsets->mem();
    buffers[index(KernelBuffer::Taps)] = t->taps->mem();
    const auto launches = codegen::bindPass(kernels_, kind, x.size(0), x.size(2), x.size(3));
    {
      std::lock_guard<std::mutex> lock(program_->launchMutex());
      for (const codegen::KernelLaunch &launch : launches)
        opencl::runKernel(program_->kernel(launch.name), context()->queue(), launch, buffers);
    }
    held.back()->read(out.data_ptr(), out.nbytes());
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

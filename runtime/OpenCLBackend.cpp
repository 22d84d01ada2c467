// The OpenCL backend: the generated kernel text on the OpenCL device (PoCL on
// the CPU in CI) for CPU tensors. Buffers are copied in and out per call;
// tap tables are uploaded once per LayerTaps. Programs come from the
// OpenCLProgramCache (memory, then cached binaries, then source).
#include <ATen/ATen.h>

#include "codegen/BufferLayout.h"
#include "runtime/LkConvBackend.h"
#include "runtime/OpenCLProgramCache.h"

namespace slak::runtime {
namespace {

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
    launch(KernelKind::Forward, x,
           {xb->mem(), wb->mem(), t->offsets->mem(), t->taps->mem(), bb->mem(), yb.mem()}, true);
    yb.read(y.data_ptr(), y.nbytes());
  }

  void backwardData(const at::Tensor &dy, const at::Tensor &weights, LayerTaps &taps,
                    at::Tensor &dx) override {
    auto dyb = upload(dy), wb = upload(weights);
    Buffer dxb(context(), dx.nbytes());
    auto t = tapBuffers(taps);
    launch(KernelKind::BackwardData, dx,
           {dyb->mem(), wb->mem(), t->offsets->mem(), t->taps->mem(), dxb.mem()}, true);
    dxb.read(dx.data_ptr(), dx.nbytes());
  }

  void backwardWeight(const at::Tensor &x, const at::Tensor &dy, LayerTaps &taps,
                      at::Tensor &dw) override {
    auto xb = upload(x), dyb = upload(dy);
    Buffer workspace(context(), codegen::weightWorkspaceCount(spec_) * sizeof(float));
    Buffer dwb(context(), dw.nbytes());
    auto t = tapBuffers(taps);
    launch(KernelKind::BackwardWeight, x,
           {xb->mem(), dyb->mem(), t->offsets->mem(), t->taps->mem(), workspace.mem()}, true);
    launch(KernelKind::BackwardWeightReduce, x, {workspace.mem(), dwb.mem()}, false);
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

  /// Runs kernel `kind` for input `x` (sizes from its NCHW shape) and waits.
  void launch(KernelKind kind, const at::Tensor &x, const std::vector<cl_mem> &buffers,
              bool withSizes) {
    const codegen::LaunchGeometry g = kernels_.geometry(kind, x.size(0), x.size(2), x.size(3));
    std::lock_guard<std::mutex> lock(program_->launchMutex());
    cl_kernel kernel = program_->kernel(kernels_.name(kind));
    cl_uint index = 0;
    for (cl_mem mem : buffers)
      opencl::check(clSetKernelArg(kernel, index++, sizeof(cl_mem), &mem), "clSetKernelArg");
    if (withSizes) {
      const cl_int sizes[3] = {static_cast<cl_int>(x.size(0)), static_cast<cl_int>(x.size(2)),
                               static_cast<cl_int>(x.size(3))};
      for (cl_int size : sizes)
        opencl::check(clSetKernelArg(kernel, index++, sizeof(cl_int), &size), "clSetKernelArg");
    }
    const size_t global = static_cast<size_t>(g.blocks) * g.threads;
    const size_t local = static_cast<size_t>(g.threads);
    cl_command_queue queue = context()->queue();
    opencl::check(
        clEnqueueNDRangeKernel(queue, kernel, 1, nullptr, &global, &local, 0, nullptr, nullptr),
        ("clEnqueueNDRangeKernel(" + kernels_.name(kind) + ")").c_str());
    opencl::check(clFinish(queue), "clFinish");
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

// The CUDA backend: the generated CUDA C++ compiled by NVRTC for the
// device's architecture (through the KernelCache), loaded into the device's
// primary context with the driver API and launched on PyTorch's current CUDA
// stream under a device guard. Both NVRTC and the driver are dlopen()ed; no
// CUDA header is needed: the stream comes from c10's generic stream API.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <c10/core/DeviceGuard.h>
#include <c10/core/Stream.h>
#include <c10/core/impl/DeviceGuardImplInterface.h>

#include <dlfcn.h>

#include <map>
#include <mutex>

#include "codegen/BufferLayout.h"
#include "codegen/KernelArguments.h"
#include "runtime/Files.h"
#include "runtime/LkConvBackend.h"
#include "runtime/cuda/CudaCompiler.h"
#include "runtime/cuda/CudaDriver.h"
#include "runtime/cuda/CudaLaunch.h"
#include "runtime/cuda/DynamicLibrary.h"

namespace slak::runtime {
namespace {

using codegen::KernelBuffer;
using codegen::KernelKind;
using cuda::CudaDriver;
using cuda::CudaModule;

/// The torch wheel ships NVRTC next to its own libraries
/// (site-packages/nvidia/cu*/lib); let the loader look there too.
void addTorchCudaLibraryDirectories() {
  static std::once_flag once;
  std::call_once(once, [] {
    Dl_info info{};
    if (!dladdr(reinterpret_cast<void *>(&at::get_num_threads), &info) || !info.dli_fname)
      return;
    // <site-packages>/torch/lib/libtorch_cpu.so -> <site-packages>/nvidia
    const std::string torchLib = parentDirectory(info.dli_fname);
    const std::string nvidia = joinPath(parentDirectory(parentDirectory(torchLib)), "nvidia");
    for (const char *sub : {"cu13/lib", "cu12/lib", "cuda_nvrtc/lib"})
      if (fileExists(joinPath(nvidia, sub)))
        cuda::addCudaLibraryDirectory(joinPath(nvidia, sub));
  });
}

/// One loaded module per (image, device), shared by every kernel in it.
std::shared_ptr<CudaModule> loadModule(const std::string &source, const std::string &label,
                                       int device) {
  static std::mutex mutex;
  static auto *modules = new std::map<std::pair<std::string, int>, std::shared_ptr<CudaModule>>();
  addTorchCudaLibraryDirectories();
  const int arch = CudaDriver::get().computeCapability(device);
  const std::string key = cuda::cudaImageKey(source, arch).hex();
  std::lock_guard<std::mutex> lock(mutex);
  auto it = modules->find({key, device});
  if (it != modules->end())
    return it->second;
  std::shared_ptr<const cuda::NvrtcImage> image = cuda::compileCuda(source, label, arch);
  auto module = std::make_shared<CudaModule>(device, image->image);
  modules->emplace(std::make_pair(key, device), module);
  return module;
}

struct UploadedTaps {
  at::Tensor offsets, taps;
};

class CudaKernel final : public LkConvKernel {
public:
  CudaKernel(const GpuKernelSource &source, int device)
      : LkConvKernel(source.kernels.spec), kernels_(source.kernels), device_(device) {
    try {
      module_ = loadModule(source.source, source.label, device);
    } catch (const std::exception &e) {
      TORCH_CHECK(false, "slak: CUDA backend: ", e.what());
    }
  }
  BackendKind kind() const override { return BackendKind::Cuda; }

  void forward(const at::Tensor &x, const at::Tensor &weights, const at::Tensor &bias,
               LayerTaps &taps, at::Tensor &y) override {
    run(KernelKind::Forward, x, taps,
        {{KernelBuffer::X, x},
         {KernelBuffer::Weights, weights},
         {KernelBuffer::Bias, spec_.hasBias ? bias : weights}, // unread without a bias
         {KernelBuffer::Y, y}});
  }

  void backwardData(const at::Tensor &dy, const at::Tensor &weights, LayerTaps &taps,
                    at::Tensor &dx) override {
    run(KernelKind::BackwardData, dx, taps,
        {{KernelBuffer::Dy, dy}, {KernelBuffer::Weights, weights}, {KernelBuffer::Dx, dx}});
  }

  void backwardWeight(const at::Tensor &x, const at::Tensor &dy, LayerTaps &taps,
                      at::Tensor &dw) override {
    const at::Tensor workspace =
        at::empty({codegen::weightWorkspaceCount(spec_)}, x.options().dtype(at::kFloat));
    run(KernelKind::BackwardWeight, x, taps,
        {{KernelBuffer::X, x},
         {KernelBuffer::Dy, dy},
         {KernelBuffer::Workspace, workspace},
         {KernelBuffer::Dw, dw}});
  }

private:
  static void set(cuda::DeviceBuffers &buffers, KernelBuffer which, const at::Tensor &t) {
    buffers.set(which, t.data_ptr(), static_cast<int64_t>(t.nbytes()));
  }

  /// Buffers holding the layer's tap table on this device.
  static cuda::DeviceBuffers tapBuffers(const UploadedTaps &taps) {
    cuda::DeviceBuffers buffers;
    set(buffers, KernelBuffer::TapOffsets, taps.offsets);
    set(buffers, KernelBuffer::Taps, taps.taps);
    return buffers;
  }

  std::shared_ptr<UploadedTaps> tapTensors(LayerTaps &taps) {
    auto p = taps.upload("cuda:" + std::to_string(device_), [&] {
      auto up = std::make_shared<UploadedTaps>();
      auto toDevice = [&](const std::vector<int32_t> &values) {
        // At least one element: kernels get a valid pointer even for an
        // all-dense layer's empty table.
        std::vector<int32_t> copy = values.empty() ? std::vector<int32_t>{0} : values;
        return at::from_blob(copy.data(), {static_cast<int64_t>(copy.size())}, at::kInt)
            .to(at::Device(at::kCUDA, static_cast<c10::DeviceIndex>(device_)));
      };
      up->offsets = toDevice(taps.table().offsets);
      up->taps = toDevice(taps.table().taps);
      return std::static_pointer_cast<void>(up);
    });
    return std::static_pointer_cast<UploadedTaps>(p);
  }

  /// Launches pass `kind` for input `x` (sizes from its NCHW shape) on the
  /// current stream of x's device, with `tensors` and the layer's tap table.
  void run(KernelKind kind, const at::Tensor &x, LayerTaps &taps,
           std::initializer_list<std::pair<KernelBuffer, at::Tensor>> tensors) {
    c10::DeviceGuard guard(x.device());
    const std::shared_ptr<UploadedTaps> t = tapTensors(taps); // alive until the launch
    cuda::DeviceBuffers buffers = tapBuffers(*t);
    for (const auto &[which, tensor] : tensors)
      set(buffers, which, tensor);
    const c10::Stream stream =
        c10::impl::getDeviceGuardImpl(c10::DeviceType::CUDA)->getStream(x.device());
    const std::vector<codegen::KernelLaunch> launches =
        codegen::bindPass(kernels_, kind, x.size(0), x.size(2), x.size(3));
    try {
      for (const codegen::KernelLaunch &launch : launches)
        cuda::launchBound(*module_, launch, buffers, static_cast<CUstream>(stream.native_handle()));
    } catch (const std::exception &e) {
      TORCH_CHECK(false, "slak: CUDA backend: ", e.what());
    }
  }

  codegen::EmittedKernels kernels_;
  int device_;
  std::shared_ptr<CudaModule> module_;
};

} // namespace

std::shared_ptr<LkConvKernel> makeCudaKernel(const GpuKernelSource &source, int device) {
  return std::make_shared<CudaKernel>(source, device);
}

} // namespace slak::runtime

#include "runtime/LkConvBackend.h"

#include <c10/util/Exception.h>

#include <atomic>
#include <cstdio>
#include <map>
#include <mutex>
#include <tuple>

#include "codegen/DefaultSchedule.h"
#include "codegen/EnumNames.h"
#include "runtime/Log.h"

namespace slak::runtime {
namespace {

std::atomic<int64_t> kernelsBuilt{0}, kernelHits{0};

struct Registry {
  std::mutex mutex;
  /// (backend, device index, spec signature, label of a packaged source or "").
  std::map<std::tuple<int, int, std::string, std::string>, std::shared_ptr<LkConvKernel>> kernels;
};

Registry &registry() {
  static Registry *r = new Registry(); // never destroyed: kernels may hold device objects
  return *r;
}

constexpr codegen::Named<BackendKind> kBackendNames[] = {{"auto", BackendKind::Auto},
                                                         {"cpu", BackendKind::Cpu},
                                                         {"reference", BackendKind::Reference},
                                                         {"opencl", BackendKind::OpenCL},
                                                         {"cuda", BackendKind::Cuda}};

} // namespace

const char *backendKindName(BackendKind kind) { return codegen::nameOf(kBackendNames, kind); }

BackendKind parseBackendKind(const std::string &name) {
  if (std::optional<BackendKind> kind = codegen::valueOf(kBackendNames, name))
    return *kind;
  TORCH_CHECK(false, "slak: backend is '", name, "', expected one of ",
              codegen::nameList(kBackendNames, "'"));
}

bool openclBackendBuilt() {
#ifdef SLAK_HAVE_OPENCL
  return true;
#else
  return false;
#endif
}

BackendKind resolveBackend(BackendKind requested, const c10::Device &device) {
  if (device.is_cuda()) {
    TORCH_CHECK(requested == BackendKind::Auto || requested == BackendKind::Cuda, "slak: backend '",
                backendKindName(requested), "' runs CPU tensors, but x is on ", device.str(),
                "; use backend 'auto' or 'cuda', or move the tensors to the CPU");
    return BackendKind::Cuda;
  }
  TORCH_CHECK(device.is_cpu(), "slak: tensors on ", device.str(),
              " are not supported, expected cpu or cuda");
  TORCH_CHECK(requested != BackendKind::Cuda, "slak: backend 'cuda' needs CUDA tensors, but x is "
                                              "on cpu; move the tensors with .to(torch::kCUDA)");
  TORCH_CHECK(requested != BackendKind::OpenCL || openclBackendBuilt(),
              "slak: backend 'opencl' was requested, but this build has no OpenCL backend "
              "(configure with -DSLAK_WITH_OPENCL=ON; apt-get install ocl-icd-opencl-dev "
              "pocl-opencl-icd)");
  return requested == BackendKind::Auto ? BackendKind::Cpu : requested;
}

std::shared_ptr<LkConvKernel> getKernel(BackendKind kind, const codegen::KernelSpec &spec,
                                        const c10::Device &device,
                                        const GpuKernelSource *packaged) {
  TORCH_CHECK(kind != BackendKind::Auto, "slak: getKernel needs a resolved backend");
  const bool gpuText = kind == BackendKind::Cuda || kind == BackendKind::OpenCL;
  if (packaged && gpuText)
    TORCH_CHECK(!packaged->source.empty(), "slak: ", packaged->label, " has no ",
                kind == BackendKind::Cuda ? "kernels.cu" : "kernels.cl",
                ": rebuild the package (slak-translate --emit-kernel-package) or pick another "
                "backend");
  const int deviceIndex = device.is_cuda() ? (device.has_index() ? device.index() : 0) : -1;
  const auto key = std::make_tuple(static_cast<int>(kind), deviceIndex, spec.signature(),
                                   packaged && gpuText ? packaged->label : std::string());
  Registry &r = registry();
  {
    std::lock_guard<std::mutex> lock(r.mutex);
    auto it = r.kernels.find(key);
    if (it != r.kernels.end()) {
      ++kernelHits;
      return it->second;
    }
  }
  std::shared_ptr<LkConvKernel> kernel;
  auto gpuSource = [&](codegen::GpuLanguage backend) {
    if (packaged)
      return *packaged;
    GpuKernelSource source;
    try {
      source.kernels = codegen::emitKernels(spec);
    } catch (const std::invalid_argument &e) {
      TORCH_CHECK(false, "slak: cannot generate kernels for this layer: ", e.what());
    }
    source.source = codegen::assembleSource(backend, {source.kernels});
    source.label = "lk_conv JIT " + source.kernels.name(codegen::KernelKind::Forward);
    return source;
  };
  switch (kind) {
  case BackendKind::Cpu:
    if (std::string(cpuBackendName()) == "halide")
      logOnce("cpu-backend", "CPU backend: Halide (JIT-compiled pipelines)");
    kernel = makeCpuKernel(spec);
    break;
  case BackendKind::Reference:
    kernel = makeReferenceKernel(spec);
    break;
  case BackendKind::OpenCL:
    kernel = makeOpenCLKernel(gpuSource(codegen::GpuLanguage::OpenCL));
    break;
  case BackendKind::Cuda:
    kernel = makeCudaKernel(gpuSource(codegen::GpuLanguage::Cuda), deviceIndex);
    break;
  case BackendKind::Auto:
    break;
  }
  ++kernelsBuilt;
  std::lock_guard<std::mutex> lock(r.mutex);
  return r.kernels.emplace(key, kernel).first->second;
}

RuntimeStats runtimeStats() {
  RuntimeStats s;
  s.kernelsBuilt = kernelsBuilt;
  s.kernelHits = kernelHits;
  s.tapUploads = tapUploadCount();
  return s;
}

void clearKernelRegistry() {
  Registry &r = registry();
  std::lock_guard<std::mutex> lock(r.mutex);
  r.kernels.clear();
}

} // namespace slak::runtime

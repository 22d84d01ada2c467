#include "runtime/cuda/CudaDriver.h"

#include <cstdint>

#include "runtime/cuda/DynamicLibrary.h"

namespace slak::runtime::cuda {

// The driver entry points we call, with their C signatures (cuda.h). Names
// with a _v2 suffix are what cuda.h's macros map the plain names to.
using CUresult = int;
using CUdevice = int;
constexpr CUresult CUDA_SUCCESS = 0;
constexpr int CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR = 75;
constexpr int CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR = 76;
constexpr int CU_JIT_ERROR_LOG_BUFFER = 5;
constexpr int CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES = 6;

struct CudaDriver::Api {
  CUresult (*init)(unsigned) = nullptr;
  CUresult (*driverGetVersion)(int *) = nullptr;
  CUresult (*getErrorName)(CUresult, const char **) = nullptr;
  CUresult (*getErrorString)(CUresult, const char **) = nullptr;
  CUresult (*deviceGetCount)(int *) = nullptr;
  CUresult (*deviceGet)(CUdevice *, int) = nullptr;
  CUresult (*deviceGetAttribute)(int *, int, CUdevice) = nullptr;
  CUresult (*deviceGetName)(char *, int, CUdevice) = nullptr;
  CUresult (*primaryCtxRetain)(CUcontext *, CUdevice) = nullptr;
  CUresult (*ctxPushCurrent)(CUcontext) = nullptr;
  CUresult (*ctxPopCurrent)(CUcontext *) = nullptr;
  CUresult (*moduleLoadDataEx)(CUmodule *, const void *, unsigned, int *, void **) = nullptr;
  CUresult (*moduleUnload)(CUmodule) = nullptr;
  CUresult (*moduleGetFunction)(CUfunction *, CUmodule, const char *) = nullptr;
  CUresult (*launchKernel)(CUfunction, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned,
                           unsigned, CUstream, void **, void **) = nullptr;
  CUresult (*streamSynchronize)(CUstream) = nullptr;
};

CudaDriver::CudaDriver() : api_(std::make_unique<Api>()) {
  try {
    library_ = DynamicLibrary::open(
        libraryCandidates("SLAK_CUDA_DRIVER_LIBRARY", {"libcuda.so.1", "libcuda.so"}),
        "the CUDA driver (libcuda.so.1)");
  } catch (const std::exception &e) {
    throw CudaError(std::string("no CUDA driver: ") + e.what() +
                    ". A CUDA tensor or the CUDA backend needs an NVIDIA GPU with its driver; "
                    "use CPU tensors (or the OpenCL backend) on this machine");
  }
  auto bind = [this](const char *name, auto &fn) {
    library_->bind<CudaError>(name, fn, "the CUDA driver",
                              "driver too old? update the NVIDIA driver");
  };
  bind("cuInit", api_->init);
  bind("cuDriverGetVersion", api_->driverGetVersion);
  bind("cuGetErrorName", api_->getErrorName);
  bind("cuGetErrorString", api_->getErrorString);
  bind("cuDeviceGetCount", api_->deviceGetCount);
  bind("cuDeviceGet", api_->deviceGet);
  bind("cuDeviceGetAttribute", api_->deviceGetAttribute);
  bind("cuDeviceGetName", api_->deviceGetName);
  bind("cuDevicePrimaryCtxRetain", api_->primaryCtxRetain);
  bind("cuCtxPushCurrent_v2", api_->ctxPushCurrent);
  bind("cuCtxPopCurrent_v2", api_->ctxPopCurrent);
  bind("cuModuleLoadDataEx", api_->moduleLoadDataEx);
  bind("cuModuleUnload", api_->moduleUnload);
  bind("cuModuleGetFunction", api_->moduleGetFunction);
  bind("cuLaunchKernel", api_->launchKernel);
  bind("cuStreamSynchronize", api_->streamSynchronize);
  check(api_->init(0), "cuInit");
  check(api_->driverGetVersion(&version_), "cuDriverGetVersion");
}

CudaDriver::~CudaDriver() = default;

CudaDriver &CudaDriver::get() {
  return loadOnce<CudaDriver, CudaError>([] { return new CudaDriver(); });
}

bool CudaDriver::available(std::string *why) {
  try {
    if (get().deviceCount() > 0)
      return true;
    if (why)
      *why = "the CUDA driver reports no device";
    return false;
  } catch (const std::exception &e) {
    if (why)
      *why = e.what();
    return false;
  }
}

void CudaDriver::check(int result, const std::string &what) const {
  if (result == CUDA_SUCCESS)
    return;
  const char *name = nullptr, *text = nullptr;
  if (api_->getErrorName)
    api_->getErrorName(result, &name);
  if (api_->getErrorString)
    api_->getErrorString(result, &text);
  throw CudaError(what + " failed: " + (name ? name : "CUDA error") + " (" +
                  std::to_string(result) + ")" + (text ? std::string(": ") + text : ""));
}

void *CudaDriver::symbol(const char *name) const { return library_->symbol(name); }

int CudaDriver::deviceCount() const {
  int count = 0;
  const CUresult status = api_->deviceGetCount(&count);
  if (status == 100) // CUDA_ERROR_NO_DEVICE
    return 0;
  check(status, "cuDeviceGetCount");
  return count;
}

int CudaDriver::computeCapability(int device) const {
  CUdevice dev = 0;
  check(api_->deviceGet(&dev, device), "cuDeviceGet(" + std::to_string(device) + ")");
  int major = 0, minor = 0;
  check(api_->deviceGetAttribute(&major, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, dev),
        "cuDeviceGetAttribute(compute capability major)");
  check(api_->deviceGetAttribute(&minor, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, dev),
        "cuDeviceGetAttribute(compute capability minor)");
  return major * 10 + minor;
}

std::string CudaDriver::deviceName(int device) const {
  CUdevice dev = 0;
  check(api_->deviceGet(&dev, device), "cuDeviceGet(" + std::to_string(device) + ")");
  char name[256] = {0};
  check(api_->deviceGetName(name, sizeof name - 1, dev), "cuDeviceGetName");
  return name;
}

CUcontext CudaDriver::primaryContext(int device) {
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = contexts_.find(device);
  if (it != contexts_.end())
    return it->second;
  const int count = deviceCount();
  if (device < 0 || device >= count)
    throw CudaError("CUDA device " + std::to_string(device) + " does not exist (" +
                    std::to_string(count) + " device(s))");
  CUdevice dev = 0;
  check(api_->deviceGet(&dev, device), "cuDeviceGet(" + std::to_string(device) + ")");
  CUcontext context = nullptr;
  // Retained for the life of the process (the CUDA runtime shares it).
  check(api_->primaryCtxRetain(&context, dev), "cuDevicePrimaryCtxRetain");
  contexts_[device] = context;
  return context;
}

CudaDriver::ContextScope::ContextScope(int device) {
  CudaDriver &driver = CudaDriver::get();
  driver.check(driver.api_->ctxPushCurrent(driver.primaryContext(device)), "cuCtxPushCurrent");
}

CudaDriver::ContextScope::~ContextScope() {
  CUcontext popped = nullptr;
  CudaDriver::get().api_->ctxPopCurrent(&popped);
}

CUmodule CudaDriver::loadModule(const std::string &image, std::string *log) const {
  std::string buffer(16384, '\0');
  int options[2] = {CU_JIT_ERROR_LOG_BUFFER, CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES};
  void *values[2] = {buffer.data(),
                     reinterpret_cast<void *>(static_cast<uintptr_t>(buffer.size()))};
  CUmodule module = nullptr;
  const CUresult status = api_->moduleLoadDataEx(&module, image.data(), 2, options, values);
  buffer.resize(buffer.find('\0') == std::string::npos ? buffer.size() : buffer.find('\0'));
  if (log)
    *log = buffer;
  if (status != CUDA_SUCCESS) {
    try {
      check(status, "cuModuleLoadDataEx");
    } catch (const CudaError &e) {
      throw CudaError(std::string(e.what()) + (buffer.empty() ? "" : "\n" + buffer));
    }
  }
  return module;
}

void CudaDriver::unloadModule(CUmodule module) const { api_->moduleUnload(module); }

CUfunction CudaDriver::function(CUmodule module, const std::string &name) const {
  CUfunction fn = nullptr;
  check(api_->moduleGetFunction(&fn, module, name.c_str()), "cuModuleGetFunction(" + name + ")");
  return fn;
}

void CudaDriver::launch(CUfunction function, unsigned gridX, unsigned blockX, unsigned sharedBytes,
                        CUstream stream, void **args) const {
  check(api_->launchKernel(function, gridX, 1, 1, blockX, 1, 1, sharedBytes, stream, args, nullptr),
        "cuLaunchKernel");
}

void CudaDriver::synchronize(CUstream stream) const {
  check(api_->streamSynchronize(stream), "cuStreamSynchronize");
}

CudaModule::CudaModule(int device, const std::string &image) : device_(device) {
  CudaDriver::ContextScope scope(device);
  module_ = CudaDriver::get().loadModule(image, nullptr);
}

CudaModule::~CudaModule() {
  if (!module_)
    return;
  try {
    CudaDriver::ContextScope scope(device_);
    CudaDriver::get().unloadModule(module_);
  } catch (...) {
    // Unloading at exit after the driver shut down: nothing to do.
  }
}

CUfunction CudaModule::function(const std::string &name) {
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = functions_.find(name);
  if (it != functions_.end())
    return it->second;
  CUfunction fn = CudaDriver::get().function(module_, name);
  functions_[name] = fn;
  return fn;
}

void CudaModule::launch(const std::string &name, int64_t blocks, int threads, CUstream stream,
                        std::vector<void *> args) {
  if (blocks <= 0)
    return;
  if (blocks > 0x7fffffff)
    throw CudaError("kernel " + name + " needs " + std::to_string(blocks) +
                    " blocks, more than a 1-D CUDA grid holds (2^31 - 1)");
  CUfunction fn = function(name);
  CudaDriver::ContextScope scope(device_);
  // Static shared memory only (the emitter stays within 48 KiB).
  CudaDriver::get().launch(fn, static_cast<unsigned>(blocks), static_cast<unsigned>(threads), 0,
                           stream, args.data());
}

} // namespace slak::runtime::cuda

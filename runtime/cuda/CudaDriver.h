// CudaDriver: the CUDA driver API, loaded with dlopen("libcuda.so.1") on
// first use, so nothing links against libcuda and a machine without a driver
// fails only when a GPU is asked for, with a message that says so. Modules are
// loaded into each device's primary context, the one the CUDA runtime (and so
// PyTorch) uses, so kernels launch on PyTorch's streams. LibTorch-free.
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "runtime/cuda/Nvrtc.h" // CudaError

// The driver's handle types; the tags are cuda.h's, so the two agree.
using CUcontext = struct CUctx_st *;
using CUmodule = struct CUmod_st *;
using CUfunction = struct CUfunc_st *;
using CUstream = struct CUstream_st *;

namespace slak::runtime::cuda {

class DynamicLibrary;

class CudaDriver {
public:
  /// The initialised driver (cuInit). Throws CudaError, e.g. "no CUDA
  /// driver: cannot load libcuda.so.1 ...", when there is none.
  static CudaDriver &get();
  static bool available(std::string *why = nullptr);
  ~CudaDriver();

  int version() const { return version_; } // e.g. 13000
  int deviceCount() const;
  /// major * 10 + minor, e.g. 90 for an H100.
  int computeCapability(int device) const;
  std::string deviceName(int device) const;

  /// Makes `device`'s primary context current for the scope.
  class ContextScope {
  public:
    explicit ContextScope(int device);
    ~ContextScope();
    ContextScope(const ContextScope &) = delete;
    ContextScope &operator=(const ContextScope &) = delete;
  };

  /// Throws CudaError("<what> failed: CUDA_ERROR_... (<code>): <text>").
  void check(int result, const std::string &what) const;
  /// A driver entry point this class does not wrap (e.g. the event API for
  /// the autotuner's timer), or nullptr when the driver lacks it.
  void *symbol(const char *name) const;

  // Raw entry points (callers hold a ContextScope).
  CUmodule loadModule(const std::string &image, std::string *log) const;
  void unloadModule(CUmodule module) const;
  CUfunction function(CUmodule module, const std::string &name) const;
  void launch(CUfunction function, unsigned gridX, unsigned blockX, unsigned sharedBytes,
              CUstream stream, void **args) const;
  void synchronize(CUstream stream) const;

private:
  CudaDriver();
  CUcontext primaryContext(int device);
  struct Api;
  std::shared_ptr<DynamicLibrary> library_;
  std::unique_ptr<Api> api_;
  int version_ = 0;
  std::mutex mutex_;
  std::map<int, CUcontext> contexts_;
};

/// A compiled image (cubin or PTX) loaded on one device, with its functions
/// looked up once. Load and unload happen in the device's primary context.
class CudaModule {
public:
  CudaModule(int device, const std::string &image);
  ~CudaModule();
  CudaModule(const CudaModule &) = delete;
  CudaModule &operator=(const CudaModule &) = delete;

  int device() const { return device_; }
  /// Throws CudaError naming the entry point when the module lacks it.
  CUfunction function(const std::string &name);

  /// Launches a 1-D grid of 1-D blocks on `stream` (nullptr: the legacy
  /// default stream). `args` points to each kernel argument's value.
  void launch(const std::string &name, int64_t blocks, int threads, CUstream stream,
              std::vector<void *> args);

private:
  int device_;
  CUmodule module_ = nullptr;
  std::mutex mutex_;
  std::map<std::string, CUfunction> functions_;
};

} // namespace slak::runtime::cuda

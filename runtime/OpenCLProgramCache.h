// OpenCLProgramCache: OpenCL programs of the runtime's OpenCL backend, built
// once per (source, options, device) and kept in memory, with their device
// binaries (clGetProgramInfo(CL_PROGRAM_BINARIES)) in the KernelCache so that
// the next process loads them with clCreateProgramWithBinary instead of
// compiling. A binary the device rejects is removed and rebuilt from source.
// Uses the OpenCL context of runtime/opencl. LibTorch-free.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "runtime/KernelCache.h"
#include "runtime/opencl/OpenCLContext.h"

namespace slak::runtime {

/// The process-wide OpenCL context (first device, or SLAK_OPENCL_DEVICE).
/// Throws opencl::OpenCLError saying how to install one when there is none.
std::shared_ptr<opencl::Context> openclContext();

class OpenCLProgram {
public:
  ~OpenCLProgram();
  OpenCLProgram(const OpenCLProgram &) = delete;
  OpenCLProgram &operator=(const OpenCLProgram &) = delete;

  const std::shared_ptr<opencl::Context> &context() const { return context_; }
  /// The kernel `name` (created on first use). Throws OpenCLError.
  cl_kernel kernel(const std::string &name);
  /// Serialises clSetKernelArg + enqueue on this program's kernels.
  std::mutex &launchMutex() { return launchMutex_; }
  /// Whether this program was loaded from a cached binary.
  bool fromBinary() const { return fromBinary_; }

private:
  friend class OpenCLProgramCache;
  OpenCLProgram(std::shared_ptr<opencl::Context> context, cl_program program, bool fromBinary)
      : context_(std::move(context)), program_(program), fromBinary_(fromBinary) {}
  std::shared_ptr<opencl::Context> context_;
  cl_program program_ = nullptr;
  bool fromBinary_ = false;
  std::mutex mutex_, launchMutex_;
  std::map<std::string, cl_kernel> kernels_;
};

struct OpenCLProgramStats {
  int64_t memoryHits = 0;
  int64_t binaryLoads = 0;  // built from a cached binary
  int64_t sourceBuilds = 0; // compiled from source
  int64_t rejectedBinaries = 0;
};

class OpenCLProgramCache {
public:
  /// The process-wide cache over KernelCache::global().
  static OpenCLProgramCache &global();
  OpenCLProgramCache(std::shared_ptr<opencl::Context> context, KernelCache &cache);

  /// The built program of `source`.
  std::shared_ptr<OpenCLProgram> get(const std::string &source,
                                     const std::string &options = "-cl-std=CL1.2");
  /// The KernelCache key of `source` built with `options` for this device.
  CacheKey key(const std::string &source, const std::string &options) const;

  void clearMemory();
  OpenCLProgramStats stats() const;
  KernelCache &kernelCache() { return cache_; }

private:
  std::shared_ptr<OpenCLProgram> buildFromBinary(const std::string &binary,
                                                 const std::string &options);
  std::shared_ptr<OpenCLProgram> buildFromSource(const std::string &source,
                                                 const std::string &options, std::string *binary);

  std::shared_ptr<opencl::Context> context_;
  KernelCache &cache_;
  std::string deviceIdentity_;
  mutable std::mutex mutex_;
  std::map<CacheKey, std::shared_ptr<OpenCLProgram>> programs_;
  OpenCLProgramStats stats_;
};

} // namespace slak::runtime

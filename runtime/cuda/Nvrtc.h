// Nvrtc: the NVRTC runtime compiler, loaded with dlopen. It compiles the
// emitted CUDA C++ (which needs no headers) for one GPU architecture: a cubin
// (SASS) when this NVRTC supports the architecture, else PTX for the newest
// virtual architecture it supports that the device can run (the driver
// JIT-compiles it). No GPU and no driver are needed to compile.
//
// The library is searched as: $SLAK_NVRTC_LIBRARY, libnvrtc.so.{13,12,11.2}
// and libnvrtc.so by the loader's search path, then the same names in
// cudaLibraryDirectories().
#pragma once

#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace slak::runtime::cuda {

class CudaError : public std::runtime_error {
public:
  using std::runtime_error::runtime_error;
};

class DynamicLibrary;

struct NvrtcImage {
  std::string image;  // cubin (ELF) or NUL-terminated PTX text
  bool cubin = false; // false: PTX
  int arch = 0;       // 80 for sm_80 / compute_80
  std::string log;    // compiler messages (warnings), may be empty
};

class Nvrtc {
public:
  /// The process-wide instance. Throws CudaError saying how to install
  /// NVRTC (or set SLAK_NVRTC_LIBRARY) when it cannot be loaded.
  static Nvrtc &get();
  /// Whether get() succeeds; the reason in `why` otherwise.
  static bool available(std::string *why = nullptr);
  ~Nvrtc();

  int versionMajor() const { return major_; }
  int versionMinor() const { return minor_; }
  std::string versionString() const; // "13.0"
  const std::string &libraryName() const;
  /// Real architectures this NVRTC compiles to SASS (e.g. 75, 80, ..., 120).
  const std::vector<int> &supportedArchs() const { return archs_; }

  /// The option that selects the target for a device of compute capability
  /// `arch` (e.g. 90): "--gpu-architecture=sm_90", or compute_XX for PTX.
  /// Throws CudaError when the device is older than every supported arch.
  std::string architectureOption(int arch, bool *cubin = nullptr, int *target = nullptr) const;

  /// Compiles `source` (named `name` in messages) for a device of compute
  /// capability `arch`. Throws CudaError with the compiler log on failure.
  NvrtcImage compile(const std::string &source, const std::string &name, int arch,
                     const std::vector<std::string> &options = {}) const;

private:
  Nvrtc();
  struct Api;
  std::shared_ptr<DynamicLibrary> library_;
  std::unique_ptr<Api> api_;
  int major_ = 0, minor_ = 0;
  std::vector<int> archs_;
};

} // namespace slak::runtime::cuda

// OpenCLContext: the OpenCL device, queue and program objects the OpenCL
// backend runs emitted kernel text on (PoCL on the CPU in CI, any OpenCL 1.2
// device otherwise). Thin RAII wrappers; every failure is an OpenCLError that
// names the call, the error code and, for builds, the compiler log.
#pragma once

#define CL_TARGET_OPENCL_VERSION 120
#include <CL/cl.h>

#include <cstddef>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>

namespace slak::runtime::opencl {

class OpenCLError : public std::runtime_error {
public:
  using std::runtime_error::runtime_error;
};

/// Throws OpenCLError("<what> failed with <code name> (<code>)") unless ok.
void check(cl_int status, const char *what);

class Context {
public:
  /// The first device of the first platform that has one. The environment
  /// variable SLAK_OPENCL_DEVICE=<substring> picks a device by name instead.
  /// Throws OpenCLError saying how to install PoCL when there is none.
  static std::shared_ptr<Context> create();
  ~Context();
  Context(const Context &) = delete;
  Context &operator=(const Context &) = delete;

  cl_context context() const { return context_; }
  cl_command_queue queue() const { return queue_; }
  cl_device_id device() const { return device_; }
  std::string deviceName() const;

private:
  Context() = default;
  cl_device_id device_ = nullptr;
  cl_context context_ = nullptr;
  cl_command_queue queue_ = nullptr;
};

/// A device buffer of `bytes` bytes (at least 4, so empty tables are legal).
class Buffer {
public:
  Buffer(std::shared_ptr<Context> context, size_t bytes, const void *data = nullptr);
  ~Buffer();
  Buffer(const Buffer &) = delete;
  Buffer &operator=(const Buffer &) = delete;
  cl_mem mem() const { return mem_; }
  size_t bytes() const { return bytes_; }
  void write(const void *data, size_t bytes);
  void read(void *data, size_t bytes) const;

private:
  std::shared_ptr<Context> context_;
  cl_mem mem_ = nullptr;
  size_t bytes_ = 0;
};

/// A built program and its kernels (created on first use).
class Program {
public:
  /// Builds `source` (OpenCL C 1.2). Throws OpenCLError with the build log.
  Program(std::shared_ptr<Context> context, const std::string &source,
          const std::string &options = "-cl-std=CL1.2");
  ~Program();
  Program(const Program &) = delete;
  Program &operator=(const Program &) = delete;

  cl_kernel kernel(const std::string &name);
  const std::shared_ptr<Context> &context() const { return context_; }

private:
  std::shared_ptr<Context> context_;
  cl_program program_ = nullptr;
  std::map<std::string, cl_kernel> kernels_;
};

} // namespace slak::runtime::opencl

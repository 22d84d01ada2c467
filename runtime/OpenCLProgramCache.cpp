#include "runtime/OpenCLProgramCache.h"

#include <vector>

#include "runtime/Log.h"

namespace slak::runtime {
namespace {

std::string deviceInfo(cl_device_id device, cl_device_info what) {
  size_t size = 0;
  if (clGetDeviceInfo(device, what, 0, nullptr, &size) != CL_SUCCESS)
    return "?";
  std::string text(size, '\0');
  clGetDeviceInfo(device, what, size, text.data(), nullptr);
  while (!text.empty() && text.back() == '\0')
    text.pop_back();
  return text;
}

std::string platformInfo(cl_device_id device) {
  cl_platform_id platform = nullptr;
  if (clGetDeviceInfo(device, CL_DEVICE_PLATFORM, sizeof platform, &platform, nullptr) !=
      CL_SUCCESS)
    return "?";
  std::string out;
  for (cl_platform_info what : {CL_PLATFORM_NAME, CL_PLATFORM_VERSION}) {
    size_t size = 0;
    clGetPlatformInfo(platform, what, 0, nullptr, &size);
    std::string text(size, '\0');
    clGetPlatformInfo(platform, what, size, text.data(), nullptr);
    while (!text.empty() && text.back() == '\0')
      text.pop_back();
    out += text + ";";
  }
  return out;
}

std::string buildLog(cl_program program, cl_device_id device) {
  size_t size = 0;
  clGetProgramBuildInfo(program, device, CL_PROGRAM_BUILD_LOG, 0, nullptr, &size);
  std::string log(size, '\0');
  clGetProgramBuildInfo(program, device, CL_PROGRAM_BUILD_LOG, size, log.data(), nullptr);
  while (!log.empty() && log.back() == '\0')
    log.pop_back();
  return log;
}

} // namespace

std::shared_ptr<opencl::Context> openclContext() {
  static std::mutex mutex;
  static std::shared_ptr<opencl::Context> context;
  static std::string error;
  std::lock_guard<std::mutex> lock(mutex);
  if (!context) {
    if (!error.empty())
      throw opencl::OpenCLError(error);
    try {
      context = opencl::Context::create();
    } catch (const std::exception &e) {
      error = e.what();
      throw;
    }
  }
  return context;
}

OpenCLProgram::~OpenCLProgram() {
  for (auto &entry : kernels_)
    clReleaseKernel(entry.second);
  if (program_)
    clReleaseProgram(program_);
}

cl_kernel OpenCLProgram::kernel(const std::string &name) {
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = kernels_.find(name);
  if (it != kernels_.end())
    return it->second;
  cl_int err = CL_SUCCESS;
  cl_kernel k = clCreateKernel(program_, name.c_str(), &err);
  opencl::check(err, ("clCreateKernel(" + name + ")").c_str());
  kernels_[name] = k;
  return k;
}

OpenCLProgramCache &OpenCLProgramCache::global() {
  static OpenCLProgramCache *cache = new OpenCLProgramCache(openclContext(), KernelCache::global());
  return *cache;
}

OpenCLProgramCache::OpenCLProgramCache(std::shared_ptr<opencl::Context> context, KernelCache &cache)
    : context_(std::move(context)), cache_(cache) {
  const cl_device_id device = context_->device();
  deviceIdentity_ = deviceInfo(device, CL_DEVICE_NAME) + ";" +
                    deviceInfo(device, CL_DEVICE_VERSION) + ";" +
                    deviceInfo(device, CL_DRIVER_VERSION) + ";" + platformInfo(device);
}

CacheKey OpenCLProgramCache::key(const std::string &source, const std::string &options) const {
  return CacheKeyBuilder()
      .add("what", "opencl-program")
      .add("runtime", kRuntimeVersion)
      .add("device", deviceIdentity_)
      .add("options", options)
      .add("source", source)
      .finish();
}

std::shared_ptr<OpenCLProgram> OpenCLProgramCache::buildFromBinary(const std::string &binary,
                                                                   const std::string &options) {
  cl_device_id device = context_->device();
  const size_t length = binary.size();
  const unsigned char *bytes = reinterpret_cast<const unsigned char *>(binary.data());
  cl_int binaryStatus = CL_SUCCESS, err = CL_SUCCESS;
  cl_program program = clCreateProgramWithBinary(context_->context(), 1, &device, &length, &bytes,
                                                 &binaryStatus, &err);
  if (err != CL_SUCCESS || binaryStatus != CL_SUCCESS || !program) {
    if (program)
      clReleaseProgram(program);
    return nullptr;
  }
  if (clBuildProgram(program, 1, &device, options.c_str(), nullptr, nullptr) != CL_SUCCESS) {
    clReleaseProgram(program);
    return nullptr;
  }
  return std::shared_ptr<OpenCLProgram>(new OpenCLProgram(context_, program, true));
}

std::shared_ptr<OpenCLProgram> OpenCLProgramCache::buildFromSource(const std::string &source,
                                                                   const std::string &options,
                                                                   std::string *binary) {
  cl_device_id device = context_->device();
  const char *text = source.c_str();
  const size_t length = source.size();
  cl_int err = CL_SUCCESS;
  cl_program program = clCreateProgramWithSource(context_->context(), 1, &text, &length, &err);
  opencl::check(err, "clCreateProgramWithSource");
  err = clBuildProgram(program, 1, &device, options.c_str(), nullptr, nullptr);
  if (err != CL_SUCCESS) {
    const std::string log = buildLog(program, device);
    clReleaseProgram(program);
    throw opencl::OpenCLError("clBuildProgram failed (" + std::to_string(err) +
                              ") on the generated OpenCL source; build log:\n" + log);
  }
  auto built = std::shared_ptr<OpenCLProgram>(new OpenCLProgram(context_, program, false));
  size_t size = 0;
  if (clGetProgramInfo(program, CL_PROGRAM_BINARY_SIZES, sizeof size, &size, nullptr) ==
          CL_SUCCESS &&
      size > 0) {
    binary->resize(size);
    unsigned char *target = reinterpret_cast<unsigned char *>(binary->data());
    if (clGetProgramInfo(program, CL_PROGRAM_BINARIES, sizeof target, &target, nullptr) !=
        CL_SUCCESS)
      binary->clear();
  }
  return built;
}

std::shared_ptr<OpenCLProgram> OpenCLProgramCache::get(const std::string &source,
                                                       const std::string &options) {
  const CacheKey k = key(source, options);
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = programs_.find(k);
  if (it != programs_.end()) {
    ++stats_.memoryHits;
    return it->second;
  }
  std::shared_ptr<OpenCLProgram> program;
  if (std::optional<std::string> binary = cache_.load("opencl", k)) {
    program = buildFromBinary(*binary, options);
    if (program) {
      ++stats_.binaryLoads;
    } else {
      ++stats_.rejectedBinaries;
      logMessage("OpenCL: the device rejected cached program " + cache_.entryPath("opencl", k) +
                 "; rebuilding it from source");
      cache_.remove("opencl", k);
    }
  }
  if (!program) {
    std::string binary;
    program = buildFromSource(source, options, &binary);
    ++stats_.sourceBuilds;
    if (!binary.empty())
      cache_.store("opencl", k, binary);
  }
  programs_.emplace(k, program);
  return program;
}

void OpenCLProgramCache::clearMemory() {
  std::lock_guard<std::mutex> lock(mutex_);
  programs_.clear();
}

OpenCLProgramStats OpenCLProgramCache::stats() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return stats_;
}

} // namespace slak::runtime

#include "runtime/opencl/OpenCLContext.h"

#include <cstdlib>
#include <vector>

namespace slak::runtime::opencl {
namespace {

const char *errorName(cl_int status) {
  switch (status) {
  case CL_DEVICE_NOT_FOUND:
    return "CL_DEVICE_NOT_FOUND";
  case CL_OUT_OF_RESOURCES:
    return "CL_OUT_OF_RESOURCES";
  case CL_OUT_OF_HOST_MEMORY:
    return "CL_OUT_OF_HOST_MEMORY";
  case CL_MEM_OBJECT_ALLOCATION_FAILURE:
    return "CL_MEM_OBJECT_ALLOCATION_FAILURE";
  case CL_BUILD_PROGRAM_FAILURE:
    return "CL_BUILD_PROGRAM_FAILURE";
  case CL_INVALID_VALUE:
    return "CL_INVALID_VALUE";
  case CL_INVALID_KERNEL_NAME:
    return "CL_INVALID_KERNEL_NAME";
  case CL_INVALID_KERNEL_ARGS:
    return "CL_INVALID_KERNEL_ARGS";
  case CL_INVALID_ARG_SIZE:
    return "CL_INVALID_ARG_SIZE";
  case CL_INVALID_ARG_INDEX:
    return "CL_INVALID_ARG_INDEX";
  case CL_INVALID_WORK_GROUP_SIZE:
    return "CL_INVALID_WORK_GROUP_SIZE";
  case CL_INVALID_WORK_ITEM_SIZE:
    return "CL_INVALID_WORK_ITEM_SIZE";
  case CL_INVALID_GLOBAL_WORK_SIZE:
    return "CL_INVALID_GLOBAL_WORK_SIZE";
  case CL_INVALID_BUFFER_SIZE:
    return "CL_INVALID_BUFFER_SIZE";
  case -1001: // CL_PLATFORM_NOT_FOUND_KHR (cl_ext.h)
    return "CL_PLATFORM_NOT_FOUND_KHR";
  default:
    return "an OpenCL error";
  }
}

} // namespace

void check(cl_int status, const char *what) {
  if (status != CL_SUCCESS)
    throw OpenCLError(std::string(what) + " failed with " + errorName(status) + " (" +
                      std::to_string(status) + ")");
}

std::shared_ptr<Context> Context::create() {
  cl_uint numPlatforms = 0;
  cl_int status = clGetPlatformIDs(0, nullptr, &numPlatforms);
  if (status != CL_SUCCESS || numPlatforms == 0)
    throw OpenCLError("no OpenCL platform found; install one, e.g. apt-get install "
                      "pocl-opencl-icd ocl-icd-opencl-dev");
  std::vector<cl_platform_id> platforms(numPlatforms);
  check(clGetPlatformIDs(numPlatforms, platforms.data(), nullptr), "clGetPlatformIDs");
  const char *wanted = std::getenv("SLAK_OPENCL_DEVICE");
  std::shared_ptr<Context> ctx(new Context());
  for (cl_platform_id platform : platforms) {
    cl_uint numDevices = 0;
    if (clGetDeviceIDs(platform, CL_DEVICE_TYPE_ALL, 0, nullptr, &numDevices) != CL_SUCCESS)
      continue;
    std::vector<cl_device_id> devices(numDevices);
    check(clGetDeviceIDs(platform, CL_DEVICE_TYPE_ALL, numDevices, devices.data(), nullptr),
          "clGetDeviceIDs");
    for (cl_device_id device : devices) {
      ctx->device_ = device;
      if (wanted && ctx->deviceName().find(wanted) == std::string::npos)
        continue;
      cl_int err = CL_SUCCESS;
      ctx->context_ = clCreateContext(nullptr, 1, &device, nullptr, nullptr, &err);
      check(err, "clCreateContext");
      ctx->queue_ = clCreateCommandQueue(ctx->context_, device, 0, &err);
      check(err, "clCreateCommandQueue");
      return ctx;
    }
  }
  throw OpenCLError(wanted ? std::string("no OpenCL device matches SLAK_OPENCL_DEVICE=") + wanted
                           : std::string("no OpenCL device found; install one, e.g. apt-get "
                                         "install pocl-opencl-icd"));
}

Context::~Context() {
  if (queue_)
    clReleaseCommandQueue(queue_);
  if (context_)
    clReleaseContext(context_);
}

std::string Context::deviceName() const {
  size_t size = 0;
  clGetDeviceInfo(device_, CL_DEVICE_NAME, 0, nullptr, &size);
  std::string name(size, '\0');
  clGetDeviceInfo(device_, CL_DEVICE_NAME, size, name.data(), nullptr);
  while (!name.empty() && name.back() == '\0')
    name.pop_back();
  return name;
}

Buffer::Buffer(std::shared_ptr<Context> context, size_t bytes, const void *data)
    : context_(std::move(context)), bytes_(bytes < 4 ? 4 : bytes) {
  cl_int err = CL_SUCCESS;
  mem_ = clCreateBuffer(context_->context(), CL_MEM_READ_WRITE, bytes_, nullptr, &err);
  check(err, "clCreateBuffer");
  if (data && bytes)
    write(data, bytes);
}

Buffer::~Buffer() {
  if (mem_)
    clReleaseMemObject(mem_);
}

void Buffer::write(const void *data, size_t bytes) {
  if (bytes > bytes_)
    throw OpenCLError("Buffer::write of " + std::to_string(bytes) + " bytes into a buffer of " +
                      std::to_string(bytes_));
  check(clEnqueueWriteBuffer(context_->queue(), mem_, CL_TRUE, 0, bytes, data, 0, nullptr, nullptr),
        "clEnqueueWriteBuffer");
}

void Buffer::read(void *data, size_t bytes) const {
  if (bytes > bytes_)
    throw OpenCLError("Buffer::read of " + std::to_string(bytes) + " bytes from a buffer of " +
                      std::to_string(bytes_));
  check(clEnqueueReadBuffer(context_->queue(), mem_, CL_TRUE, 0, bytes, data, 0, nullptr, nullptr),
        "clEnqueueReadBuffer");
}

Program::Program(std::shared_ptr<Context> context, const std::string &source,
                 const std::string &options)
    : context_(std::move(context)) {
  const char *text = source.c_str();
  const size_t length = source.size();
  cl_int err = CL_SUCCESS;
  program_ = clCreateProgramWithSource(context_->context(), 1, &text, &length, &err);
  check(err, "clCreateProgramWithSource");
  cl_device_id device = context_->device();
  err = clBuildProgram(program_, 1, &device, options.c_str(), nullptr, nullptr);
  if (err != CL_SUCCESS) {
    size_t size = 0;
    clGetProgramBuildInfo(program_, device, CL_PROGRAM_BUILD_LOG, 0, nullptr, &size);
    std::string log(size, '\0');
    clGetProgramBuildInfo(program_, device, CL_PROGRAM_BUILD_LOG, size, log.data(), nullptr);
    clReleaseProgram(program_);
    program_ = nullptr;
    throw OpenCLError("clBuildProgram failed (" + std::to_string(err) + "); build log:\n" + log);
  }
}

Program::~Program() {
  for (auto &entry : kernels_)
    clReleaseKernel(entry.second);
  if (program_)
    clReleaseProgram(program_);
}

cl_kernel Program::kernel(const std::string &name) {
  auto it = kernels_.find(name);
  if (it != kernels_.end())
    return it->second;
  cl_int err = CL_SUCCESS;
  cl_kernel k = clCreateKernel(program_, name.c_str(), &err);
  check(err, ("clCreateKernel(" + name + ")").c_str());
  kernels_[name] = k;
  return k;
}

} // namespace slak::runtime::opencl

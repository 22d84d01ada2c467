#include "runtime/cuda/Nvrtc.h"

#include <algorithm>
#include <mutex>

#include "runtime/cuda/DynamicLibrary.h"

namespace slak::runtime::cuda {

// The few NVRTC entry points we call, with their C signatures (nvrtc.h); the
// types are re-declared so that no CUDA header is needed to build.
using nvrtcResult = int;
using nvrtcProgram = struct _nvrtcProgram *;
constexpr nvrtcResult NVRTC_SUCCESS = 0;

struct Nvrtc::Api {
  const char *(*getErrorString)(nvrtcResult) = nullptr;
  nvrtcResult (*version)(int *, int *) = nullptr;
  nvrtcResult (*getNumSupportedArchs)(int *) = nullptr;
  nvrtcResult (*getSupportedArchs)(int *) = nullptr;
  nvrtcResult (*createProgram)(nvrtcProgram *, const char *, const char *, int, const char *const *,
                               const char *const *) = nullptr;
  nvrtcResult (*destroyProgram)(nvrtcProgram *) = nullptr;
  nvrtcResult (*compileProgram)(nvrtcProgram, int, const char *const *) = nullptr;
  nvrtcResult (*getPTXSize)(nvrtcProgram, size_t *) = nullptr;
  nvrtcResult (*getPTX)(nvrtcProgram, char *) = nullptr;
  nvrtcResult (*getCUBINSize)(nvrtcProgram, size_t *) = nullptr;
  nvrtcResult (*getCUBIN)(nvrtcProgram, char *) = nullptr;
  nvrtcResult (*getProgramLogSize)(nvrtcProgram, size_t *) = nullptr;
  nvrtcResult (*getProgramLog)(nvrtcProgram, char *) = nullptr;
};

Nvrtc::Nvrtc() : api_(std::make_unique<Api>()) {
  try {
    library_ = DynamicLibrary::open(
        libraryCandidates("SLAK_NVRTC_LIBRARY",
                          {"libnvrtc.so.13", "libnvrtc.so.12", "libnvrtc.so.11.2", "libnvrtc.so"},
                          cudaLibraryDirectories()),
        "NVRTC (libnvrtc)");
  } catch (const std::exception &e) {
    throw CudaError(std::string(e.what()) +
                    ". Install the CUDA toolkit's NVRTC (or the nvidia-cuda-nvrtc wheel) or set "
                    "SLAK_NVRTC_LIBRARY to the path of libnvrtc.so");
  }
  auto bind = [this](const char *name, auto &fn) {
    library_->bind<CudaError>(name, fn, "NVRTC library", "too old? NVRTC 11.2 or newer is needed");
  };
  bind("nvrtcGetErrorString", api_->getErrorString);
  bind("nvrtcVersion", api_->version);
  bind("nvrtcGetNumSupportedArchs", api_->getNumSupportedArchs);
  bind("nvrtcGetSupportedArchs", api_->getSupportedArchs);
  bind("nvrtcCreateProgram", api_->createProgram);
  bind("nvrtcDestroyProgram", api_->destroyProgram);
  bind("nvrtcCompileProgram", api_->compileProgram);
  bind("nvrtcGetPTXSize", api_->getPTXSize);
  bind("nvrtcGetPTX", api_->getPTX);
  bind("nvrtcGetCUBINSize", api_->getCUBINSize);
  bind("nvrtcGetCUBIN", api_->getCUBIN);
  bind("nvrtcGetProgramLogSize", api_->getProgramLogSize);
  bind("nvrtcGetProgramLog", api_->getProgramLog);
  if (api_->version(&major_, &minor_) != NVRTC_SUCCESS)
    throw CudaError("nvrtcVersion failed in " + library_->name());
  int count = 0;
  if (api_->getNumSupportedArchs(&count) == NVRTC_SUCCESS && count > 0) {
    archs_.resize(count);
    if (api_->getSupportedArchs(archs_.data()) != NVRTC_SUCCESS)
      archs_.clear();
  }
  std::sort(archs_.begin(), archs_.end());
}

Nvrtc::~Nvrtc() = default;

Nvrtc &Nvrtc::get() {
  return loadOnce<Nvrtc, CudaError>([] { return new Nvrtc(); });
}

bool Nvrtc::available(std::string *why) {
  try {
    get();
    return true;
  } catch (const std::exception &e) {
    if (why)
      *why = e.what();
    return false;
  }
}

std::string Nvrtc::versionString() const {
  return std::to_string(major_) + "." + std::to_string(minor_);
}

const std::string &Nvrtc::libraryName() const { return library_->name(); }

std::string Nvrtc::architectureOption(int arch, bool *cubin, int *target) const {
  if (archs_.empty() || std::find(archs_.begin(), archs_.end(), arch) != archs_.end()) {
    if (cubin)
      *cubin = true;
    if (target)
      *target = arch;
    return "--gpu-architecture=sm_" + std::to_string(arch);
  }
  // A device newer than this NVRTC: PTX for the newest virtual architecture
  // below it, which the driver compiles for the device.
  int best = 0;
  for (int a : archs_)
    if (a <= arch)
      best = std::max(best, a);
  if (best == 0)
    throw CudaError("the GPU has compute capability " + std::to_string(arch / 10) + "." +
                    std::to_string(arch % 10) + ", older than every architecture NVRTC " +
                    versionString() + " supports (oldest sm_" + std::to_string(archs_.front()) +
                    "); use an older CUDA toolkit's NVRTC via SLAK_NVRTC_LIBRARY");
  if (cubin)
    *cubin = false;
  if (target)
    *target = best;
  return "--gpu-architecture=compute_" + std::to_string(best);
}

NvrtcImage Nvrtc::compile(const std::string &source, const std::string &name, int arch,
                          const std::vector<std::string> &options) const {
  NvrtcImage out;
  const std::string archOption = architectureOption(arch, &out.cubin, &out.arch);
  std::vector<const char *> args = {archOption.c_str()};
  for (const std::string &option : options)
    args.push_back(option.c_str());

  nvrtcProgram program = nullptr;
  nvrtcResult status =
      api_->createProgram(&program, source.c_str(), name.c_str(), 0, nullptr, nullptr);
  if (status != NVRTC_SUCCESS)
    throw CudaError("nvrtcCreateProgram(" + name + ") failed: " + api_->getErrorString(status));
  struct Destroy {
    const Api *api;
    nvrtcProgram *program;
    ~Destroy() { api->destroyProgram(program); }
  } destroy{api_.get(), &program};

  status = api_->compileProgram(program, static_cast<int>(args.size()), args.data());
  size_t logSize = 0;
  if (api_->getProgramLogSize(program, &logSize) == NVRTC_SUCCESS && logSize > 1) {
    out.log.resize(logSize);
    api_->getProgramLog(program, out.log.data());
    while (!out.log.empty() && out.log.back() == '\0')
      out.log.pop_back();
  }
  if (status != NVRTC_SUCCESS)
    throw CudaError("NVRTC " + versionString() + " failed to compile " + name + " for " +
                    archOption + ": " + api_->getErrorString(status) + "\n" + out.log);
  size_t size = 0;
  if (out.cubin) {
    status = api_->getCUBINSize(program, &size);
    if (status == NVRTC_SUCCESS) {
      out.image.resize(size);
      status = api_->getCUBIN(program, out.image.data());
    }
  } else {
    status = api_->getPTXSize(program, &size);
    if (status == NVRTC_SUCCESS) {
      out.image.resize(size); // includes the terminating NUL the driver needs
      status = api_->getPTX(program, out.image.data());
    }
  }
  if (status != NVRTC_SUCCESS || out.image.empty())
    throw CudaError("NVRTC could not return the " + std::string(out.cubin ? "cubin" : "PTX") +
                    " of " + name + ": " + api_->getErrorString(status));
  return out;
}

} // namespace slak::runtime::cuda

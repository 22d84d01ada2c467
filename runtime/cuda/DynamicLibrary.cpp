#include "runtime/cuda/DynamicLibrary.h"

#include <dlfcn.h>

#include <algorithm>
#include <cstdlib>
#include <mutex>
#include <stdexcept>

#ifndef SLAK_CUDA_TOOLKIT_LIBDIR
#define SLAK_CUDA_TOOLKIT_LIBDIR ""
#endif

namespace slak::runtime::cuda {
namespace {

std::mutex &directoriesMutex() {
  static std::mutex mutex;
  return mutex;
}

std::vector<std::string> &extraDirectories() {
  static std::vector<std::string> dirs;
  return dirs;
}

} // namespace

std::shared_ptr<DynamicLibrary> DynamicLibrary::open(const std::vector<std::string> &candidates,
                                                     const std::string &what) {
  std::string tried, lastError;
  for (const std::string &name : candidates) {
    if (name.empty())
      continue;
    if (void *handle = ::dlopen(name.c_str(), RTLD_NOW | RTLD_LOCAL))
      return std::shared_ptr<DynamicLibrary>(new DynamicLibrary(handle, name));
    const char *err = ::dlerror();
    lastError = err ? err : "unknown error";
    tried += (tried.empty() ? "" : ", ") + name;
  }
  throw std::runtime_error("cannot load " + what + ": tried " + tried +
                           (lastError.empty() ? "" : " (last error: " + lastError + ")"));
}

DynamicLibrary::~DynamicLibrary() {
  // Driver and compiler libraries stay loaded until exit: unloading them
  // while the process may still hold their objects is not worth the risk.
  (void)handle_;
}

void *DynamicLibrary::symbol(const char *name) const { return ::dlsym(handle_, name); }

std::vector<std::string> libraryCandidates(const char *envVar,
                                           const std::vector<std::string> &sonames,
                                           const std::vector<std::string> &directories) {
  std::vector<std::string> names;
  if (const char *path = std::getenv(envVar); path && *path)
    names.push_back(path);
  names.insert(names.end(), sonames.begin(), sonames.end());
  for (const std::string &dir : directories)
    for (const std::string &soname : sonames)
      names.push_back(dir + "/" + soname);
  return names;
}

std::vector<std::string> cudaLibraryDirectories() {
  std::vector<std::string> dirs;
  {
    std::lock_guard<std::mutex> lock(directoriesMutex());
    dirs = extraDirectories();
  }
  for (const char *dir : {SLAK_CUDA_TOOLKIT_LIBDIR, "/usr/local/cuda/lib64", "/usr/local/cuda/lib"})
    if (*dir && std::find(dirs.begin(), dirs.end(), dir) == dirs.end())
      dirs.push_back(dir);
  return dirs;
}

void addCudaLibraryDirectory(const std::string &directory) {
  std::lock_guard<std::mutex> lock(directoriesMutex());
  auto &dirs = extraDirectories();
  if (std::find(dirs.begin(), dirs.end(), directory) == dirs.end())
    dirs.push_back(directory);
}

} // namespace slak::runtime::cuda

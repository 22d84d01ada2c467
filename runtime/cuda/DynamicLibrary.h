// DynamicLibrary: a shared library opened at run time (dlopen), so that the
// CUDA driver and NVRTC are reached without linking against them (DESIGN
// section 3): every machine builds the same binaries, and one without a GPU
// says so when a GPU is first asked for.
#pragma once

#include <exception>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace slak::runtime::cuda {

class DynamicLibrary {
public:
  /// Opens the first of `candidates` (names for the loader's search, or
  /// paths) that dlopen accepts. Throws std::runtime_error naming `what`,
  /// every candidate tried and the loader's last message.
  static std::shared_ptr<DynamicLibrary> open(const std::vector<std::string> &candidates,
                                              const std::string &what);
  ~DynamicLibrary();
  DynamicLibrary(const DynamicLibrary &) = delete;
  DynamicLibrary &operator=(const DynamicLibrary &) = delete;

  /// The symbol, or nullptr when the library lacks it.
  void *symbol(const char *name) const;
  /// Sets `fn` to the function `symbolName`; throws Error("<owner> <name()>
  /// lacks <symbolName> (<hint>)") when the library lacks it.
  template <typename Error, typename F>
  void bind(const char *symbolName, F &fn, const std::string &owner,
            const std::string &hint) const {
    fn = reinterpret_cast<F>(symbol(symbolName));
    if (!fn)
      throw Error(owner + " " + name_ + " lacks " + symbolName + " (" + hint + ")");
  }
  /// The name or path that was opened.
  const std::string &name() const { return name_; }

private:
  DynamicLibrary(void *handle, std::string name) : handle_(handle), name_(std::move(name)) {}
  void *handle_ = nullptr;
  std::string name_;
};

/// The process's one T, made by `make()` on the first call and never
/// destroyed (modules and contexts may outlive static destructors). A failed
/// first call is remembered: every later call throws Error with its message
/// without trying again. One instance per call site of loadOnce.
template <typename T, typename Error, typename Make> T &loadOnce(Make make) {
  static T *instance = nullptr;
  static std::string error;
  static std::mutex mutex;
  std::lock_guard<std::mutex> lock(mutex);
  if (!instance) {
    if (!error.empty())
      throw Error(error);
    try {
      instance = make();
    } catch (const std::exception &e) {
      error = e.what();
      throw Error(error);
    }
  }
  return *instance;
}

/// Where to look for a library, in order: the path in environment variable
/// `envVar` when it is set, `sonames` for the loader's search, then each of
/// `sonames` in each of `directories`.
std::vector<std::string> libraryCandidates(const char *envVar,
                                           const std::vector<std::string> &sonames,
                                           const std::vector<std::string> &directories = {});

/// Folders of CUDA libraries besides the loader's search path: the CUDA
/// toolkit found at configure time, /usr/local/cuda, and folders added with
/// addCudaLibraryDirectory (the runtime adds the one that ships with the
/// torch wheel).
std::vector<std::string> cudaLibraryDirectories();
void addCudaLibraryDirectory(const std::string &directory);

} // namespace slak::runtime::cuda

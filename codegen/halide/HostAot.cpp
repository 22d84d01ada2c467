#include "codegen/halide/HostAot.h"

#include "codegen/halide/HostJit.h"
#include "codegen/halide/ScratchAllocator.h"

#include <dlfcn.h>
#include <elf.h>
#include <link.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <mutex>
#include <sstream>
#include <stdexcept>

#ifndef SLAK_HALIDE_VERSION
#define SLAK_HALIDE_VERSION "unknown"
#endif

using namespace Halide;

namespace slak::codegen::cpu {
namespace {

std::mutex storeMutex;
std::shared_ptr<PipelineStore> pipelineStore;
std::atomic<int> loadedCount{0};

std::shared_ptr<PipelineStore> currentStore() {
  std::lock_guard<std::mutex> lock(storeMutex);
  return pipelineStore;
}

std::string hex64(uint64_t v) {
  char text[17];
  std::snprintf(text, sizeof text, "%016llx", static_cast<unsigned long long>(v));
  return text;
}

uint64_t fnv1a(const std::string &bytes) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char c : bytes)
    h = (h ^ c) * 0x100000001b3ull;
  return h;
}

/// The GNU build ID of the loaded binary holding `address` (hex), else its
/// path, size and modification time; empty when neither is known.
std::string buildIdOf(const void *address) {
  struct Search {
    uintptr_t address;
    std::string id;
  } search{reinterpret_cast<uintptr_t>(address), ""};
  dl_iterate_phdr(
      [](dl_phdr_info *info, size_t, void *data) -> int {
        auto *s = static_cast<Search *>(data);
        bool holds = false;
        for (int i = 0; i < info->dlpi_phnum; ++i) {
          const ElfW(Phdr) &ph = info->dlpi_phdr[i];
          const uintptr_t start = info->dlpi_addr + ph.p_vaddr;
          holds |= ph.p_type == PT_LOAD && s->address >= start && s->address < start + ph.p_memsz;
        }
        if (!holds)
          return 0;
        for (int i = 0; i < info->dlpi_phnum; ++i) {
          const ElfW(Phdr) &ph = info->dlpi_phdr[i];
          if (ph.p_type != PT_NOTE)
            continue;
          const char *p = reinterpret_cast<const char *>(info->dlpi_addr + ph.p_vaddr);
          const char *end = p + ph.p_memsz;
          while (p + sizeof(ElfW(Nhdr)) <= end) {
            const auto *note = reinterpret_cast<const ElfW(Nhdr) *>(p);
            const char *name = p + sizeof(ElfW(Nhdr));
            const auto *desc =
                reinterpret_cast<const unsigned char *>(name + ((note->n_namesz + 3) & ~3u));
            if (note->n_type == NT_GNU_BUILD_ID && note->n_namesz == 4 &&
                std::memcmp(name, "GNU", 4) == 0) {
              for (unsigned k = 0; k < note->n_descsz; ++k) {
                char byte[3];
                std::snprintf(byte, sizeof byte, "%02x", desc[k]);
                s->id += byte;
              }
              return 1;
            }
            p = reinterpret_cast<const char *>(desc) + ((note->n_descsz + 3) & ~3u);
          }
        }
        return 1;
      },
      &search);
  if (!search.id.empty())
    return search.id;
  Dl_info info{};
  if (!dladdr(address, &info) || !info.dli_fname)
    return "";
  std::ifstream in(info.dli_fname, std::ios::binary | std::ios::ate);
  if (!in)
    return "";
  return std::string(info.dli_fname) + ":" + std::to_string(static_cast<long long>(in.tellg()));
}

/// What every stored library depends on besides its own pipeline: Halide's
/// version and library, and the binary that defines the pipelines.
const std::string &toolchainDescription() {
  static const std::string text = [] {
    const std::string ours = buildIdOf(reinterpret_cast<const void *>(&toolchainDescription));
    const std::string halide = buildIdOf(reinterpret_cast<const void *>(&Halide::get_host_target));
    if (ours.empty() || halide.empty())
      return std::string();
    return std::string("halide=") + SLAK_HALIDE_VERSION + " libHalide=" + halide +
           "\npipelines=" + ours + "\ncxx=" + __VERSION__;
  }();
  return text;
}

// ---------------------------------------------------------------------------
// Building shared libraries with the system compiler.

std::string shellQuote(const std::string &s) {
  std::string out = "'";
  for (char c : s)
    out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

/// A private temporary folder, removed with what is in it.
class ScratchFolder {
public:
  ScratchFolder() {
    const char *tmp = std::getenv("TMPDIR");
    std::string pattern = std::string(tmp && *tmp ? tmp : "/tmp") + "/slak-halide-XXXXXX";
    if (::mkdtemp(pattern.data()))
      path_ = pattern;
  }
  ~ScratchFolder() {
    if (path_.empty())
      return;
    for (const std::string &f : files_)
      ::unlink(f.c_str());
    ::rmdir(path_.c_str());
  }
  bool ok() const { return !path_.empty(); }
  std::string file(const std::string &name) {
    files_.push_back(path_ + "/" + name);
    return files_.back();
  }

private:
  std::string path_;
  std::vector<std::string> files_;
};

std::string linker() {
  const char *env = std::getenv("SLAK_HALIDE_LINKER");
  return env && *env ? env : "cc";
}

/// Runs `command`; its output when it fails, else empty.
std::string runCommand(const std::string &command) {
  FILE *pipe = ::popen((command + " 2>&1").c_str(), "r");
  if (!pipe)
    return "cannot run " + command + ": " + std::strerror(errno);
  std::string output;
  char buffer[512];
  while (size_t n = std::fread(buffer, 1, sizeof buffer, pipe))
    output.append(buffer, n);
  const int status = ::pclose(pipe);
  if (status == 0)
    return "";
  while (!output.empty() && (output.back() == '\n' || output.back() == '\r'))
    output.pop_back();
  const size_t line = output.find('\n');
  return command + " failed" + (output.empty() ? std::string() : ": " + output.substr(0, line));
}

bool readFile(const std::string &path, std::string &out) {
  std::ifstream in(path, std::ios::binary);
  if (!in)
    return false;
  out.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  return true;
}

bool writeFile(const std::string &path, const std::string &bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  return static_cast<bool>(out);
}

// ---------------------------------------------------------------------------
// Loading shared libraries from memory.

/// A shared library loaded from an anonymous in-memory file. The file stays
/// open while the library is loaded, so that its /proc/self/fd name is not
/// given to another library meanwhile.
class Library {
public:
  ~Library() {
    if (handle_)
      ::dlclose(handle_);
    if (fd_ >= 0)
      ::close(fd_);
  }
  /// Null with the reason in `why` when the bytes are not a loadable library.
  static std::unique_ptr<Library> open(const std::string &bytes, const std::string &name,
                                       std::string *why) {
    auto lib = std::unique_ptr<Library>(new Library());
    lib->fd_ = ::memfd_create(name.c_str(), MFD_CLOEXEC);
    if (lib->fd_ < 0) {
      *why = std::string("memfd_create: ") + std::strerror(errno);
      return nullptr;
    }
    size_t done = 0;
    while (done < bytes.size()) {
      const ssize_t n = ::write(lib->fd_, bytes.data() + done, bytes.size() - done);
      if (n < 0 && errno == EINTR)
        continue;
      if (n <= 0) {
        *why = std::string("writing the library to memory: ") + std::strerror(errno);
        return nullptr;
      }
      done += static_cast<size_t>(n);
    }
    const std::string path = "/proc/self/fd/" + std::to_string(lib->fd_);
    lib->handle_ = ::dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (!lib->handle_) {
      const char *err = ::dlerror();
      *why = std::string("not a loadable library (") + (err ? err : "dlopen failed") + ")";
      return nullptr;
    }
    return lib;
  }
  void *symbol(const std::string &name) const { return ::dlsym(handle_, name.c_str()); }

private:
  Library() = default;
  void *handle_ = nullptr;
  int fd_ = -1;
};

// ---------------------------------------------------------------------------
// The shared Halide runtime of the loaded pipelines.

thread_local std::string runtimeError;

void captureError(void *, const char *message) {
  if (!runtimeError.empty())
    runtimeError += "; ";
  runtimeError += message ? message : "unknown error";
  while (!runtimeError.empty() && runtimeError.back() == '\n')
    runtimeError.pop_back();
}

using JitMalloc = void *(*)(JITUserContext *, size_t);
using JitFree = void (*)(JITUserContext *, void *);
JitMalloc scratchMalloc = nullptr;
JitFree scratchFree = nullptr;
void *aotMalloc(void *, size_t size) { return scratchMalloc(nullptr, size); }
void aotFree(void *, void *ptr) { scratchFree(nullptr, ptr); }

/// Parallel loops of loaded code run where the pipeline's JIT handlers say
/// (the process's OpenMP team, HalideThreads.h), else on the runtime's pool.
/// The handler is the calling thread's; loops nested in tasks use the pool.
using JitParFor = int (*)(JITUserContext *, int (*)(JITUserContext *, int, uint8_t *), int, int,
                          uint8_t *);
thread_local JitParFor callerParFor = nullptr;
int (*defaultParFor)(void *, halide_task_t, int, int, uint8_t *) = nullptr;

int aotParFor(void *context, halide_task_t task, int min, int size, uint8_t *closure) {
  if (JitParFor parFor = callerParFor) {
    callerParFor = nullptr; // the calling thread may run tasks with nested loops
    const int result = parFor(static_cast<JITUserContext *>(context),
                              reinterpret_cast<int (*)(JITUserContext *, int, uint8_t *)>(task),
                              min, size, closure);
    callerParFor = parFor;
    return result;
  }
  return defaultParFor(context, task, min, size, closure);
}

struct Runtime {
  std::mutex mutex;
  bool tried = false;
  std::string failure; // why there is no runtime (after trying)
  std::string soname, bytes;
  std::unique_ptr<Library> library;
};

Runtime &runtime() {
  static Runtime *r = new Runtime(); // never unloaded: its threads outlive static destruction
  return *r;
}

std::string runtimeDescription() {
  return "slak halide runtime v1\ntarget=" + aotTarget().to_string() + "\n" +
         toolchainDescription();
}

bool buildRuntime(const std::string &soname, std::string &bytes, std::string &why) {
  ScratchFolder dir;
  if (!dir.ok()) {
    why = std::string("cannot make a temporary folder: ") + std::strerror(errno);
    return false;
  }
  const std::string object = dir.file("runtime.o"), library = dir.file(soname);
  try {
    compile_standalone_runtime(object, aotTarget());
  } catch (const Halide::Error &e) {
    why = std::string("Halide cannot compile its runtime: ") + e.what();
    return false;
  }
  why = runCommand(linker() + " -shared -o " + shellQuote(library) + " " + shellQuote(object) +
                   " -Wl,-soname," + soname + " -lpthread -ldl -lm");
  if (!why.empty())
    return false;
  if (!readFile(library, bytes)) {
    why = "cannot read " + library;
    return false;
  }
  return true;
}

/// Loads (or builds, stores and loads) the runtime once per process; false
/// with the reason in `*why` when there is none.
bool ensureRuntime(PipelineStore &store, std::string *why) {
  Runtime &rt = runtime();
  std::lock_guard<std::mutex> lock(rt.mutex);
  if (rt.tried) {
    *why = rt.failure;
    return rt.library != nullptr;
  }
  rt.tried = true;
  if (toolchainDescription().empty()) {
    rt.failure = *why = "no build ID identifies this build's pipelines";
    return false;
  }
  const std::string description = runtimeDescription();
  rt.soname = "libslak_halide_runtime_" + hex64(fnv1a(description)) + ".so";
  std::string error;
  if (std::optional<std::string> stored = store.load(description)) {
    rt.library = Library::open(*stored, rt.soname, &error);
    if (rt.library)
      rt.bytes = std::move(*stored);
    else
      store.reject(description, error);
  }
  if (!rt.library) {
    if (!buildRuntime(rt.soname, rt.bytes, error) ||
        !(rt.library = Library::open(rt.bytes, rt.soname, &error))) {
      rt.failure = *why = error;
      return false;
    }
    store.store(description, rt.bytes);
  }
  using SetMalloc = halide_malloc_t (*)(halide_malloc_t);
  using SetFree = halide_free_t (*)(halide_free_t);
  using SetError = halide_error_handler_t (*)(halide_error_handler_t);
  auto setMalloc = reinterpret_cast<SetMalloc>(rt.library->symbol("halide_set_custom_malloc"));
  auto setFree = reinterpret_cast<SetFree>(rt.library->symbol("halide_set_custom_free"));
  auto setError = reinterpret_cast<SetError>(rt.library->symbol("halide_set_error_handler"));
  using SetParFor = halide_do_par_for_t (*)(halide_do_par_for_t);
  auto setParFor = reinterpret_cast<SetParFor>(rt.library->symbol("halide_set_custom_do_par_for"));
  defaultParFor =
      reinterpret_cast<halide_do_par_for_t>(rt.library->symbol("halide_default_do_par_for"));
  if (!setMalloc || !setFree || !setError || !setParFor || !defaultParFor) {
    rt.library.reset();
    rt.failure = *why = "the Halide runtime library lacks its set-handler functions";
    store.reject(description, rt.failure);
    return false;
  }
  JITUserContext context;
  useScratchAllocator(context);
  scratchMalloc = context.handlers.custom_malloc;
  scratchFree = context.handlers.custom_free;
  if (scratchMalloc && scratchFree) {
    setMalloc(aotMalloc);
    setFree(aotFree);
  }
  setError(captureError);
  setParFor(aotParFor);
  return true;
}

/// Whether the library's metadata describes `args` + output, for `target`.
std::string checkMetadata(const halide_filter_metadata_t *meta,
                          const std::vector<Internal::InferredArgument> &args,
                          const std::string &outputName, int outputDims,
                          const std::string &target) {
  if (!meta)
    return "it has no metadata";
  if (meta->target == nullptr || target != meta->target)
    return std::string("it was compiled for ") + (meta->target ? meta->target : "no target") +
           ", not " + target;
  if (meta->num_arguments != static_cast<int>(args.size()) + 1)
    return "it takes " + std::to_string(meta->num_arguments) + " arguments, the pipeline " +
           std::to_string(args.size() + 1);
  for (size_t i = 0; i <= args.size(); ++i) {
    const halide_filter_argument_t &a = meta->arguments[i];
    const bool output = i == args.size();
    const std::string name = output ? outputName : args[i].arg.name;
    const int kind = output ? halide_argument_kind_output_buffer : args[i].arg.kind;
    const int dims = output ? outputDims : args[i].arg.dimensions;
    if (a.name == nullptr || name != a.name || a.kind != kind || a.dimensions != dims)
      return "its argument " + std::to_string(i) + " is " + (a.name ? a.name : "unnamed") +
             ", the pipeline's is " + name;
  }
  return "";
}

} // namespace

class LoadedPipeline {
public:
  std::unique_ptr<Library> library;
  int (*entry)(void **) = nullptr;
  std::vector<Internal::InferredArgument> args;
};

void setPipelineStore(std::shared_ptr<PipelineStore> store) {
  std::lock_guard<std::mutex> lock(storeMutex);
  pipelineStore = std::move(store);
}

bool hasPipelineStore() { return currentStore() != nullptr; }

int loadedPipelineCount() { return loadedCount.load(); }

Target aotTarget() { return hostTarget().without_feature(Target::JIT); }

namespace {

std::vector<Internal::InferredArgument> inferArguments(Pipeline &pipeline) {
  std::vector<Internal::Function> outputs;
  for (const Func &f : pipeline.outputs())
    outputs.push_back(f.function());
  return Internal::infer_arguments(Internal::Stmt(), outputs);
}

std::string describe(const std::vector<Internal::InferredArgument> &args, const Func &output,
                     const std::string &name, const std::string &key, const Target &target) {
  std::ostringstream os;
  os << "slak halide pipeline v1\nname=" << name << "\nkey=" << key
     << "\ntarget=" << target.to_string() << "\nruntime=" << runtimeDescription() << "\nargs=";
  for (const Internal::InferredArgument &a : args)
    os << a.arg.name << ":" << static_cast<int>(a.arg.kind) << ":" << a.arg.dimensions << ":"
       << a.arg.type << ",";
  os << "\noutput=" << output.name() << ":" << output.dimensions();
  return os.str();
}

} // namespace

std::string pipelineDescription(Pipeline &pipeline, const std::string &name, const std::string &key,
                                const Target &target) {
  return describe(inferArguments(pipeline), pipeline.outputs().at(0), name, key, target);
}

std::shared_ptr<LoadedPipeline> compileOrLoadPipeline(Pipeline &pipeline, const std::string &name,
                                                      const std::string &key, bool *compiled) {
  *compiled = false;
  std::shared_ptr<PipelineStore> store = currentStore();
  if (!store)
    return nullptr;
  std::string why;
  if (!ensureRuntime(*store, &why)) {
    store->warn("CPU pipelines are JIT-compiled in every process (none are kept on disk): " + why);
    return nullptr;
  }
  if (pipeline.outputs().size() != 1)
    return nullptr;
  auto code = std::make_shared<LoadedPipeline>();
  code->args = inferArguments(pipeline);
  for (const Internal::InferredArgument &a : code->args)
    if (!a.param.defined())
      return nullptr; // constant buffers would be compiled in: JIT only
  const Func output = pipeline.outputs().front();
  const Target target = aotTarget().with_feature(Target::NoRuntime);
  const std::string description = describe(code->args, output, name, key, target);
  const std::string hash = hex64(fnv1a(description));
  const std::string function = "slak_" + name + "_" + hash;

  auto open = [&](const std::string &bytes, std::string *error) {
    code->library = Library::open(bytes, function, error);
    if (!code->library)
      return false;
    auto entry = reinterpret_cast<int (*)(void **)>(code->library->symbol(function + "_argv"));
    auto metadata = reinterpret_cast<const halide_filter_metadata_t *(*)()>(
        code->library->symbol(function + "_metadata"));
    if (!entry || !metadata) {
      *error = "it does not define " + function + " (another pipeline's code)";
    } else {
      *error = checkMetadata(metadata(), code->args, output.name(), output.dimensions(),
                             target.to_string());
    }
    if (!error->empty()) {
      code->library.reset();
      return false;
    }
    code->entry = entry;
    return true;
  };

  std::string error;
  if (std::optional<std::string> stored = store->load(description)) {
    if (open(*stored, &error)) {
      ++loadedCount;
      return code;
    }
    store->reject(description, "CPU pipeline " + name + ": " + error + "; compiling it again");
  }

  ScratchFolder dir;
  if (!dir.ok()) {
    store->warn(std::string("CPU pipelines are JIT-compiled: cannot make a temporary folder: ") +
                std::strerror(errno));
    return nullptr;
  }
  const std::string object = dir.file("pipeline.o"), library = dir.file("pipeline.so");
  const std::string runtimeFile = dir.file(runtime().soname);
  std::vector<Argument> arguments;
  for (const Internal::InferredArgument &a : code->args)
    arguments.push_back(a.arg);
  pipeline.compile_to_object(object, arguments, function, target);
  *compiled = true;
  std::string bytes;
  if (!writeFile(runtimeFile, runtime().bytes))
    error = "cannot write " + runtimeFile;
  else
    error = runCommand(linker() + " -shared -o " + shellQuote(library) + " " + shellQuote(object) +
                       " " + shellQuote(runtimeFile));
  if (error.empty() && !readFile(library, bytes))
    error = "cannot read " + library;
  if (error.empty() && !open(bytes, &error))
    error = "the library just built does not load: " + error;
  if (!error.empty()) {
    store->warn("CPU pipelines are JIT-compiled (none are kept on disk): " + error);
    return nullptr;
  }
  store->store(description, bytes);
  return code;
}

void realizeLoaded(const LoadedPipeline &code, const char *what, halide_buffer_t *output,
                   const ParamMap &params, const JITHandlers &handlers) {
  std::vector<void *> argv;
  std::vector<Buffer<>> buffers;
  buffers.reserve(code.args.size());
  for (const Internal::InferredArgument &a : code.args) {
    Buffer<> *unused = nullptr;
    const Internal::Parameter &p = params.map(a.param, unused);
    if (a.arg.is_buffer()) {
      buffers.push_back(p.buffer());
      if (!buffers.back().defined())
        throw std::runtime_error(std::string("Halide ") + what + " pipeline: no buffer for " +
                                 a.arg.name);
      argv.push_back(buffers.back().raw_buffer());
    } else {
      argv.push_back(p.scalar_address());
    }
  }
  argv.push_back(output);
  runtimeError.clear();
  callerParFor = handlers.custom_do_par_for;
  const int result = code.entry(argv.data());
  callerParFor = nullptr;
  if (result != 0)
    throw std::runtime_error(std::string("Halide ") + what + " pipeline failed: " +
                             (runtimeError.empty() ? "unknown error" : runtimeError));
}

} // namespace slak::codegen::cpu

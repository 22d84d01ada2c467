#include "codegen/halide/HalideThreads.h"

#include "codegen/halide/HostJit.h"

#include <dlfcn.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <mutex>
#include <stdexcept>
#include <thread>

namespace slak::codegen::cpu {
namespace {

std::atomic<int> threadCount{0};

/// libgomp's entry for `#pragma omp parallel` (its C ABI, stable since GCC
/// 4.9): runs fn(data) on a team of num_threads threads, the caller included.
using GompParallel = void (*)(void (*fn)(void *), void *data, unsigned numThreads, unsigned flags);

/// GOMP_parallel of the libgomp already in the process (LibTorch's), or null
/// where none is loaded or SLAK_HALIDE_POOL=halide asks for Halide's pool.
GompParallel gompParallel() {
  static GompParallel fn = [] {
    if (const char *pool = std::getenv("SLAK_HALIDE_POOL"); pool && std::string(pool) == "halide")
      return GompParallel(nullptr);
    void *gomp = ::dlopen("libgomp.so.1", RTLD_LAZY | RTLD_NOLOAD);
    return gomp ? reinterpret_cast<GompParallel>(::dlsym(gomp, "GOMP_parallel")) : nullptr;
  }();
  return fn;
}

using Task = int (*)(Halide::JITUserContext *, int, uint8_t *);

/// One parallel loop: threads take the next index until none is left.
struct ParallelLoop {
  Halide::JITUserContext *context;
  Task task;
  uint8_t *closure;
  int end;
  std::atomic<int> next;
  std::atomic<int> status{0};
};

void runLoopIndices(void *data) {
  auto *loop = static_cast<ParallelLoop *>(data);
  for (int i = loop->next.fetch_add(1); i < loop->end; i = loop->next.fetch_add(1))
    if (int r = loop->task(loop->context, i, loop->closure))
      loop->status.store(r);
}

int openMpParallelFor(Halide::JITUserContext *context, Task task, int min, int size,
                      uint8_t *closure) {
  ParallelLoop loop{context, task, closure, min + size, {min}};
  const int threads = std::min(size, std::max(1, threadCount.load()));
  if (threads <= 1)
    runLoopIndices(&loop);
  else
    gompParallel()(runLoopIndices, &loop, static_cast<unsigned>(threads), 0);
  return loop.status.load();
}

/// Sets the size of Halide's own JIT thread pool (where no OpenMP team runs
/// the loops).
void setHalidePoolSize(int threads) {
  static int (*setNumThreads)(int) = nullptr;
  if (setNumThreads == nullptr) {
    // The thread pool lives in the JIT runtime shared by every pipeline; make
    // sure it exists, then call its halide_set_num_threads.
    using Halide::Internal::JITModule;
    using Halide::Internal::JITSharedRuntime;
    auto modules = JITSharedRuntime::get(nullptr, hostTarget(), false);
    if (modules.empty()) {
      Halide::Func probe("slak_runtime_probe");
      Halide::Var x;
      probe(x) = x;
      Halide::Buffer<int32_t> out(1);
      probe.realize(out, hostTarget());
      modules = JITSharedRuntime::get(nullptr, hostTarget(), false);
    }
    for (const JITModule &m : modules) {
      auto it = m.exports().find("halide_set_num_threads");
      if (it != m.exports().end())
        setNumThreads = reinterpret_cast<int (*)(int)>(it->second.address);
    }
    if (setNumThreads == nullptr)
      throw std::runtime_error("Halide JIT runtime has no halide_set_num_threads; cannot set the "
                               "CPU thread count");
  }
  setNumThreads(threads);
}

} // namespace

bool parallelLoopsOnOpenMp() { return gompParallel() != nullptr; }

void useHostThreadPool(Halide::Pipeline &pipeline) {
  if (parallelLoopsOnOpenMp())
    pipeline.jit_handlers().custom_do_par_for = openMpParallelFor;
}

void setHalideThreads(int threads) {
  static std::mutex mutex;
  std::lock_guard<std::mutex> lock(mutex);
  if (threads <= 0)
    threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  if (threads == threadCount.load())
    return;
  // Pipelines without the OpenMP loop (BiasGradPipeline, the probes of the
  // tests) still use Halide's pool: size it too.
  setHalidePoolSize(threads);
  threadCount.store(threads);
}

} // namespace slak::codegen::cpu

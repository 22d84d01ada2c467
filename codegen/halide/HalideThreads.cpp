#include "codegen/halide/HalideThreads.h"

#include "codegen/halide/HostJit.h"

#include <Halide.h>

#include <algorithm>
#include <mutex>
#include <stdexcept>
#include <thread>

namespace slak::codegen::cpu {

void setHalideThreads(int threads) {
  static std::mutex mutex;
  static int current = -1;
  static int (*setNumThreads)(int) = nullptr;
  std::lock_guard<std::mutex> lock(mutex);
  if (threads <= 0)
    threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  if (threads == current)
    return;
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
  current = threads;
}

} // namespace slak::codegen::cpu

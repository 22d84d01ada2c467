// HostMemory: keeps freed host memory in the process for the next tensor of
// the same size, instead of returning it to the kernel.
//
// glibc serves every allocation above its mmap threshold (at most 32 MiB)
// with a fresh mmap and unmaps it on free. A SLaK-T training step at 224 px
// allocates and frees activations of 12-50 MiB hundreds of times, so each
// one page-faults again and the kernel zeroes it: `perf` shows
// clear_page_erms at 9% of a training run, and a step took 40% longer
// (slak-bench --train, both large-kernel backends alike). With mmap off and
// no trimming, freed blocks stay in the heap and are reused; the process
// keeps its peak footprint.
//
// SLAK_MALLOC=system keeps glibc's defaults.
#pragma once

#include <climits>
#include <cstdlib>
#include <cstring>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace slak::tools {

/// Called at the top of main(), before any large allocation. Returns whether
/// the allocator was changed.
inline bool retainFreedHostMemory() {
  const char *mode = std::getenv("SLAK_MALLOC");
  if (mode && std::strcmp(mode, "system") == 0)
    return false;
#if defined(__GLIBC__)
  // M_MMAP_MAX 0: no allocation is served by its own mmap; M_TRIM_THRESHOLD
  // at its maximum: free never shrinks the heap.
  return mallopt(M_MMAP_MAX, 0) == 1 && mallopt(M_TRIM_THRESHOLD, INT_MAX) == 1;
#else
  return false;
#endif
}

} // namespace slak::tools

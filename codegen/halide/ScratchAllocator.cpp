#include "codegen/halide/ScratchAllocator.h"

#include <cstdlib>

namespace slak::codegen::cpu {
namespace {

struct ScratchCache {
  static constexpr size_t kHeader = 64; // keeps the returned pointer 64-byte aligned
  static constexpr int kSlots = 16;
  void *blocks[kSlots] = {};
  size_t sizes[kSlots] = {};
  int count = 0;
  ~ScratchCache() {
    for (int k = 0; k < count; ++k)
      std::free(blocks[k]);
  }
};
thread_local ScratchCache scratchCache;

void *scratchMalloc(Halide::JITUserContext *, size_t size) {
  ScratchCache &cache = scratchCache;
  int best = -1;
  for (int k = 0; k < cache.count; ++k)
    if (cache.sizes[k] >= size && (best < 0 || cache.sizes[k] < cache.sizes[best]))
      best = k;
  char *block;
  if (best >= 0) {
    block = static_cast<char *>(cache.blocks[best]);
    --cache.count;
    cache.blocks[best] = cache.blocks[cache.count];
    cache.sizes[best] = cache.sizes[cache.count];
  } else {
    // Halide may read a little past either end of a buffer: pad both sides.
    const size_t bytes = (size + 2 * ScratchCache::kHeader + 63) / 64 * 64;
    block = static_cast<char *>(std::aligned_alloc(64, bytes));
    if (block == nullptr)
      return nullptr;
    *reinterpret_cast<size_t *>(block) = size;
  }
  return block + ScratchCache::kHeader;
}

void scratchFree(Halide::JITUserContext *, void *ptr) {
  if (ptr == nullptr)
    return;
  char *block = static_cast<char *>(ptr) - ScratchCache::kHeader;
  const size_t size = *reinterpret_cast<size_t *>(block);
  ScratchCache &cache = scratchCache;
  if (cache.count < ScratchCache::kSlots) {
    cache.blocks[cache.count] = block;
    cache.sizes[cache.count] = size;
    ++cache.count;
    return;
  }
  // Full: keep the larger of this block and the smallest cached one.
  int smallest = 0;
  for (int k = 1; k < cache.count; ++k)
    if (cache.sizes[k] < cache.sizes[smallest])
      smallest = k;
  if (cache.sizes[smallest] >= size) {
    std::free(block);
    return;
  }
  std::free(cache.blocks[smallest]);
  cache.blocks[smallest] = block;
  cache.sizes[smallest] = size;
}

} // namespace

void useScratchAllocator(Halide::JITUserContext &context) {
  context.handlers.custom_malloc = scratchMalloc;
  context.handlers.custom_free = scratchFree;
}

} // namespace slak::codegen::cpu

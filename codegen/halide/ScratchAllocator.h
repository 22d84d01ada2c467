// ScratchAllocator: the allocator of the pipelines' per-plane scratch
// buffers. Every (n, c) task allocates the same few buffers; a small
// per-thread cache of freed blocks turns that into pointer swaps instead of
// malloc/free (and the page faults of a heap that trims itself after every
// plane).
#pragma once

#include <Halide.h>

namespace slak::codegen::cpu {

/// Makes `context`'s realizations allocate through the scratch cache.
void useScratchAllocator(Halide::JITUserContext &context);

} // namespace slak::codegen::cpu

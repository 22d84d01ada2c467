// tools/common/HostMemory.h: after retainFreedHostMemory, a 64 MiB block
// comes from the heap (not its own mmap) and is kept after free; with
// SLAK_MALLOC=system nothing changes.
#include "tools/common/HostMemory.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>

#if defined(__GLIBC__)
#include <malloc.h>

TEST(HostMemory, LargeBlocksComeFromTheHeapAndStayAfterFree) {
  setenv("SLAK_MALLOC", "system", 1);
  EXPECT_FALSE(slak::tools::retainFreedHostMemory());
  unsetenv("SLAK_MALLOC");
  ASSERT_TRUE(slak::tools::retainFreedHostMemory());

  const size_t size = 64u << 20;
  const size_t mappedBefore = mallinfo2().hblkhd;
  auto *block = static_cast<char *>(std::malloc(size));
  ASSERT_NE(block, nullptr);
  std::memset(block, 1, size);
  // glibc's default would serve this with mmap (counted in hblkhd).
  EXPECT_EQ(mallinfo2().hblkhd, mappedBefore);
  const size_t heapWithBlock = mallinfo2().arena;
  std::free(block);
  // Not trimmed: the heap keeps its size for the next activation.
  EXPECT_EQ(mallinfo2().arena, heapWithBlock);
  EXPECT_GE(mallinfo2().fordblks, size);
}
#endif

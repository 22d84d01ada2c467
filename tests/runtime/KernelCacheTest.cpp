// The kernel cache: keys, the entry format (corrupt, truncated and foreign
// entries are detected and rebuilt, never returned), memory and disk hits,
// and several threads and processes building the same entries at once.
#include <gtest/gtest.h>

#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <thread>

#include "runtime/KernelCache.h"

namespace slak::runtime {
namespace {

namespace fs = std::filesystem;

/// A fresh, empty folder under the test temp dir.
std::string freshDir(const std::string &name) {
  const fs::path dir =
      fs::path(::testing::TempDir()) / ("slak_cache_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir.string();
}

CacheKey keyOf(const std::string &text) { return CacheKeyBuilder().add("t", text).finish(); }

std::string readAll(const std::string &path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

void writeAll(const std::string &path, const std::string &bytes) {
  std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes;
}

/// Files in `dir` (recursively) whose name contains ".tmp.".
int temporaryFiles(const std::string &dir) {
  int count = 0;
  for (const auto &entry : fs::recursive_directory_iterator(dir))
    if (entry.path().filename().string().find(".tmp.") != std::string::npos)
      ++count;
  return count;
}

TEST(CacheKeyTest, PartsAreLengthPrefixedAndOrdered) {
  const CacheKey ab_c = CacheKeyBuilder().add("s", "ab").add("s", "c").finish();
  const CacheKey a_bc = CacheKeyBuilder().add("s", "a").add("s", "bc").finish();
  const CacheKey c_ab = CacheKeyBuilder().add("s", "c").add("s", "ab").finish();
  EXPECT_NE(ab_c, a_bc);
  EXPECT_NE(ab_c, c_ab);
  EXPECT_EQ(ab_c, CacheKeyBuilder().add("s", "ab").add("s", "c").finish());
  EXPECT_EQ(ab_c.hex().size(), 32u);
  EXPECT_NE(keyOf("x"), keyOf("y"));
  // One changed byte in a long source changes the key.
  std::string source(100000, 'a');
  const CacheKey before = keyOf(source);
  source[54321] = 'b';
  EXPECT_NE(before, keyOf(source));
}

TEST(CacheEntryTest, RoundTripsAndRejectsDamage) {
  const CacheKey key = keyOf("k");
  const std::string payload = "\x7f"
                              "ELF some binary\0with zeros";
  const std::string entry = encodeCacheEntry(key, payload);
  std::string why;
  ASSERT_EQ(decodeCacheEntry(entry, key, &why).value_or("<none>"), payload) << why;

  EXPECT_FALSE(decodeCacheEntry(entry, keyOf("other"), &why));
  EXPECT_NE(why.find("another key"), std::string::npos) << why;

  EXPECT_FALSE(decodeCacheEntry(entry.substr(0, entry.size() - 1), key, &why));
  EXPECT_NE(why.find("truncated"), std::string::npos) << why;
  EXPECT_FALSE(decodeCacheEntry(entry.substr(0, 20), key, &why));
  EXPECT_NE(why.find("truncated header"), std::string::npos) << why;

  std::string flipped = entry;
  flipped[entry.size() - 3] ^= 0x10;
  EXPECT_FALSE(decodeCacheEntry(flipped, key, &why));
  EXPECT_NE(why.find("payload checksum"), std::string::npos) << why;

  std::string badHeader = entry;
  badHeader[33] ^= 0x01; // payload length
  EXPECT_FALSE(decodeCacheEntry(badHeader, key, &why));
  EXPECT_NE(why.find("header checksum"), std::string::npos) << why;

  std::string badMagic = entry;
  badMagic[0] = 'X';
  EXPECT_FALSE(decodeCacheEntry(badMagic, key, &why));
  EXPECT_NE(why.find("magic"), std::string::npos) << why;
}

TEST(KernelCacheTest, MissThenMemoryHitThenDiskHit) {
  const std::string dir = freshDir("hits");
  int builds = 0;
  auto build = [&] {
    ++builds;
    return std::string("image-1");
  };
  KernelCache cache(dir);
  EXPECT_EQ(*cache.getOrBuild("cuda", keyOf("a"), build), "image-1");
  EXPECT_EQ(*cache.getOrBuild("cuda", keyOf("a"), build), "image-1");
  EXPECT_EQ(builds, 1);
  EXPECT_EQ(cache.stats().builds, 1);
  EXPECT_EQ(cache.stats().memoryHits, 1);
  EXPECT_TRUE(fs::exists(cache.entryPath("cuda", keyOf("a"))));

  // Another process (a new cache over the same folder) reads the file.
  KernelCache next(dir);
  EXPECT_EQ(*next.getOrBuild("cuda", keyOf("a"), build), "image-1");
  EXPECT_EQ(builds, 1);
  EXPECT_EQ(next.stats().diskHits, 1);
  // Kinds are separate namespaces.
  EXPECT_EQ(*next.getOrBuild("opencl", keyOf("a"), [] { return std::string("cl"); }), "cl");
  EXPECT_EQ(temporaryFiles(dir), 0);
}

TEST(KernelCacheTest, CorruptEntryIsRebuiltNeverLoaded) {
  const std::string dir = freshDir("corrupt");
  KernelCache(dir).getOrBuild("cuda", keyOf("a"), [] { return std::string(1000, 'g'); });
  const std::string path = KernelCache(dir).entryPath("cuda", keyOf("a"));
  std::string bytes = readAll(path);
  bytes[500] = 'X';
  writeAll(path, bytes);

  KernelCache cache(dir);
  int builds = 0;
  const auto image = cache.getOrBuild("cuda", keyOf("a"), [&] {
    ++builds;
    return std::string(1000, 'g');
  });
  EXPECT_EQ(*image, std::string(1000, 'g'));
  EXPECT_EQ(builds, 1);
  EXPECT_EQ(cache.stats().corrupt, 1);
  EXPECT_EQ(cache.stats().diskHits, 0);
  // The rebuilt entry replaced the corrupt one.
  EXPECT_TRUE(decodeCacheEntry(readAll(path), keyOf("a")).has_value());
}

TEST(KernelCacheTest, TruncatedAndForeignEntriesAreRebuilt) {
  const std::string dir = freshDir("truncated");
  KernelCache(dir).getOrBuild("cuda", keyOf("a"), [] { return std::string("abcdef"); });
  const std::string path = KernelCache(dir).entryPath("cuda", keyOf("a"));
  const std::string whole = readAll(path);
  for (size_t keep : {size_t(0), size_t(10), whole.size() - 1}) {
    writeAll(path, whole.substr(0, keep));
    KernelCache cache(dir);
    int builds = 0;
    EXPECT_EQ(*cache.getOrBuild("cuda", keyOf("a"),
                                [&] {
                                  ++builds;
                                  return std::string("abcdef");
                                }),
              "abcdef");
    EXPECT_EQ(builds, 1) << "kept " << keep << " bytes";
    EXPECT_EQ(cache.stats().corrupt, 1) << "kept " << keep << " bytes";
  }
  // A valid entry of another key under this key's name.
  writeAll(path, encodeCacheEntry(keyOf("b"), "other"));
  KernelCache cache(dir);
  EXPECT_EQ(*cache.getOrBuild("cuda", keyOf("a"), [] { return std::string("abcdef"); }), "abcdef");
  EXPECT_EQ(cache.stats().corrupt, 1);
}

TEST(KernelCacheTest, BuildFailureStoresNothing) {
  const std::string dir = freshDir("failure");
  KernelCache cache(dir);
  EXPECT_THROW(cache.getOrBuild("cuda", keyOf("a"),
                                []() -> std::string { throw std::runtime_error("nope"); }),
               std::runtime_error);
  EXPECT_FALSE(fs::exists(cache.entryPath("cuda", keyOf("a"))));
  EXPECT_EQ(*cache.getOrBuild("cuda", keyOf("a"), [] { return std::string("ok"); }), "ok");
}

TEST(KernelCacheTest, UnwritableFolderKeepsImagesInMemory) {
  KernelCache cache("/proc/slak-cannot-write-here");
  int builds = 0;
  auto build = [&] {
    ++builds;
    return std::string("x");
  };
  EXPECT_EQ(*cache.getOrBuild("cuda", keyOf("a"), build), "x");
  EXPECT_EQ(*cache.getOrBuild("cuda", keyOf("a"), build), "x");
  EXPECT_EQ(builds, 1);
  EXPECT_EQ(cache.stats().writeErrors, 1);
}

TEST(KernelCacheTest, ThreadsBuildingTheSameEntriesAgree) {
  const std::string dir = freshDir("threads");
  KernelCache cache(dir);
  std::atomic<int> wrong{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t)
    threads.emplace_back([&, t] {
      for (int i = 0; i < 50; ++i) {
        const std::string name = "entry" + std::to_string((i + t) % 10);
        KernelCache own(dir); // separate memory: every thread goes to disk
        const auto image =
            own.getOrBuild("cuda", keyOf(name), [&] { return std::string(4096, name.back()); });
        if (*image != std::string(4096, name.back()))
          ++wrong;
      }
    });
  for (std::thread &t : threads)
    t.join();
  EXPECT_EQ(wrong.load(), 0);
  EXPECT_EQ(temporaryFiles(dir), 0);
}

TEST(KernelCacheTest, TwoProcessesRacingNeverSeeAPartialEntry) {
  const std::string dir = freshDir("processes");
  // Large payloads make a torn write likely if writes were not atomic.
  auto payloadOf = [](int i) { return std::string(1 << 20, static_cast<char>('a' + i % 26)); };
  constexpr int kChildren = 4, kRounds = 30, kKeys = 3;
  std::vector<pid_t> children;
  for (int c = 0; c < kChildren; ++c) {
    const pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      int bad = 0;
      for (int r = 0; r < kRounds; ++r) {
        const int i = (r + c) % kKeys;
        KernelCache cache(dir);
        // Every other round rewrites the entry, so readers race with renames.
        if (r % 2 == 0)
          cache.store("cuda", keyOf("k" + std::to_string(i)), payloadOf(i));
        const auto image =
            cache.getOrBuild("cuda", keyOf("k" + std::to_string(i)), [&] { return payloadOf(i); });
        if (*image != payloadOf(i) || cache.stats().corrupt != 0)
          ++bad;
      }
      ::_exit(bad == 0 ? 0 : 1);
    }
    children.push_back(pid);
  }
  for (pid_t pid : children) {
    int status = 0;
    ASSERT_EQ(::waitpid(pid, &status, 0), pid);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0)
        << "a child read a wrong or corrupt entry (status " << status << ")";
  }
  KernelCache cache(dir);
  for (int i = 0; i < kKeys; ++i) {
    EXPECT_EQ(cache.load("cuda", keyOf("k" + std::to_string(i))).value_or(""), payloadOf(i));
  }
  EXPECT_EQ(cache.stats().corrupt, 0);
  EXPECT_EQ(temporaryFiles(dir), 0);
}

TEST(KernelCacheTest, DefaultDirectoryFollowsEnvironment) {
  const char *saved = std::getenv("SLAK_CACHE_DIR");
  const std::string keep = saved ? saved : "";
  ::setenv("SLAK_CACHE_DIR", "/some/where", 1);
  EXPECT_EQ(KernelCache::defaultDirectory(), "/some/where");
  ::unsetenv("SLAK_CACHE_DIR");
  if (const char *home = std::getenv("HOME")) {
    EXPECT_EQ(KernelCache::defaultDirectory(), std::string(home) + "/.cache/slak");
  }
  if (saved)
    ::setenv("SLAK_CACHE_DIR", keep.c_str(), 1);
}

} // namespace
} // namespace slak::runtime

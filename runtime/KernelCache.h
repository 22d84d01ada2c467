// KernelCache: compiled kernel images (CUDA cubin/PTX, OpenCL program
// binaries) kept in memory and on disk, so that a spec compiled once is never
// compiled again, in this process or the next. MLIR- and LibTorch-free.
//
// Keys are 128-bit hashes of everything the image depends on (source,
// compiler options, architecture, compiler and format versions), built with
// CacheKeyBuilder. On disk an entry is one file
//
//   <directory>/<kind>/<32 hex digits of the key>.bin
//
// holding a 64-byte header (magic "SLAKKC\0\1", format version, header size,
// the key, payload length, payload checksum, header checksum) and the payload.
// Entries are written to a unique temporary file in the same folder and
// renamed over the final name, so readers see a whole entry or none, and two
// processes building the same entry at once both succeed. An entry whose
// header, key, length or checksum does not match is reported, removed and
// rebuilt; it is never returned. Temporary files of writers that were killed
// mid-store are removed by the next process that uses the folder.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <string_view>

namespace slak::runtime {

/// Version of this runtime, part of every key (a new release never loads an
/// older release's images).
constexpr const char *kRuntimeVersion = "slak-runtime 0.1.0";

/// 64-bit FNV-1a of `bytes`, starting from `seed`.
uint64_t fnv1a64(std::string_view bytes, uint64_t seed = 0xcbf29ce484222325ull);

struct CacheKey {
  uint64_t high = 0, low = 0;
  std::string hex() const; // 32 lowercase hex digits
  bool operator==(const CacheKey &o) const { return high == o.high && low == o.low; }
  bool operator!=(const CacheKey &o) const { return !(*this == o); }
  bool operator<(const CacheKey &o) const { return high != o.high ? high < o.high : low < o.low; }
};

/// Hashes named parts in order; each part is length-prefixed, so
/// ("ab", "c") and ("a", "bc") give different keys.
class CacheKeyBuilder {
public:
  CacheKeyBuilder &add(std::string_view name, std::string_view value);
  CacheKeyBuilder &add(std::string_view name, int64_t value);
  CacheKey finish() const;

private:
  uint64_t a_ = 0x6a09e667f3bcc908ull, b_ = 0xbb67ae8584caa73bull;
};

/// The bytes of an entry file for `payload` under `key`.
std::string encodeCacheEntry(const CacheKey &key, std::string_view payload);
/// The payload of an entry file image, or nothing with the reason in `why`
/// (bad magic, other key, truncated, checksum mismatch, ...).
std::optional<std::string> decodeCacheEntry(std::string_view file, const CacheKey &key,
                                            std::string *why = nullptr);

struct KernelCacheStats {
  int64_t memoryHits = 0; // served from this process's memory
  int64_t diskHits = 0;   // read from a valid entry file
  int64_t builds = 0;     // built by the caller's function (a miss)
  int64_t corrupt = 0;    // invalid entry files found (and removed)
  int64_t writeErrors = 0;
};

class KernelCache {
public:
  /// `directory` empty: memory only.
  explicit KernelCache(std::string directory);

  /// The process-wide cache in $SLAK_CACHE_DIR, else ~/.cache/slak. When the
  /// folder cannot be created it logs why once and keeps images in memory.
  static KernelCache &global();
  /// $SLAK_CACHE_DIR, else $HOME/.cache/slak.
  static std::string defaultDirectory();

  const std::string &directory() const { return directory_; }
  std::string entryPath(std::string_view kind, const CacheKey &key) const;

  /// The image of `key`: from memory, else from a valid entry file, else
  /// from `build()`, which is then stored in memory and on disk. `kind`
  /// names the sub-folder ("cuda", "opencl"). Exceptions from `build`
  /// propagate and store nothing.
  std::shared_ptr<const std::string> getOrBuild(std::string_view kind, const CacheKey &key,
                                                const std::function<std::string()> &build);

  /// The verified payload of the entry file, if there is a valid one; an
  /// invalid file is counted as corrupt, logged and removed.
  std::optional<std::string> load(std::string_view kind, const CacheKey &key);
  /// Writes the entry atomically (unique temporary file + rename). I/O errors
  /// are logged and counted, not thrown: the cache is an optimisation.
  void store(std::string_view kind, const CacheKey &key, std::string_view payload);
  /// Forgets the entry in memory and on disk (an image the device rejected).
  void remove(std::string_view kind, const CacheKey &key);
  /// Forgets every image held in memory (the files stay).
  void clearMemory();

  KernelCacheStats stats() const;

private:
  /// Removes killed writers' temporary files from <directory>/<kind>, once
  /// per kind and process.
  void sweepOnce(std::string_view kind);

  std::string directory_;
  mutable std::mutex mutex_;
  std::set<std::string> swept_;
  std::map<std::pair<std::string, CacheKey>, std::shared_ptr<const std::string>> memory_;
  std::atomic<int64_t> memoryHits_{0}, diskHits_{0}, builds_{0}, corrupt_{0}, writeErrors_{0};
};

} // namespace slak::runtime

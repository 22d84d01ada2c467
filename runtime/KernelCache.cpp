#include "runtime/KernelCache.h"

#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <dirent.h>
#include <fcntl.h>
#include <fstream>
#include <functional>
#include <set>
#include <sstream>
#include <sys/stat.h>
#include <thread>
#include <unistd.h>

#include "runtime/Files.h"
#include "runtime/Log.h"

namespace slak::runtime {
namespace {

constexpr char kMagic[8] = {'S', 'L', 'A', 'K', 'K', 'C', '\0', '\1'};
constexpr uint32_t kFormatVersion = 1;
constexpr size_t kHeaderSize = 64;

uint64_t mix64(uint64_t x) { // splitmix64's finaliser
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ull;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebull;
  x ^= x >> 31;
  return x;
}

void putU32(std::string &out, size_t at, uint32_t v) {
  for (int i = 0; i < 4; ++i)
    out[at + i] = static_cast<char>((v >> (8 * i)) & 0xff);
}
void putU64(std::string &out, size_t at, uint64_t v) {
  for (int i = 0; i < 8; ++i)
    out[at + i] = static_cast<char>((v >> (8 * i)) & 0xff);
}
uint32_t getU32(std::string_view in, size_t at) {
  uint32_t v = 0;
  for (int i = 0; i < 4; ++i)
    v |= static_cast<uint32_t>(static_cast<unsigned char>(in[at + i])) << (8 * i);
  return v;
}
uint64_t getU64(std::string_view in, size_t at) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i)
    v |= static_cast<uint64_t>(static_cast<unsigned char>(in[at + i])) << (8 * i);
  return v;
}

/// A name no other thread or process uses for its temporary file.
std::string temporaryName(const std::string &path) {
  static std::atomic<uint64_t> counter{0};
  std::ostringstream os;
  os << path << ".tmp." << ::getpid() << "."
     << (std::hash<std::thread::id>()(std::this_thread::get_id()) & 0xffffff) << "."
     << counter.fetch_add(1);
  return os.str();
}

/// Temporary entry files of writers that died mid-store (a killed process):
/// those of a process that no longer exists, untouched for 10 s (a store
/// takes milliseconds; the age spares writers on other hosts sharing the
/// folder, whose pids mean nothing here), and any untouched for an hour.
/// Readers never see them: entries are only ever renamed into place.
int removeStaleTemporaries(const std::string &folder) {
  DIR *dir = ::opendir(folder.c_str());
  if (!dir)
    return 0;
  int removed = 0;
  const std::time_t now = std::time(nullptr);
  while (const dirent *e = ::readdir(dir)) {
    const std::string name = e->d_name;
    const size_t at = name.find(".bin.tmp.");
    if (at == std::string::npos)
      continue;
    const std::string path = folder + "/" + name;
    struct stat st;
    if (::lstat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode))
      continue;
    const double age = std::difftime(now, st.st_mtime);
    const long pid = std::strtol(name.c_str() + at + 9, nullptr, 10);
    const bool gone = pid > 0 && ::kill(static_cast<pid_t>(pid), 0) != 0 && errno == ESRCH;
    if ((gone && age > 10) || age > 3600)
      removed += ::unlink(path.c_str()) == 0;
  }
  ::closedir(dir);
  return removed;
}

bool writeAll(int fd, std::string_view bytes) {
  size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0) {
      if (errno == EINTR)
        continue;
      return false;
    }
    done += static_cast<size_t>(n);
  }
  return true;
}

} // namespace

uint64_t fnv1a64(std::string_view bytes, uint64_t seed) {
  uint64_t h = seed;
  for (unsigned char c : bytes) {
    h ^= c;
    h *= 0x100000001b3ull;
  }
  return h;
}

std::string CacheKey::hex() const {
  char text[33];
  std::snprintf(text, sizeof text, "%016llx%016llx", static_cast<unsigned long long>(high),
                static_cast<unsigned long long>(low));
  return text;
}

CacheKeyBuilder &CacheKeyBuilder::add(std::string_view name, std::string_view value) {
  auto feed = [this](std::string_view bytes) {
    char length[8];
    for (int i = 0; i < 8; ++i)
      length[i] = static_cast<char>((bytes.size() >> (8 * i)) & 0xff);
    for (std::string_view part : {std::string_view(length, 8), bytes}) {
      for (unsigned char c : part) {
        a_ = (a_ ^ c) * 0x100000001b3ull;
        b_ = (b_ ^ c) * 0x9e3779b97f4a7c15ull;
        b_ ^= b_ >> 29;
      }
    }
  };
  feed(name);
  feed(value);
  return *this;
}

CacheKeyBuilder &CacheKeyBuilder::add(std::string_view name, int64_t value) {
  return add(name, std::to_string(value));
}

CacheKey CacheKeyBuilder::finish() const {
  CacheKey key;
  key.high = mix64(a_ ^ ((b_ << 29) | (b_ >> 35)));
  key.low = mix64(b_ ^ key.high);
  return key;
}

std::string encodeCacheEntry(const CacheKey &key, std::string_view payload) {
  std::string out(kHeaderSize, '\0');
  std::memcpy(out.data(), kMagic, sizeof kMagic);
  putU32(out, 8, kFormatVersion);
  putU32(out, 12, static_cast<uint32_t>(kHeaderSize));
  putU64(out, 16, key.high);
  putU64(out, 24, key.low);
  putU64(out, 32, payload.size());
  putU64(out, 40, fnv1a64(payload));
  putU64(out, 48, fnv1a64(std::string_view(out.data(), 48)));
  out.append(payload);
  return out;
}

std::optional<std::string> decodeCacheEntry(std::string_view file, const CacheKey &key,
                                            std::string *why) {
  auto fail = [&](const std::string &reason) -> std::optional<std::string> {
    if (why)
      *why = reason;
    return std::nullopt;
  };
  if (file.size() < kHeaderSize)
    return fail("truncated header (" + std::to_string(file.size()) + " bytes, expected at least " +
                std::to_string(kHeaderSize) + ")");
  if (std::memcmp(file.data(), kMagic, sizeof kMagic) != 0)
    return fail("bad magic (not a slak kernel cache entry)");
  if (getU32(file, 8) != kFormatVersion)
    return fail("format version " + std::to_string(getU32(file, 8)) + ", expected " +
                std::to_string(kFormatVersion));
  if (getU32(file, 12) != kHeaderSize)
    return fail("header size " + std::to_string(getU32(file, 12)));
  if (getU64(file, 48) != fnv1a64(file.substr(0, 48)))
    return fail("header checksum mismatch");
  if (getU64(file, 16) != key.high || getU64(file, 24) != key.low)
    return fail("entry holds another key");
  const uint64_t length = getU64(file, 32);
  if (file.size() - kHeaderSize != length)
    return fail("payload is " + std::to_string(file.size() - kHeaderSize) +
                " bytes, the header says " + std::to_string(length) + " (truncated or extended)");
  std::string_view payload = file.substr(kHeaderSize);
  if (fnv1a64(payload) != getU64(file, 40))
    return fail("payload checksum mismatch");
  return std::string(payload);
}

KernelCache::KernelCache(std::string directory) : directory_(std::move(directory)) {}

std::string KernelCache::defaultDirectory() {
  if (const char *dir = std::getenv("SLAK_CACHE_DIR"); dir && *dir)
    return dir;
  if (const char *home = std::getenv("HOME"); home && *home)
    return std::string(home) + "/.cache/slak";
  return "/tmp/slak-cache-" + std::to_string(::getuid());
}

KernelCache &KernelCache::global() {
  static KernelCache *cache = [] {
    std::string dir = defaultDirectory();
    if (std::string err = makeDirectories(dir); !err.empty()) {
      logMessage("kernel cache: cannot create " + dir + " (" + err +
                 "); compiled kernels are kept in memory only. Set SLAK_CACHE_DIR to a "
                 "writable folder.");
      dir.clear();
    }
    return new KernelCache(dir);
  }();
  return *cache;
}

std::string KernelCache::entryPath(std::string_view kind, const CacheKey &key) const {
  return directory_ + "/" + std::string(kind) + "/" + key.hex() + ".bin";
}

void KernelCache::sweepOnce(std::string_view kind) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (!swept_.insert(std::string(kind)).second)
      return;
  }
  const std::string folder = directory_ + "/" + std::string(kind);
  if (const int n = removeStaleTemporaries(folder))
    logDebug("kernel cache: removed " + std::to_string(n) +
             " temporary file(s) of killed writers from " + folder);
}

std::optional<std::string> KernelCache::load(std::string_view kind, const CacheKey &key) {
  if (directory_.empty())
    return std::nullopt;
  sweepOnce(kind);
  const std::string path = entryPath(kind, key);
  std::ifstream in(path, std::ios::binary);
  if (!in)
    return std::nullopt;
  std::string file((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::string why;
  std::optional<std::string> payload = decodeCacheEntry(file, key, &why);
  if (!payload) {
    ++corrupt_;
    logMessage("kernel cache: ignoring and removing invalid entry " + path + ": " + why);
    removeFile(path);
  }
  return payload;
}

void KernelCache::store(std::string_view kind, const CacheKey &key, std::string_view payload) {
  if (directory_.empty())
    return;
  sweepOnce(kind);
  const std::string path = entryPath(kind, key);
  auto fail = [&](const std::string &what) {
    ++writeErrors_;
    logOnce("kernel-cache-write:" + directory_,
            "kernel cache: cannot write " + path + ": " + what + " (kept in memory only)");
  };
  if (std::string err = makeDirectories(parentDirectory(path)); !err.empty())
    return fail(err);
  const std::string tmp = temporaryName(path);
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0)
    return fail(std::strerror(errno));
  const bool ok = writeAll(fd, encodeCacheEntry(key, payload));
  const int savedErrno = errno;
  if (::close(fd) != 0 || !ok) {
    ::unlink(tmp.c_str());
    return fail(std::strerror(ok ? errno : savedErrno));
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    ::unlink(tmp.c_str());
    return fail(std::strerror(err));
  }
}

void KernelCache::remove(std::string_view kind, const CacheKey &key) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    memory_.erase({std::string(kind), key});
  }
  if (!directory_.empty())
    removeFile(entryPath(kind, key));
}

std::shared_ptr<const std::string>
KernelCache::getOrBuild(std::string_view kind, const CacheKey &key,
                        const std::function<std::string()> &build) {
  const auto memoryKey = std::make_pair(std::string(kind), key);
  {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = memory_.find(memoryKey);
    if (it != memory_.end()) {
      ++memoryHits_;
      return it->second;
    }
  }
  std::shared_ptr<const std::string> image;
  if (std::optional<std::string> payload = load(kind, key)) {
    ++diskHits_;
    image = std::make_shared<const std::string>(std::move(*payload));
  } else {
    ++builds_;
    image = std::make_shared<const std::string>(build());
    store(kind, key, *image);
  }
  std::lock_guard<std::mutex> lock(mutex_);
  return memory_.emplace(memoryKey, image).first->second;
}

void KernelCache::clearMemory() {
  std::lock_guard<std::mutex> lock(mutex_);
  memory_.clear();
}

KernelCacheStats KernelCache::stats() const {
  KernelCacheStats s;
  s.memoryHits = memoryHits_;
  s.diskHits = diskHits_;
  s.builds = builds_;
  s.corrupt = corrupt_;
  s.writeErrors = writeErrors_;
  return s;
}

} // namespace slak::runtime

#include "runtime/Log.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <set>

namespace slak::runtime {
namespace {

/// SLAK_LOG, with one warning for a value that is not a level (a typo such
/// as "verbose" would otherwise silently mean the default).
const char *logLevel() {
  const char *level = std::getenv("SLAK_LOG");
  static std::once_flag once;
  std::call_once(once, [level] {
    if (!level || !*level)
      return;
    for (const char *known : {"0", "1", "2", "debug"})
      if (std::strcmp(level, known) == 0)
        return;
    std::fprintf(stderr,
                 "[slak] warning: SLAK_LOG=%s is not a level: use 0 (quiet), 1 (the default) or "
                 "debug; logging as 1\n",
                 level);
  });
  return level;
}

} // namespace

void logMessage(const std::string &message) {
  const char *level = logLevel();
  if (level && std::strcmp(level, "0") == 0)
    return;
  std::fprintf(stderr, "[slak] %s\n", message.c_str());
}

bool debugLogging() {
  const char *level = logLevel();
  return level && (std::strcmp(level, "debug") == 0 || std::strcmp(level, "2") == 0);
}

void logDebug(const std::string &message) {
  if (debugLogging())
    std::fprintf(stderr, "[slak] debug: %s\n", message.c_str());
}

void logOnce(const std::string &key, const std::string &message) {
  static std::mutex mutex;
  static std::set<std::string> seen;
  {
    std::lock_guard<std::mutex> lock(mutex);
    if (!seen.insert(key).second)
      return;
  }
  logMessage(message);
}

} // namespace slak::runtime

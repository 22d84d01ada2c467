#include "runtime/Log.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <set>

namespace slak::runtime {

void logMessage(const std::string &message) {
  const char *level = std::getenv("SLAK_LOG");
  if (level && std::strcmp(level, "0") == 0)
    return;
  std::fprintf(stderr, "[slak] %s\n", message.c_str());
}

bool debugLogging() {
  const char *level = std::getenv("SLAK_LOG");
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

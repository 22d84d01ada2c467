#include "runtime/Files.h"

#include <cerrno>
#include <cstring>
#include <ftw.h>
#include <sys/stat.h>
#include <unistd.h>

namespace slak::runtime {

std::string makeDirectories(const std::string &path) {
  if (path.empty())
    return "empty path";
  std::string prefix;
  size_t pos = 0;
  while (pos != std::string::npos) {
    pos = path.find('/', pos + 1);
    prefix = path.substr(0, pos);
    if (prefix.empty() || prefix == "/")
      continue;
    if (::mkdir(prefix.c_str(), 0755) != 0 && errno != EEXIST)
      return "mkdir " + prefix + ": " + std::strerror(errno);
  }
  struct stat st;
  if (::stat(path.c_str(), &st) != 0 || !S_ISDIR(st.st_mode))
    return path + " is not a folder";
  return {};
}

bool fileExists(const std::string &path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0;
}

void removeFile(const std::string &path) { ::unlink(path.c_str()); }

void removeTree(const std::string &path) {
  if (!fileExists(path))
    return;
  ::nftw(
      path.c_str(),
      [](const char *name, const struct stat *, int, struct FTW *) { return ::remove(name); }, 16,
      FTW_DEPTH | FTW_PHYS);
}

std::string parentDirectory(const std::string &path) {
  const size_t slash = path.find_last_of('/');
  if (slash == std::string::npos)
    return ".";
  return slash == 0 ? "/" : path.substr(0, slash);
}

std::string joinPath(const std::string &a, const std::string &b) {
  if (a.empty())
    return b;
  return a.back() == '/' ? a + b : a + "/" + b;
}

} // namespace slak::runtime

#include "models/train/OutputDirectoryLock.h"

#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <string>

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

namespace slak::train {
namespace {

/// mkdir -p; "" on success, else the reason.
std::string makeDirectories(const std::string &dir) {
  for (size_t slash = dir.find('/', 1);; slash = dir.find('/', slash + 1)) {
    const std::string prefix = dir.substr(0, slash);
    if (!prefix.empty() && ::mkdir(prefix.c_str(), 0755) != 0 && errno != EEXIST)
      return "cannot create " + prefix + ": " + std::strerror(errno);
    if (slash == std::string::npos)
      return {};
  }
}

std::string hostName() {
  char name[256] = {0};
  return ::gethostname(name, sizeof name - 1) == 0 ? name : "?";
}

/// "pid 1234 on host h" from the lock file's content, or "" while the
/// holder has not written it yet.
std::string describeHolder(int fd) {
  char text[512] = {0};
  const ssize_t n = ::pread(fd, text, sizeof text - 1, 0);
  if (n <= 0)
    return {};
  std::string s(text, static_cast<size_t>(n));
  std::string pid, host;
  for (size_t at = 0; at < s.size();) {
    size_t end = s.find('\n', at);
    if (end == std::string::npos)
      end = s.size();
    const std::string line = s.substr(at, end - at);
    if (line.rfind("pid ", 0) == 0)
      pid = line.substr(4);
    else if (line.rfind("host ", 0) == 0)
      host = line.substr(5);
    at = end + 1;
  }
  if (pid.empty())
    return {};
  return "pid " + pid + (host.empty() || host == hostName() ? "" : " on host " + host);
}

} // namespace

OutputDirectoryLock::OutputDirectoryLock(const std::string &dir) {
  const std::string folder = dir.empty() ? "." : dir;
  if (std::string err = makeDirectories(folder); !err.empty())
    throw std::runtime_error("output directory " + folder + ": " + err +
                             "; pass a writable --out-dir");
  path_ = folder + "/" + kFileName;
  // O_CLOEXEC: a child process must not inherit (and so keep) the lock.
  fd_ = ::open(path_.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd_ < 0)
    throw std::runtime_error("cannot open the lock file " + path_ + ": " + std::strerror(errno) +
                             "; pass a writable --out-dir");
  while (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
    if (errno == EINTR)
      continue;
    const int err = errno;
    std::string holder = err == EWOULDBLOCK ? describeHolder(fd_) : std::string();
    ::close(fd_);
    fd_ = -1;
    if (err != EWOULDBLOCK)
      throw std::runtime_error("cannot lock " + path_ + ": " + std::strerror(err));
    throw std::runtime_error("output directory " + folder + " is in use by another slak-train (" +
                             (holder.empty() ? std::string("pid not yet recorded") : holder) +
                             ", lock " + path_ +
                             "): wait for it to finish or stop it, or pass another --out-dir");
  }
  // The holder's identity, for the message of a trainer refused above.
  const std::string text = "pid " + std::to_string(::getpid()) + "\nhost " + hostName() + "\n";
  if (::ftruncate(fd_, 0) == 0) {
    ssize_t written = ::pwrite(fd_, text.data(), text.size(), 0);
    (void)written; // the lock holds without it; only the message would be vaguer
  }
}

OutputDirectoryLock::~OutputDirectoryLock() {
  if (fd_ >= 0)
    ::close(fd_); // releases the flock
}

} // namespace slak::train

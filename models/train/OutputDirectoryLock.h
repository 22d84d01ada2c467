// OutputDirectoryLock: one slak-train per output directory. Two trainers
// writing the same checkpoint.pt.tmp and log.jsonl would interleave their
// files; the second one is refused instead, with one line naming the
// directory and the process that holds it.
//
// The lock is flock(LOCK_EX | LOCK_NB) on <dir>/slak-train.lock, which holds
// the holder's pid and host for the message. The kernel drops a flock when its
// process dies, so a lock file left by a killed trainer never blocks the next
// one; the file itself stays (unlinking it on exit would let two later
// trainers lock two different files of the same name).
#pragma once

#include <string>

namespace slak::train {

class OutputDirectoryLock {
public:
  static constexpr const char *kFileName = "slak-train.lock";

  /// Creates `dir` if missing and locks it. Throws std::runtime_error naming
  /// the directory, the other process and the fix when another process holds
  /// it, or naming the lock file and errno when it cannot be opened.
  explicit OutputDirectoryLock(const std::string &dir);
  ~OutputDirectoryLock();
  OutputDirectoryLock(const OutputDirectoryLock &) = delete;
  OutputDirectoryLock &operator=(const OutputDirectoryLock &) = delete;

  const std::string &path() const { return path_; }

private:
  std::string path_;
  int fd_ = -1;
};

} // namespace slak::train

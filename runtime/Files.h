// Files: the few file-system operations the runtime needs, on POSIX calls.
// Not std::filesystem: the torch wheel's libtorch.so exports its own copies
// of std::filesystem functions, which the dynamic linker prefers in any
// process that loads LibTorch, and some of them crash (remove_all).
#pragma once

#include <string>

namespace slak::runtime {

/// Creates `path` and its missing parents (mode 0755). Returns "" on
/// success, else the reason.
std::string makeDirectories(const std::string &path);
bool fileExists(const std::string &path);
/// Removes a file; missing files are fine.
void removeFile(const std::string &path);
/// Removes a folder and everything in it (tests, temporary folders).
void removeTree(const std::string &path);
/// "a/b/c" -> "a/b"; "c" -> ".".
std::string parentDirectory(const std::string &path);
/// "a" + "b" -> "a/b".
std::string joinPath(const std::string &a, const std::string &b);

} // namespace slak::runtime

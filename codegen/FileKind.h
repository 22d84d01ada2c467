// FileKind: what a file is, from its first bytes, so that an input of the
// wrong kind is refused as "x.pt is a PNG image, not a checkpoint" rather
// than with a parser's complaint about byte 0. Header-only and free of MLIR,
// LibTorch and exceptions: the checkpoint, data set and IR readers of every
// layer use it (codegen is the layer all of them may include).
#pragma once

#include <cstring>
#include <fstream>
#include <string>

#include <sys/stat.h>

namespace slak::codegen {

/// "a PNG image", "a zip archive (e.g. a PyTorch checkpoint)", "an SQLite
/// database (e.g. a tuning database)", "MLIR text", "a folder", ...; "" when
/// the file does not exist or its kind is not one of these.
inline std::string describeFileKind(const std::string &path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0)
    return "";
  if (S_ISDIR(st.st_mode)) {
    struct stat manifest;
    if (::stat((path + "/manifest.json").c_str(), &manifest) == 0)
      return "a folder (a kernel package?)";
    return "a folder";
  }
  if (!S_ISREG(st.st_mode))
    return "not a regular file";
  if (st.st_size == 0)
    return "an empty file";
  char head[4096] = {};
  std::ifstream in(path, std::ios::binary);
  in.read(head, sizeof head);
  const size_t n = static_cast<size_t>(in.gcount());
  auto starts = [&](const char *magic, size_t size) {
    return n >= size && std::memcmp(head, magic, size) == 0;
  };
  if (starts("\x89PNG\r\n\x1a\n", 8))
    return "a PNG image";
  if (starts("\xff\xd8\xff", 3))
    return "a JPEG image";
  if (starts("PK\x03\x04", 4) || starts("PK\x05\x06", 4))
    return "a zip archive (e.g. a PyTorch checkpoint)";
  if (starts("\x1f\x8b", 2))
    return "a gzip file";
  if (starts("SQLite format 3", 16))
    return "an SQLite database (e.g. a tuning database)";
  if (starts("ML\xefR", 4))
    return "MLIR bytecode";
  if (starts("\x7f"
             "ELF",
             4))
    return "an ELF binary";
  if (starts("\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19", 14))
    return "a legacy torch.save file (PyTorch < 1.6)";
  if (n >= 2 && static_cast<unsigned char>(head[0]) == 0x80 &&
      static_cast<unsigned char>(head[1]) <= 5)
    return "a Python pickle";
  if (starts("\0\0\x08", 3))
    return "an IDX data file (uncompressed, e.g. Fashion-MNIST)";
  for (size_t i = 0; i < n; ++i)
    if (head[i] == '\0')
      return "";
  const std::string text(head, n);
  const size_t first = text.find_first_not_of(" \t\r\n");
  if (first != std::string::npos && (text[first] == '{' || text[first] == '['))
    return "JSON text";
  if (text.find("func.func") != std::string::npos || text.find("module {") != std::string::npos ||
      text.find("module attributes") != std::string::npos ||
      text.find("slak.") != std::string::npos)
    return "MLIR text";
  return "a text file";
}

/// For the tools that read MLIR: "" when `path` may hold MLIR (text,
/// bytecode, stdin "-", a kind this cannot tell), else "PATH is KIND, not an
/// MLIR module ...".
inline std::string notMlirInput(const std::string &path) {
  if (path == "-")
    return "";
  const std::string kind = describeFileKind(path);
  if (kind.empty() || kind == "MLIR text" || kind == "MLIR bytecode" || kind == "a text file" ||
      kind == "an empty file")
    return "";
  return path + " is " + kind +
         ", not an MLIR module (text, or bytecode from slak-export --bytecode): pass the .mlir "
         "file that slak-export or slak-opt wrote";
}

} // namespace slak::codegen

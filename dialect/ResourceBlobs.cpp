#include "dialect/ResourceBlobs.h"

namespace mlir::slak {

std::optional<ResourceBlobProblem> zeroAlignedResourceBlob(llvm::StringRef text) {
  const size_t metadata = text.find("{-#");
  if (metadata == llvm::StringRef::npos)
    return std::nullopt;
  // Blobs are `key: "0x<alignment, 8 hex digits little-endian><data>"`.
  for (size_t at = text.find("\"0x", metadata); at != llvm::StringRef::npos;
       at = text.find("\"0x", at + 3)) {
    if (text.substr(at + 3, 8) != "00000000")
      continue;
    llvm::StringRef key = text.slice(metadata, at).rtrim();
    if (key.ends_with(":"))
      key = key.drop_back().rtrim();
    key = key.substr(key.find_last_of(" \t\r\n{,") + 1).trim('"');
    const llvm::StringRef before = text.take_front(at);
    ResourceBlobProblem problem;
    problem.line = static_cast<unsigned>(before.count('\n')) + 1;
    const size_t lineStart = before.find_last_of('\n');
    problem.column =
        static_cast<unsigned>(lineStart == llvm::StringRef::npos ? at + 1 : at - lineStart);
    problem.message =
        "resource blob '" + key.str() +
        "' has alignment 0 (its first 4 bytes): they hold the data's alignment in bytes, "
        "little-endian, e.g. \"0x04000000...\" for f32 or i32 data and \"0x01000000...\" for i1 "
        "or i8 (MLIR 22's parser aborts on 0, llvm/llvm-project#181266)";
    return problem;
  }
  return std::nullopt;
}

} // namespace mlir::slak

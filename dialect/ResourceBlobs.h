// A guard for a crash in MLIR 22's parser: a dense_resource blob whose
// first 4 bytes (the data's alignment) are 0 makes it allocate with
// alignment 0 and abort the process with "LLVM ERROR: out of memory"
// (llvm/llvm-project#181266, found by slak-fuzz-ir). The tools check the
// text of a module with zeroAlignedResourceBlob before they parse it.
#pragma once

#include "llvm/ADT/StringRef.h"

#include <optional>
#include <string>

namespace mlir::slak {

struct ResourceBlobProblem {
  unsigned line = 0, column = 0; // 1-based, of the blob's string
  std::string message;           // names the blob, the value and the fix
};

/// The first hex blob of the file metadata (`{-# dialect_resources: ... #-}`)
/// of `text` whose alignment word is 0, if there is one.
std::optional<ResourceBlobProblem> zeroAlignedResourceBlob(llvm::StringRef text);

} // namespace mlir::slak

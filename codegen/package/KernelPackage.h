// Kernel packages: what `slak-translate --emit-kernel-package` writes and the
// runtime loads (the AOT path of DESIGN section 2). A package is a folder:
//
//   manifest.json   the ops, their specs, schedules, entry points, launch
//                   geometry and where their data lives (format in README)
//   kernels.cu      CUDA C++ for every op (one prelude, each body once)
//   kernels.cl      the same kernels as OpenCL C 1.2
//   data.bin        little-endian blobs: tap tables (int32) and, where the
//                   op's weights are constants, weights and bias (float32)
//
// The writer fills a staging folder next to the package (<dir>.tmp-<pid>-<n>),
// manifest last, and puts it in place with one rename (an exchange with an
// older package), so a killed or failed writer never leaves a half-written
// or mixed package at <dir>. The manifest records each file's size and
// checksum; the reader refuses a package whose files do not match.
#pragma once

#include "codegen/KernelEmitter.h"
#include "codegen/KernelSpec.h"
#include "codegen/TapTable.h"

#include <optional>
#include <string>
#include <vector>

namespace slak::codegen {

constexpr int kKernelPackageVersion = 1;

/// One fused layer in a package.
struct PackagedOp {
  std::string name;           // the model's layer path, or "lk_conv_<i>"
  std::string scheduleOrigin; // "default", "model" or "measured"
  EmittedKernels kernels;     // kernels.spec is the op's KernelSpec
  std::optional<TapTable> table;
  std::vector<std::vector<float>> weights; // per branch, empty when not constant
  std::vector<float> bias;
};

/// Writes the package into `dir` (created if missing; an existing package
/// there is replaced whole). Throws std::runtime_error naming the file and
/// the reason on I/O errors, and refuses a `dir` holding other files; throws
/// std::invalid_argument for an op name that is not UTF-8 text.
void writeKernelPackage(const std::string &dir, const std::vector<PackagedOp> &ops,
                        const std::string &generator);

/// A package as read back from its folder (the runtime's AOT path).
struct KernelPackage {
  std::string directory;
  std::string generator;
  int version = 0;
  std::string cudaSource;   // kernels.cu ("" when the file is absent)
  std::string openclSource; // kernels.cl ("" when the file is absent)
  /// In manifest order. kernels.body is empty (the code is in the sources
  /// above); kernels.spec, names, threads and sharedBytes are as written.
  std::vector<PackagedOp> ops;

  /// The op called `name`, or nullptr.
  const PackagedOp *find(const std::string &name) const;
};

/// Reads and checks a package written by writeKernelPackage: the manifest's
/// format and version, every spec (KernelSpec::validate, and the recorded
/// signature where the schedule is complete), entry points present in the
/// sources, data.bin ranges, tap table / weight / bias sizes against the
/// spec, and the files' sizes and checksums where the manifest records them.
/// Throws std::runtime_error naming the file, the op and the problem.
KernelPackage readKernelPackage(const std::string &dir);

} // namespace slak::codegen

// ModelFile: slak-autotune's view of an MLIR model, behind a header without
// MLIR. The implementation (ModelFile.cpp) is an MLIR target built like
// every other one (-fno-exceptions): errors come back as messages, never as
// exceptions. The tool's main, which uses the exception-throwing autotuner,
// only sees this header.
//
//   load -> (prepare: fuse + specialise when dwconv2d / batch_norm remain)
//        -> layers (one KernelSpec + workload per slak.lk_conv)
//        -> [tune and record in the database]
//        -> applySchedules (the --slak-apply-schedules pass; GPUs) -> write
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "autotune/Workload.h"
#include "codegen/KernelSpec.h"

namespace slak::autotune {

/// One slak.lk_conv of the module, as the tuner needs it.
struct ModelLayer {
  std::string name; // the op's NameLoc (the model's layer path) or lk_conv_<i>
  codegen::KernelSpec spec;
  Workload workload;       // the op's batch, size and sparse density
  bool perBranch = false;  // per-branch outputs (train-mode fusion)
  std::string description; // "C=124 56x56 51x5+5x51 density=0.63 N=8"
};

class ModelFile {
public:
  /// Parses `path` ("-": stdin). Null with `*error` set when it cannot be
  /// read or parsed (the message carries MLIR's diagnostics).
  static std::unique_ptr<ModelFile> load(const std::string &path, std::string *error);
  ~ModelFile();

  /// slak.dwconv2d and slak.batch_norm ops still in the module: they need
  /// fusing before anything can be tuned.
  int unfusedOps() const;
  int lkConvOps() const;
  /// The slak pipeline without schedules: fuse (mode "train" or "infer"),
  /// canonicalise, specialise sparsity.
  bool prepare(const std::string &mode, std::string *error);
  /// One entry per slak.lk_conv, in module order. False (with `*error`)
  /// when an op cannot be converted to a KernelSpec.
  bool layers(std::vector<ModelLayer> &out, std::string *error);
  /// Runs --slak-apply-schedules="device=<device> db=<dbPath>" for a named
  /// GPU: attaches #slak.schedule.
  bool applySchedules(const std::string &device, const std::string &dbPath, std::string *error);
  /// "<origin> <schedule>" of each op's attached schedule, in module order
  /// (for the tool's summary).
  std::vector<std::string> attachedSchedules() const;
  /// Writes the module to `path` atomically (a temporary file next to it,
  /// renamed over it once complete); "-" writes stdout.
  bool write(const std::string &path, std::string *error) const;

private:
  ModelFile();
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

} // namespace slak::autotune

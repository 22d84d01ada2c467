// Deploy: serves a model's large-kernel layers from a kernel package (the
// AOT path of DESIGN.md section 2: slak-export -> slak-opt
// --slak-pipeline=mode=infer -> slak-translate --emit-kernel-package).
//
// Each layer finds the packaged op named after its module path. Before
// anything is served, every op is checked against the layer as it is now
// (weights, masks and BatchNorm statistics after folding): channels, input
// size, element type, that each packaged branch window lies inside a branch
// of the layer, the live taps against the layer's masks, and the folded
// weights and bias against the layer's. A package built for other masks,
// shapes or weights is refused with an error naming the layer, what differs
// and the fix (re-export, rebuild); nothing is attached then. Afterwards the
// layers' eval-mode forward runs the packaged kernels instead of the JIT;
// training still runs the layers themselves (and makes the package stale).
#pragma once

#include "models/Models.h"
#include "models/deploy/ExportedLayer.h"

#include <string>
#include <vector>

namespace slak::codegen {
struct PackagedOp;
}

namespace slak::models {

struct DeployOptions {
  /// The package's backend: "auto" (CUDA tensors: cuda; CPU tensors: OpenCL
  /// where there is a device, else the CPU backend), "opencl", "cpu",
  /// "reference" or "cuda".
  std::string backend = "auto";
  /// Image side the layers' input sizes are taken at (<= 0: the model's).
  int64_t imageSize = 0;
  /// Largest accepted difference of a folded weight or bias, relative to the
  /// layer's largest folded weight magnitude (the package holds float32).
  double tolerance = 1e-5;
};

struct DeployReport {
  std::string package;
  std::vector<std::string> layers; // served layer paths, in module order
};

/// Checks `op` against `layer`; returns "" when the op computes the layer
/// exactly, else the reason (naming the layer, what differs and the fix).
std::string checkPackagedOp(const codegen::PackagedOp &op, const ExportedLayer &layer,
                            double tolerance = 1e-5);

/// Loads the package in `dir`, checks it against every large-kernel layer of
/// `model` and serves them from it in eval mode. Throws std::runtime_error
/// when the package does not fit (nothing is attached then).
DeployReport attachKernelPackage(Classifier &model, const std::string &dir,
                                 const DeployOptions &options = {});

/// Serves every large-kernel layer from its own kernels again.
void detachKernelPackage(Classifier &model);

} // namespace slak::models

// ExportModule: the MLIR half of slak-export. Turns plain ExportedLayers
// (models/deploy/ExportedLayer.h) into one module of slak ops and back
// through the reference oracle. The interface has no MLIR or LibTorch types,
// so the LibTorch side (the tool's main, tests) calls it without including
// either; the library itself builds with -fno-exceptions.
//
// Per layer: `func.func @"<layer path>"(%x: tensor<?xCxHxWxf32>)` with, per
// branch, an `arith.constant` weight (and mask) as `dense_resource` blobs, a
// `slak.dwconv2d` (with its mask), a `slak.batch_norm` with the running
// statistics and epsilon, and an `arith.addf` chain summing the branches.
// Every op carries `loc("<layer path>")`, which the passes keep, so that
// `slak-translate --emit-kernel-package` names the packaged op after the
// layer. The batch size is dynamic (`?`); H and W are the layer's input
// size at the model's nominal image size.
#pragma once

#include "models/deploy/ExportedLayer.h"

#include <cstdint>
#include <string>
#include <vector>

namespace slak::exporter {

/// The module as MLIR text (`elideResourcesLargerThan` > 0 elides blobs of
/// more bytes, for reading). Returns "" and fills `text`, or the error.
std::string exportModuleText(const std::vector<models::ExportedLayer> &layers, std::string &text,
                             int64_t elideResourcesLargerThan = 0);

/// Writes the module to `path` (MLIR text, or bytecode with `bytecode`)
/// through `path`.tmp and a rename, so readers never see half a file.
/// Returns "" or the error (naming the layer or the file).
std::string writeExportModule(const std::vector<models::ExportedLayer> &layers,
                              const std::string &path, bool bytecode);

/// Parses the module in `path` (text or bytecode), runs the function of layer
/// `layer` through the reference oracle (passes/ReferenceInterpreter) on
/// `input` of `shape` [N, C, H, W] and fills `output` (same shape).
/// Returns "" or the error.
std::string runExportedLayer(const std::string &path, const std::string &layer,
                             const std::vector<int64_t> &shape, const std::vector<float> &input,
                             std::vector<double> &output);

} // namespace slak::exporter

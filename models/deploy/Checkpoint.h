// Checkpoint: loads either kind of checkpoint into a model built from the
// same registry entry and overrides, for evaluation, export and deployment:
// a slak-train checkpoint (its format is models/checkpoint/TrainingCheckpoint.h)
// or an official SLaK checkpoint (torch.save files of the official code; see
// OfficialCheckpoint.h: official names mapped to ours, masks rebuilt from the
// exact zeros). Every tensor is checked by name and shape before it is used
// (models/checkpoint/WeightReader.h), so a checkpoint of another model or
// backend is refused, never half-loaded.
#pragma once

#include "models/Models.h"

#include <map>
#include <string>

namespace slak::models {

struct LoadedCheckpoint {
  /// Masks by full parameter name (masked layers only; empty when dense).
  std::map<std::string, torch::Tensor> masks;
  /// The model configuration the checkpoint records (JSON text).
  std::string config;
  int64_t step = 0;
  bool ema = false; // the weights came from ema/ (official: model_ema)
  /// Where the weights came from, for the tools to print; set for official
  /// checkpoints ("official SLaK checkpoint FILE (epoch E)"), else empty.
  std::string source;
};

/// Loads `path` into `model` (its ema/ weights with `ema`), hands the masks
/// to the large-kernel layers (pushMasksToLargeKernels) and zeroes masked
/// weights. Throws std::runtime_error naming the file, the tensor and the fix
/// (same --model and overrides, same --lk-backend, --ema only with an EMA).
/// An official SLaK checkpoint loads into either large-kernel backend; its
/// masks are `w != 0` of every rank-2/4 weight with an exact zero, and a
/// mismatch names the first differing tensor and the model flags that fit
/// the file (e.g. --kernel-sizes 31,29,27,13).
LoadedCheckpoint loadCheckpoint(const std::string &path, Classifier &model, bool ema = false);

/// The model configuration (JSON text of meta/config) a checkpoint was
/// written for; for an official SLaK checkpoint, the one its shapes describe.
/// Throws std::runtime_error for a missing or unreadable file or one without
/// meta/config.
std::string checkpointConfig(const std::string &path);

/// A model of `config` for the tools: the checkpoint's weights and masks,
/// or (empty `checkpoint`) random weights from `seed` and, when the config is
/// sparse, uniform random masks from `seed`, the same on every call.
struct SourcedModel {
  std::shared_ptr<Classifier> model;
  std::string source; // "CKPT, step S" or "random weights (seed S)..."
};
SourcedModel loadModel(const ModelConfig &config, const std::string &checkpoint, bool ema,
                       uint64_t seed);

} // namespace slak::models

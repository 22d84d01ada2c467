// CheckpointModel: rebuilds the model a slak-train checkpoint was written for
// (its meta/config) and loads its weights (model/ or the EMA's ema/) and its
// masks (masks/, handed to the large-kernel layers). Read-only: the
// checkpoint format is models/checkpoint/TrainingCheckpoint.h.
#pragma once

#include "models/Models.h"

#include <memory>
#include <string>

namespace slak::analysis {

/// The registry model `model` (empty: the checkpoint's name) with `overrides`;
/// every field the overrides leave unset (kernel sizes, small kernel,
/// decomposed, branch BN, width factor, classes, input channels, sparsity)
/// is taken from the checkpoint. Throws std::runtime_error for a missing or
/// unreadable checkpoint, or one whose model the overrides contradict (naming
/// both configurations).
models::ModelConfig checkpointModelConfig(const std::string &path, const std::string &model,
                                          const models::ModelOverrides &overrides);

/// Builds `config` and loads the checkpoint's weights (the EMA's with `ema`)
/// and masks. With config.backend == Auto and parameter names of the other
/// large-kernel backend in the file, retries with that backend. Throws
/// std::runtime_error naming the path and the fix.
std::shared_ptr<models::Classifier> loadCheckpointModel(const std::string &path,
                                                        models::ModelConfig config, bool ema);

} // namespace slak::analysis

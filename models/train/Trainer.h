// Trainer: the training loop behind slak-train. AdamW (no weight decay on
// norms, biases and layer scales), cosine learning rate with linear warmup,
// label smoothing, drop path (in the model), masked EMA of the weights,
// gradient accumulation, SLaK's dynamic sparsity (models/sparse), a progress
// bar on stderr, a JSONL log and atomic checkpoints that resume bit-exactly.
//
// Rank 0 locks the output directories (OutputDirectoryLock) while it trains.
// Checkpoints (models/checkpoint/TrainingCheckpoint.h) hold the model, the
// EMA (models/train/Ema.h), the optimizer state, the masks, the generator
// states and the epoch's partial sums; --resume checks that the model
// configuration and the number of ranks are the run's and continues it
// bit-exactly.
//
// Several ranks (options.distributed, models/train/Distributed.h) train one
// model data-parallel: every rank takes a disjoint shard of each epoch's
// shuffled order (the same permutation everywhere; global batch = batchSize x
// ranks), gradients are averaged in one flat allreduce before each optimizer
// step, BatchNorm normalises with each rank's own batch statistics (as DDP
// without SyncBatchNorm; running statistics are rank 0's), masks stay
// identical on every rank (updated from the averaged gradients with the same
// seeded generator, checked by a checksum allreduce after every update) and
// metrics and the sharded test evaluation are global. Only rank 0 prints,
// logs and writes checkpoints; each rank's CPU generator state (drop path) is
// gathered into the checkpoint so --resume continues exactly.
#pragma once

#include "models/Models.h"
#include "models/data/Datasets.h"
#include "models/sparse/Masking.h"
#include "models/train/Distributed.h"

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace slak::train {

struct TrainOptions {
  // Model.
  std::string model = "slak_nano";
  models::ModelOverrides overrides;
  // Data: "fashion-mnist" or "synthetic".
  std::string dataset = "fashion-mnist";
  std::string dataDir = data::kFashionMnistDir;
  data::SyntheticOptions synthetic; // train split; size = training images
  int64_t syntheticTestSize = 256;  // test split of the synthetic data
  int64_t trainLimit = 0;           // first N training images only (0 = all)
  int64_t testLimit = 0;            // first N test images only (0 = all)
  // Optimisation.
  int64_t epochs = 3;
  int64_t batchSize = 128;
  int64_t accumSteps = 1; // micro-batches per optimizer step
  double lr = 2e-3;
  double minLr = 1e-6;
  double warmupEpochs = 0.0;
  int64_t warmupSteps = -1; // overrides warmupEpochs when >= 0
  double weightDecay = 0.05;
  double labelSmoothing = 0.1;
  double emaDecay = 0.0; // 0 = no EMA
  // Sparsity (its `sparsity` comes from the model config; 0 = dense).
  sparse::Options sparse;
  // Run.
  std::string outDir = "runs/slak-train";
  std::string logPath;         // default <outDir>/log.jsonl
  std::string checkpointPath;  // default <outDir>/checkpoint.pt
  std::string resume;          // checkpoint to continue from
  int64_t maxSteps = -1;       // stop (with a checkpoint) at this optimizer step
  int64_t checkpointEvery = 0; // also every N steps (0: epoch ends and stops only)
  int64_t evalBatchSize = 256;
  bool evalEachEpoch = true;
  uint64_t seed = 0;
  int threads = 0; // 0 = LibTorch's default
  std::string device = "cpu";
  bool progress = true;
  // Multi-process data parallel (worldSize 1 = one process).
  DistributedOptions distributed;
  bool checkpointAllRanks = false; // ranks > 0 also write <checkpoint>.rank<r>
};

struct TrainResult {
  int64_t steps = 0;
  int64_t epochsCompleted = 0; // by the run, before a --resume too
  bool stoppedEarly = false;   // maxSteps reached before the last epoch
  double trainLoss = 0, trainAccuracy = 0;
  double testLoss = 0, testAccuracy = -1, testAccuracyEma = -1;
  double imagesPerSecond = 0; // training images / training seconds, last epoch
  double trainSeconds = 0;    // all epochs of this process
  double density = 1.0;       // live fraction of the maskable weights
  int rank = 0, worldSize = 1;
};

struct Evaluation {
  double loss = 0;
  double accuracy = 0;
};
/// Mean cross-entropy (no smoothing) and top-1 accuracy over `d`. With a
/// process group of several ranks each rank evaluates its contiguous shard
/// and the sums are allreduced: every rank returns the global figures.
Evaluation evaluate(models::Classifier &model, const data::Dataset &d, int64_t batchSize,
                    const std::string &device = "cpu", ProcessGroup *group = nullptr);

class Trainer {
public:
  explicit Trainer(TrainOptions options);
  ~Trainer();
  Trainer(const Trainer &) = delete;
  Trainer &operator=(const Trainer &) = delete;

  /// Trains from the current state (fresh, or the resumed checkpoint) to the
  /// last epoch or maxSteps; writes the log and checkpoints.
  TrainResult run();

  models::Classifier &model();
  /// Null without EMA.
  models::Classifier *ema();
  /// Null for a dense run.
  sparse::Masking *masking();
  int64_t step() const;
  int64_t stepsPerEpoch() const;
  /// This process's place in the rank set (a one-rank group when not distributed).
  ProcessGroup &processGroup();
  /// Writes the checkpoint atomically (temp file + rename).
  void saveCheckpoint(const std::string &path);

private:
  struct State;
  std::unique_ptr<State> s_;
};

/// Dense and non-zero parameter counts of a registry model with its masks
/// initialised as training would initialise them (SNIP scores one batch of
/// random images at the model's nominal size).
struct ParameterReport {
  models::ModelConfig config;
  int64_t total = 0;    // every parameter
  int64_t maskable = 0; // parameters of rank 2 or 4
  int64_t nonZero = 0;  // total minus the weights the masks zero (biases count)
  int64_t maskedLayers = 0, denseLayers = 0;
};
ParameterReport parameterReport(const std::string &model, const models::ModelOverrides &overrides,
                                const sparse::Options &sparse, uint64_t seed = 0);

} // namespace slak::train

// Masking: SLaK's dynamic sparse training (ANCHORS.md, "Sparse training").
//
// - Masks on every parameter of rank 2 or 4 (conv and linear weights, the
//   head); never on norms, biases or layer scales.
// - Initial per-layer densities from `snip`, `ERK` or `uniform`; a layer whose
//   density comes out >= 0.99 stays dense (no mask at all). Each masked layer
//   then gets exactly round(density * numel) live weights at random positions.
// - Every `updateFrequency` optimizer steps each masked layer drops the
//   ceil(rate * live) live weights of smallest magnitude and regrows as many
//   among its dead positions (random, or largest |gradient|), so the live
//   count per layer never changes. The rate decays on a cosine from
//   `pruneRate` to `pruneRateMin` over `totalSteps`.
// - applyToWeights() (after every optimizer step) zeroes dead weights.
//
// Optimizer moments (MomentPolicy): Reset (default) zeroes the AdamW
// exp_avg / exp_avg_sq of every position whose mask changed, so a regrown
// weight starts at 0 with no history, like a fresh parameter; Keep leaves them
// as the official code does (regrown weights restart at 0 with stale moments).
#pragma once

#include <torch/nn/module.h>
#include <torch/types.h>

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <utility>
#include <vector>

namespace torch::optim {
class Optimizer;
} // namespace torch::optim

namespace slak::sparse {

enum class Init { Snip, ERK, Uniform };
enum class Growth { Random, Gradient };
enum class MomentPolicy { Reset, Keep };

/// "snip" | "ERK" (also "erk") | "uniform"; throws std::invalid_argument.
Init parseInit(const std::string &name);
Growth parseGrowth(const std::string &name);
MomentPolicy parseMomentPolicy(const std::string &name);
const char *initName(Init init);
const char *growthName(Growth growth);
const char *momentPolicyName(MomentPolicy policy);

struct Options {
  double sparsity = 0.4; // fraction of maskable weights that are zero
  Init init = Init::Snip;
  Growth growth = Growth::Random;
  MomentPolicy moments = MomentPolicy::Reset;
  double pruneRate = 0.3;
  double pruneRateMin = 0.005;
  int64_t updateFrequency = 100; // optimizer steps between mask updates
  int64_t totalSteps = 1;        // length of the prune-rate cosine
  double denseThreshold = 0.99;  // layers at or above this density stay dense
  double erkPowerScale = 1.0;
  uint64_t seed = 0;
};

struct LayerMask {
  std::string name;     // full parameter name
  torch::Tensor weight; // the parameter itself
  torch::Tensor mask;   // 0/1, the weight's shape and dtype
  int64_t live = 0;     // number of ones in mask
  double density() const { return static_cast<double>(live) / weight.numel(); }
};

struct LayerUpdate {
  std::string name;
  int64_t pruned = 0; // = regrown
  int64_t live = 0;
  double density = 0;
};

struct UpdateReport {
  int64_t step = 0;
  double pruneRate = 0;
  std::vector<LayerUpdate> layers;
};

/// Per-layer densities from SNIP scores |w * dL/dw|: one global threshold
/// keeps the top (1 - sparsity) of all scores; a layer's density is the
/// fraction of its scores at or above it. Exposed for tests.
std::vector<double> snipDensities(const std::vector<torch::Tensor> &scores, double sparsity);
/// Erdős–Rényi-kernel densities: eps * (sum of dims / product of dims)^power,
/// eps chosen so the total live count matches; layers that would exceed 1
/// are dense and eps is recomputed without them.
std::vector<double> erkDensities(const std::vector<std::vector<int64_t>> &shapes, double sparsity,
                                 double powerScale = 1.0);

class Masking {
public:
  /// Selects the maskable parameters (rank 2 or 4) of `model`; no masks yet.
  Masking(torch::nn::Module &model, Options options);

  /// Computes the densities, draws the masks and zeroes dead weights. SNIP
  /// needs `snipLoss`: a loss on one batch through the current model.
  void initialize(const std::function<torch::Tensor()> &snipLoss = nullptr);

  /// Zeroes dead weights (call after every optimizer step).
  void applyToWeights();
  /// Zeroes dead entries in another module with the same parameter names (EMA).
  void applyTo(torch::nn::Module &other);

  bool isUpdateStep(int64_t step) const {
    return options_.updateFrequency > 0 && step > 0 && step % options_.updateFrequency == 0;
  }
  double pruneRateAt(int64_t step) const;
  /// Prune + regrow every masked layer at optimizer step `step`, then zero
  /// dead weights and (MomentPolicy::Reset) the moments of changed positions
  /// in `optimizer` (AdamW or Adam; may be null).
  UpdateReport update(int64_t step, torch::optim::Optimizer *optimizer);

  const std::vector<LayerMask> &layers() const { return layers_; }
  /// Masks by full parameter name (masked layers only).
  std::map<std::string, torch::Tensor> maskMap() const;
  /// Live weights over maskable weights (dense layers count as live).
  double overallDensity() const;
  int64_t maskableCount() const { return maskable_; }
  const Options &options() const { return options_; }

  /// Multi-process training: makes this Masking equal to rank 0's (which
  /// layers are masked, the masks, live counts, the generator) and zeroes the
  /// dead weights. `broadcast` replaces a tensor by rank 0's tensor of the
  /// same shape and dtype (a collective: every rank calls this together).
  void synchronize(const std::function<void(torch::Tensor &)> &broadcast);
  /// One float64 checksum per masked layer (position-weighted sum of the
  /// mask), names in `layers()` order: equal on every rank or the masks differ.
  torch::Tensor checksums() const;

  /// The state of the generator behind the random draws (masks, regrowth),
  /// for checkpoints (models/checkpoint).
  torch::Tensor generatorState() const;
  /// Takes the masks (by parameter name, in this order) and the generator
  /// state of a checkpoint; every name must be a maskable parameter of this
  /// model with the mask's shape. An undefined state keeps the generator.
  void restore(const std::vector<std::pair<std::string, torch::Tensor>> &masks,
               const torch::Tensor &generatorState);

private:
  void drawMasks(const std::vector<double> &densities);

  Options options_;
  std::vector<std::pair<std::string, torch::Tensor>> candidates_; // maskable params
  std::vector<LayerMask> layers_;
  int64_t maskable_ = 0;
  torch::Generator generator_;
};

} // namespace slak::sparse

// TrainingCheckpoint: the file slak-train writes (<out-dir>/checkpoint.pt)
// and that --resume, slak-infer, slak-export, slak-erf and deployment read.
// One LibTorch archive (a zip of TorchScript records):
//   model/      parameters and buffers, laid out by Module::save
//   ema/        the same for the EMA model, when trained with one
//   optimizer/  count; <i>/ name, step, exp_avg, exp_avg_sq (AdamW, by parameter name)
//   masks/      count; name/<i>, mask/<i> (0/1, the weight's shape); generator
//   rng/        cpu, cuda, cpu_rank<r>, cuda_rank<r>: LibTorch's default generators
//   meta/       format, step, world_size, epoch_loss_sum, epoch_train_seconds,
//               epoch_correct, epoch_seen, config (ConfigJson.h)
// A write goes to <path>.tmp, is fsynced, renamed over <path> and the folder
// fsynced: a killed process or a power loss leaves the old file or the new
// one. A read checks the file's kind and every record's CRC-32 (LibTorch
// does not) before LibTorch parses it; each refusal names the file and the fix.
#pragma once

#include <torch/nn/module.h>
#include <torch/types.h>

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace torch::optim {
class AdamW;
} // namespace torch::optim
namespace slak::sparse {
class Masking;
} // namespace slak::sparse

namespace slak::checkpoint {

/// meta/format of the files this build writes and reads.
inline constexpr int64_t kFormat = 1;

/// The running sums of the epoch in progress, so that a resumed run logs the
/// same epoch figures as an uninterrupted one.
struct EpochSums {
  double lossSum = 0, trainSeconds = 0;
  int64_t correct = 0, seen = 0;
};

struct Meta {
  int64_t format = kFormat; // 0 when the file has no meta/
  int64_t step = 0;         // optimizer steps taken
  int64_t worldSize = 1;    // ranks of the run that wrote it
  EpochSums epoch;
  std::string config; // ConfigJson text (upgraded); empty when the file has none
};

/// What a checkpoint holds, for write(). `model` is required; the others
/// are left out of the file when null or empty.
struct Snapshot {
  const torch::nn::Module *model = nullptr;
  const torch::nn::Module *ema = nullptr;
  const torch::optim::AdamW *optimizer = nullptr; // state of `model`'s parameters
  const sparse::Masking *masking = nullptr;
  std::vector<torch::Tensor> cpuGenerators, cudaGenerators; // by rank
  Meta meta;
};

/// Writes `snapshot` to `path` atomically (temp file, fsync, rename).
/// Throws std::runtime_error naming the file when it cannot be written.
void write(const std::string &path, const Snapshot &snapshot);

/// Masks by parameter name, in the Masking's layer order, and the state of
/// its generator.
struct Masks {
  std::vector<std::pair<std::string, torch::Tensor>> layers;
  torch::Tensor generator;
};

/// Who reads a file: the refusals name it as that reader's flag does and
/// say what that reader can do about a damaged file.
enum class Reader {
  Tool,   // "checkpoint PATH ...; write or copy it again"
  Resume, // "--resume PATH ...; resume from an intact checkpoint or start afresh"
};

class TrainingCheckpoint {
public:
  /// Opens `path` and reads meta/. Throws std::runtime_error for a missing
  /// file, a file of another kind, damaged records, another checkpoint
  /// format or a file LibTorch cannot read.
  TrainingCheckpoint(const std::string &path, Reader reader);
  ~TrainingCheckpoint();
  TrainingCheckpoint(TrainingCheckpoint &&) noexcept;

  const std::string &path() const;
  const Meta &meta() const;
  bool hasEma() const;
  bool hasMasks() const;

  /// model/ (with `ema`, ema/) into `model`, every parameter and buffer
  /// checked by name and shape.
  void readWeights(torch::nn::Module &model, bool ema);
  /// optimizer/ into `optimizer`, whose parameters are `model`'s, on `device`.
  void readOptimizer(torch::nn::Module &model, torch::optim::AdamW &optimizer,
                     torch::Device device);
  /// masks/ (empty without one), each mask checked against the parameter
  /// of `model` it names. CPU tensors as stored.
  Masks readMasks(torch::nn::Module &model);
  /// rng/: the default CPU (CUDA) generator state of `rank`; undefined when
  /// the file has none.
  torch::Tensor cpuGenerator(int64_t rank);
  torch::Tensor cudaGenerator(int64_t rank);

  /// Throws "<reader names the file> WHAT" (e.g. "has no EMA weights: ...").
  [[noreturn]] void refuse(const std::string &what) const;

private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

} // namespace slak::checkpoint

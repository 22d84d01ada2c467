// WeightReader: copies tensors from a checkpoint into a model only after
// each is found by name with the model's shape, so that a file of another
// model or large-kernel backend is refused with one message naming the file,
// the tensor and the fix, never half-loaded. The slak-train reader
// (TrainingCheckpoint.h) and the official SLaK reader (models/deploy) use it.
#pragma once

#include <torch/nn/module.h>
#include <torch/serialize/input-archive.h>

#include <functional>
#include <string>

namespace slak::checkpoint {

class WeightReader {
public:
  /// `file` names the file in refusals ("checkpoint x.pt"); `advice` says
  /// why and what to do, after the first problem.
  WeightReader(std::string file, std::function<std::string()> advice);

  /// The parameters and buffers of `module` and its children from `archive`
  /// (laid out by Module::save), each checked by name and shape. `section`
  /// and `prefix` name a missing or misshapen tensor ("model/" "stem.0.").
  void readModule(torch::nn::Module &module, torch::serialize::InputArchive &archive,
                  const std::string &section, const std::string &prefix);

  /// Refuses `name` unless `shape` (the file's) is `target`'s.
  void checkShape(const std::string &name, c10::IntArrayRef shape,
                  const torch::Tensor &target) const;

  /// Copies `value` (checked) into the model's `target`.
  void copy(const std::string &name, const torch::Tensor &value, torch::Tensor &target) const;

  /// "FILE: WHAT: ADVICE".
  [[noreturn]] void fail(const std::string &what) const;

private:
  void readTensor(torch::serialize::InputArchive &archive, const std::string &name,
                  const std::string &key, torch::Tensor &target, bool buffer);

  std::string file_;
  std::function<std::string()> advice_;
};

} // namespace slak::checkpoint

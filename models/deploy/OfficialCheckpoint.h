// OfficialCheckpoint: reads the checkpoints of the official SLaK code
// (ANCHORS.md "Official checkpoints"): a torch.save zip of a dict with
// `model` (a state dict with the official names), optionally `model_ema`,
// `optimizer`, `epoch`, `scaler` and `args` (a pickled argparse.Namespace).
//
// LibTorch's unpickler cannot read them (it fails on the OrderedDict state of
// every state dict and refuses unknown classes without a resolver), so the
// file's data.pkl is read by a small unpickler of our own for the subset
// torch.save writes (dicts, OrderedDicts, lists, tuples, numbers, strings,
// bools, None, tensors through torch._utils._rebuild_tensor_v2 and
// persistent storages). Unknown classes (argparse.Namespace, ...) become
// opaque objects with their arguments and state. Storages are read from the
// zip (caffe2::serialize::PyTorchStreamReader) only for the tensors asked for.
//
// The name mapping to our models, the deduction of the model flags a file
// fits and the refusal messages are here too; models::loadCheckpoint
// (Checkpoint.h) loads such a file into a model with its usual checks.
#pragma once

#include "models/Models.h"

#include <torch/types.h>

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace slak::models {

/// What the file's `args` (an argparse.Namespace) says, where readable.
struct OfficialArgs {
  std::optional<std::string> model;               // "SLaK_tiny"
  std::optional<std::vector<int64_t>> kernelSize; // M per stage, then N
  std::optional<double> widthFactor;
  std::optional<bool> decom, bn;
  std::optional<int64_t> numClasses; // nb_classes
  /// "model SLaK_tiny, kernel_size 31 29 27 13 5, width_factor 1.3", or "".
  std::string describe() const;
};

/// An open official checkpoint. Tensors are read from the zip on demand.
class OfficialCheckpoint {
public:
  /// Opens `path` when it is an official checkpoint: a torch.save zip whose
  /// top-level object is a dict with a `model` or `model_ema` dict of tensors.
  /// Returns nullptr for anything else that is not broken (slak-train's
  /// TorchScript archives, files that are not zip archives). Throws
  /// std::runtime_error naming the file for a truncated or corrupt zip, a
  /// pickle this reader does not understand, or a legacy (pre-1.6,
  /// non-zip) torch.save file.
  static std::unique_ptr<OfficialCheckpoint> open(const std::string &path);

  ~OfficialCheckpoint();
  OfficialCheckpoint(const OfficialCheckpoint &) = delete;
  OfficialCheckpoint &operator=(const OfficialCheckpoint &) = delete;

  const std::string &path() const;
  /// Whether the file has `model_ema` (ema) or `model` weights.
  bool hasWeights(bool ema) const;
  /// The state dict's tensor names, in file order (a leading "module." of
  /// every name, as DataParallel writes, is dropped).
  const std::vector<std::string> &names(bool ema) const;
  /// Shapes by name, without reading any tensor data.
  std::map<std::string, std::vector<int64_t>> shapes(bool ema) const;
  /// One tensor of the state dict (read from the zip now, CPU). Throws
  /// std::out_of_range for an unknown name.
  torch::Tensor tensor(const std::string &name, bool ema) const;
  /// The `epoch` entry as text ("3", "best"), empty when absent.
  const std::string &epoch() const;
  const OfficialArgs &args() const;

  struct Impl;

private:
  explicit OfficialCheckpoint(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

/// For each tensor (parameter or buffer) of `model`, its official name:
/// large-kernel branch b of a decomposed layer is LoRA1 / LoRA2 / small_conv
/// (`conv.weight`, `bn.*`), of an M x M layer lkb_origin / small_conv; both
/// of our backends' names (runtime `lk.lora1_weight`, `lk.lora1_bn.*`;
/// LibTorch `branch0.weight`, `branch0.bn.*`) map the same way. Every other
/// name is the same in both. In the model's named_parameters() then
/// named_buffers() order.
std::vector<std::pair<std::string, std::string>> officialTensorNames(Classifier &model);

/// The names older official code wrote for `officialName` (Decom1 / Decom2
/// for LoRA1 / LoRA2), tried when the current name is absent.
std::vector<std::string> legacyOfficialNames(const std::string &officialName);

/// The model an official state dict describes, read from its shapes.
struct OfficialModelShape {
  std::vector<int64_t> depths, dims;
  std::vector<int> kernelSizes; // M per stage (0 where unknown)
  int smallKernel = 0;          // N (0 when unknown)
  bool decomposed = true;       // LoRA1/LoRA2 (true) or lkb_origin (false)
  bool branchBatchNorm = true;
  bool merged = false; // lkb_reparam: kernels merged for deployment
  int64_t inChannels = 0, numClasses = 0;
  int stemKernel = 0;
  /// The registry model with these depths and widths ("" when none), and the
  /// width factor that gives the widths from its base dims (0 when none).
  std::string registryName;
  double widthFactor = 0;
};
OfficialModelShape describeOfficialModel(const std::map<std::string, std::vector<int64_t>> &shapes);

/// The model flags of our tools that build the model the file describes,
/// relative to `current` ("--model slak_small --kernel-sizes 31,29,27,13"),
/// empty when nothing differs.
std::string fittingFlags(const OfficialModelShape &file, const ModelConfig &current);

/// The described model as a meta/config JSON text (what slak-train
/// checkpoints record: name, depths, dims, kernel_sizes, ...).
std::string officialModelConfigJson(const OfficialModelShape &file);

} // namespace slak::models

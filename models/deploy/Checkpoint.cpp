#include "models/deploy/Checkpoint.h"

#include "models/sparse/Masking.h"

#include <nlohmann/json.hpp>
#include <torch/serialize/input-archive.h>
#include <torch/torch.h>

#include <filesystem>
#include <stdexcept>
#include <tuple>
#include <utility>

namespace slak::models {
namespace {

class Reader {
public:
  Reader(std::string path, std::string config)
      : path_(std::move(path)), config_(std::move(config)) {}

  /// Module::load with a name and shape check of every tensor.
  void readModule(torch::nn::Module &module, torch::serialize::InputArchive &archive,
                  const std::string &section, const std::string &prefix) {
    for (auto &p : module.named_parameters(/*recurse=*/false))
      readTensor(archive, section, prefix + p.key(), p.key(), p.value(), false);
    for (auto &b : module.named_buffers(/*recurse=*/false))
      readTensor(archive, section, prefix + b.key(), b.key(), b.value(), true);
    for (auto &child : module.named_children()) {
      torch::serialize::InputArchive sub;
      if (!archive.try_read(child.key(), sub))
        fail(section + prefix + child.key() + " is missing");
      readModule(*child.value(), sub, section, prefix + child.key() + ".");
    }
  }

  [[noreturn]] void fail(const std::string &what) const {
    throw std::runtime_error(
        "checkpoint " + path_ + ": " + what + ": it was written for another model (" +
        (config_.empty() ? "unknown" : config_) +
        "); pass the same --model, overrides and --lk-backend as the training run");
  }

private:
  void readTensor(torch::serialize::InputArchive &archive, const std::string &section,
                  const std::string &name, const std::string &key, torch::Tensor &target,
                  bool buffer) {
    torch::Tensor value;
    if (!archive.try_read(key, value, buffer) || !value.defined())
      fail(section + name + " is missing");
    if (value.sizes() != target.sizes())
      fail(section + name + " has shape " + c10::str(value.sizes()) + ", the model's has " +
           c10::str(target.sizes()));
    torch::NoGradGuard noGrad;
    target.copy_(value.to(target.device(), target.scalar_type()));
  }

  std::string path_, config_;
};

torch::serialize::InputArchive openCheckpoint(const std::string &path) {
  if (!std::filesystem::is_regular_file(path))
    throw std::runtime_error("checkpoint " + path +
                             ": no such file (slak-train writes <out-dir>/checkpoint.pt)");
  torch::serialize::InputArchive root;
  try {
    root.load_from(path, torch::kCPU);
  } catch (const c10::Error &e) {
    throw std::runtime_error(
        "checkpoint " + path +
        " cannot be read (not a slak-train checkpoint?): " + e.what_without_backtrace());
  }
  return root;
}

/// meta/config (JSON text, empty when absent) and meta/step of `root`.
std::pair<std::string, int64_t> readMeta(torch::serialize::InputArchive &root) {
  std::pair<std::string, int64_t> out{"", 0};
  torch::serialize::InputArchive meta;
  if (root.try_read("meta", meta)) {
    c10::IValue config;
    if (meta.try_read("config", config) && config.isString())
      out.first = upgradeCheckpointConfig(config.toStringRef());
    torch::Tensor step;
    if (meta.try_read("step", step) && step.defined())
      out.second = step.item<int64_t>();
  }
  return out;
}

} // namespace

std::string upgradeCheckpointConfig(const std::string &config) {
  nlohmann::json c = nlohmann::json::parse(config, nullptr, /*allow_exceptions=*/false);
  if (!c.is_object())
    return config; // not ours to judge here: the config checks name it
  if (!c.contains("stem_stride") && c.contains("stem_kernel"))
    c["stem_stride"] = c["stem_kernel"];
  return c.dump();
}

std::string checkpointConfig(const std::string &path) {
  auto root = openCheckpoint(path);
  std::string config = readMeta(root).first;
  if (config.empty())
    throw std::runtime_error("checkpoint " + path +
                             " has no meta/config: not a slak-train checkpoint");
  return config;
}

LoadedCheckpoint loadCheckpoint(const std::string &path, Classifier &model, bool ema) {
  auto root = openCheckpoint(path);
  LoadedCheckpoint out;
  out.ema = ema;
  std::tie(out.config, out.step) = readMeta(root);
  Reader reader(path, out.config);

  torch::serialize::InputArchive weights;
  const std::string section = ema ? "ema" : "model";
  if (!root.try_read(section, weights)) {
    if (ema)
      throw std::runtime_error("checkpoint " + path +
                               " has no EMA weights (trained with --ema-decay 0): drop --ema");
    reader.fail("model/ is missing");
  }
  reader.readModule(model, weights, section + "/", "");

  torch::serialize::InputArchive masks;
  if (root.try_read("masks", masks)) {
    torch::Tensor count;
    masks.read("count", count);
    auto params = model.named_parameters();
    for (int64_t i = 0; i < count.item<int64_t>(); ++i) {
      c10::IValue name;
      torch::Tensor mask;
      masks.read("name/" + std::to_string(i), name);
      masks.read("mask/" + std::to_string(i), mask);
      const std::string &n = name.toStringRef();
      auto *param = params.find(n);
      if (!param)
        reader.fail("masks/ has a mask for " + n + ", which the model does not have");
      if (mask.sizes() != param->sizes())
        reader.fail("the mask of " + n + " has shape " + c10::str(mask.sizes()) +
                    ", the weight's is " + c10::str(param->sizes()));
      mask = mask.to(param->device(), param->scalar_type());
      {
        torch::NoGradGuard noGrad;
        param->mul_(mask); // as the trainer keeps them: dead weights are exactly 0
      }
      out.masks[n] = mask;
    }
  }
  pushMasksToLargeKernels(model, out.masks);
  return out;
}

SourcedModel loadModel(const ModelConfig &config, const std::string &checkpoint, bool ema,
                       uint64_t seed) {
  torch::manual_seed(seed);
  SourcedModel out;
  out.model = createModel(config);
  if (!checkpoint.empty()) {
    LoadedCheckpoint loaded = loadCheckpoint(checkpoint, *out.model, ema);
    out.source = checkpoint + (ema ? " (EMA)" : "") + ", step " + std::to_string(loaded.step);
    return out;
  }
  out.source = "random weights (seed " + std::to_string(seed) + ")";
  if (config.sparsity > 0) {
    sparse::Options o;
    o.sparsity = config.sparsity;
    o.init = sparse::Init::Uniform;
    o.seed = seed;
    sparse::Masking masking(*out.model, o);
    masking.initialize();
    pushMasksToLargeKernels(*out.model, masking.maskMap());
    out.source += " and uniform random masks at sparsity " + std::to_string(config.sparsity);
  }
  return out;
}

} // namespace slak::models

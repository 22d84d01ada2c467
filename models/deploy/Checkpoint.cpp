#include "models/deploy/Checkpoint.h"

#include "codegen/FileKind.h"
#include "models/deploy/OfficialCheckpoint.h"
#include "models/deploy/ZipChecksums.h"
#include "models/sparse/Masking.h"

#include <nlohmann/json.hpp>
#include <torch/serialize/input-archive.h>
#include <torch/torch.h>

#include <algorithm>
#include <filesystem>
#include <functional>
#include <set>
#include <stdexcept>
#include <tuple>
#include <utility>

namespace slak::models {
namespace {

/// The name and shape checks of every checkpoint format: a tensor is copied
/// into the model only when found with the model's shape; anything else is
/// refused with one message that names the tensor and the fix.
class Reader {
public:
  /// `advice` says why and what to do, after the first problem.
  Reader(std::string file, std::function<std::string()> advice)
      : file_(std::move(file)), advice_(std::move(advice)) {}

  /// Module::load with a name and shape check of every tensor.
  void readModule(torch::nn::Module &module, torch::serialize::InputArchive &archive,
                  const std::string &section, const std::string &prefix) {
    for (auto &p : module.named_parameters(/*recurse=*/false))
      readTensor(archive, section, prefix + p.key(), p.key(), p.value(), false);
    for (auto &b : module.named_buffers(/*recurse=*/false))
      readTensor(archive, section, prefix + b.key(), b.key(), b.value(), true);
    for (auto &child : module.named_children()) {
      torch::serialize::InputArchive sub;
      if (!archive.try_read(child.key(), sub)) {
        const std::string missing = section + prefix + child.key() + " is missing";
        if (std::string other = otherBackend(child.key(), archive); !other.empty())
          throw std::runtime_error("checkpoint " + file_ + ": " + missing + ": " + other);
        fail(missing);
      }
      readModule(*child.value(), sub, section, prefix + child.key() + ".");
    }
  }

  /// Refuses `name` unless `shape` (the file's) is the model's.
  void checkShape(const std::string &name, c10::IntArrayRef shape, const torch::Tensor &target) {
    if (shape != target.sizes())
      fail(name + " has shape " + c10::str(shape) + " in the file, " + c10::str(target.sizes()) +
           " in the model");
  }

  /// Copies `value` (checked) into the model's `target`.
  void copy(const std::string &name, const torch::Tensor &value, torch::Tensor &target) {
    checkShape(name, value.sizes(), target);
    torch::NoGradGuard noGrad;
    target.copy_(value.to(target.device(), target.scalar_type()));
  }

  [[noreturn]] void fail(const std::string &what) const {
    throw std::runtime_error("checkpoint " + file_ + ": " + what + ": " + advice_());
  }

private:
  void readTensor(torch::serialize::InputArchive &archive, const std::string &section,
                  const std::string &name, const std::string &key, torch::Tensor &target,
                  bool buffer) {
    torch::Tensor value;
    if (!archive.try_read(key, value, buffer) || !value.defined())
      fail(section + name + " is missing");
    copy(section + name, value, target);
  }

  /// A large-kernel layer of the other --lk-backend (the runtime backend
  /// keeps its tensors under "lk", the LibTorch one under "branch<b>"): what
  /// happened and the flag that fixes it; "" otherwise.
  static std::string otherBackend(const std::string &missing,
                                  torch::serialize::InputArchive &archive) {
    const std::vector<std::string> keys = archive.keys();
    auto has = [&](const std::string &key) {
      return std::find(keys.begin(), keys.end(), key) != keys.end();
    };
    if (missing == "lk" && has("branch0"))
      return "the file's large-kernel layers were trained with --lk-backend torch, this model "
             "uses the runtime backend: pass --lk-backend torch";
    if (missing.rfind("branch", 0) == 0 && has("lk"))
      return "the file's large-kernel layers were trained with --lk-backend runtime, this model "
             "uses the LibTorch one (which --lk-backend auto picks without the Halide CPU backend "
             "or a CUDA device): pass --lk-backend runtime";
    return "";
  }

  std::string file_;
  std::function<std::string()> advice_;
};

/// The advice after a slak-train checkpoint's first problem.
std::function<std::string()> trainedAs(const std::string &config) {
  return [config] {
    return "it was written for another model (" + (config.empty() ? "unknown" : config) +
           "); pass the same --model, overrides and --lk-backend as the training run";
  };
}

/// An official SLaK checkpoint into `model`: every tensor of the model found
/// (official names, older Decom1/Decom2 too) with its shape, no tensor of
/// the file left over, masks from the exact zeros.
LoadedCheckpoint loadOfficial(const OfficialCheckpoint &file, Classifier &model, bool ema) {
  const std::string &path = file.path();
  LoadedCheckpoint out;
  out.ema = ema;
  const std::string what = "official SLaK checkpoint " + path;
  if (!file.hasWeights(ema)) {
    if (ema)
      throw std::runtime_error("checkpoint " + path +
                               " (official SLaK checkpoint) has no model_ema weights (trained "
                               "without --model_ema true): drop --ema");
    throw std::runtime_error("checkpoint " + path +
                             " (official SLaK checkpoint) has only model_ema weights: pass --ema");
  }
  const auto shapes = file.shapes(ema);
  const OfficialModelShape described = describeOfficialModel(shapes);
  out.config = officialModelConfigJson(described);
  out.source =
      what + (ema ? " (EMA)" : "") + (file.epoch().empty() ? "" : " (epoch " + file.epoch() + ")");
  const ModelConfig &config = model.config();
  Reader reader(path + " (official SLaK checkpoint)", [&] {
    std::string args = file.args().describe();
    std::string flags = fittingFlags(described, config);
    return "the file was trained as another model" + (args.empty() ? "" : " (args: " + args + ")") +
           "; " +
           (flags.empty() ? "pass the --model and model flags it was trained with"
                          : "it fits " + flags);
  });
  if (described.merged)
    throw std::runtime_error(
        "checkpoint " + path +
        " (official SLaK checkpoint) holds merged large kernels (lkb_reparam.weight/bias, "
        "written after merge_kernel()), which cannot be split into the model's branches: load "
        "the un-merged checkpoint that training saved");

  // Our tensors by name, parameters and buffers.
  std::map<std::string, torch::Tensor> targets;
  for (auto &p : model.named_parameters())
    targets[p.key()] = p.value();
  for (auto &b : model.named_buffers())
    targets[b.key()] = b.value();

  std::set<std::string> used;
  std::vector<std::pair<std::string, torch::Tensor *>> toCopy;
  for (const auto &[ours, official] : officialTensorNames(model)) {
    std::string found = shapes.count(official) ? official : "";
    for (const auto &legacy : legacyOfficialNames(official))
      if (found.empty() && shapes.count(legacy))
        found = legacy;
    if (found.empty())
      reader.fail(official + (ours == official ? "" : " (the model's " + ours + ")") +
                  " is missing from the file");
    reader.checkShape(found, shapes.at(found), targets.at(ours));
    used.insert(found);
    toCopy.emplace_back(found, &targets.at(ours));
  }
  std::vector<std::string> extra;
  for (const auto &name : file.names(ema))
    if (!used.count(name))
      extra.push_back(name);
  if (!extra.empty()) {
    std::string list;
    for (size_t k = 0; k < extra.size() && k < 4; ++k)
      list += (k ? ", " : "") + extra[k];
    if (extra.size() > 4)
      list += ", ...";
    reader.fail("the file has " + std::to_string(extra.size()) + " tensor(s) the model does not (" +
                list + ")");
  }
  // Every name and shape fits: now read the data.
  for (auto &[name, target] : toCopy)
    reader.copy(name, file.tensor(name, ema), *target);

  // No masks are saved: pruned weights are exact zeros (on every rank-2/4
  // weight), and the official resume rebuilds the masks from them.
  torch::NoGradGuard noGrad;
  for (auto &p : model.named_parameters()) {
    const torch::Tensor &w = p.value();
    if ((w.dim() == 2 || w.dim() == 4) && w.eq(0).any().item<bool>())
      out.masks[p.key()] = w.ne(0).to(w.scalar_type());
  }
  pushMasksToLargeKernels(model, out.masks);
  return out;
}

/// The first line of a LibTorch error, without its C++ stack trace (kept
/// for SLAK_LOG=debug by the tools) and without miniz's advice paragraph.
std::string libTorchReason(const c10::Error &e) {
  std::string why = e.what_without_backtrace();
  why = why.substr(0, why.find('\n'));
  if (size_t internal = why.find(". This is an internal miniz error");
      internal != std::string::npos)
    why.erase(internal);
  return why;
}

torch::serialize::InputArchive openCheckpoint(const std::string &path) {
  const std::string kind = codegen::describeFileKind(path);
  const std::string expected = "not a checkpoint (slak-train writes <out-dir>/checkpoint.pt; an "
                               "official SLaK checkpoint is a torch.save .pth file)";
  if (kind.rfind("a folder", 0) == 0 || kind == "not a regular file")
    throw std::runtime_error("checkpoint " + path + " is " + kind + ", " + expected);
  if (!std::filesystem::is_regular_file(path))
    throw std::runtime_error("checkpoint " + path +
                             ": no such file (slak-train writes <out-dir>/checkpoint.pt)");
  // Both kinds are zip archives: anything else is the wrong file.
  if (kind.rfind("a zip archive", 0) != 0)
    throw std::runtime_error("checkpoint " + path + " is " +
                             (kind.empty() ? "not a zip archive" : kind) + ", " + expected);
  torch::serialize::InputArchive root;
  try {
    checkPyTorchArchive(path);
  } catch (const c10::Error &e) {
    throw std::runtime_error("checkpoint " + path +
                             " is not a readable zip archive (truncated or corrupt?): " +
                             libTorchReason(e) + "; write or copy it again");
  } catch (const std::runtime_error &e) {
    throw std::runtime_error("checkpoint " + path + " is corrupt: " + e.what() +
                             "; write or copy it again");
  }
  try {
    root.load_from(path, torch::kCPU);
  } catch (const c10::Error &e) {
    throw std::runtime_error(
        "checkpoint " + path +
        " cannot be read (not a slak-train checkpoint?): " + libTorchReason(e));
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
  if (auto official = OfficialCheckpoint::open(path))
    return officialModelConfigJson(
        describeOfficialModel(official->shapes(!official->hasWeights(false))));
  auto root = openCheckpoint(path);
  std::string config;
  try {
    config = readMeta(root).first;
  } catch (const c10::Error &e) {
    throw std::runtime_error("checkpoint " + path + " cannot be read: " + libTorchReason(e) +
                             " (not a checkpoint written by slak-train?)");
  }
  if (config.empty())
    throw std::runtime_error("checkpoint " + path +
                             " has no meta/config: not a slak-train checkpoint");
  return config;
}

namespace {

/// A slak-train checkpoint (a torch::save archive) into `model`.
LoadedCheckpoint loadTrained(const std::string &path, Classifier &model, bool ema) {
  auto root = openCheckpoint(path);
  LoadedCheckpoint out;
  out.ema = ema;
  std::tie(out.config, out.step) = readMeta(root);
  Reader reader(path, trainedAs(out.config));

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

} // namespace

LoadedCheckpoint loadCheckpoint(const std::string &path, Classifier &model, bool ema) {
  if (auto official = OfficialCheckpoint::open(path))
    return loadOfficial(*official, model, ema);
  try {
    return loadTrained(path, model, ema);
  } catch (const c10::Error &e) {
    // A record of an unexpected type or value (masks/count, a name that is
    // not a string, ...): the archive passed its checksums, so it was
    // written that way.
    throw std::runtime_error("checkpoint " + path + " cannot be read: " + libTorchReason(e) +
                             " (not a checkpoint written by slak-train?)");
  }
}

SourcedModel loadModel(const ModelConfig &config, const std::string &checkpoint, bool ema,
                       uint64_t seed) {
  torch::manual_seed(seed);
  SourcedModel out;
  out.model = createModel(config);
  if (!checkpoint.empty()) {
    LoadedCheckpoint loaded = loadCheckpoint(checkpoint, *out.model, ema);
    out.source = !loaded.source.empty()
                     ? loaded.source
                     : checkpoint + (ema ? " (EMA)" : "") + ", step " + std::to_string(loaded.step);
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

#include "models/deploy/Checkpoint.h"

#include "models/checkpoint/TrainingCheckpoint.h"
#include "models/checkpoint/WeightReader.h"
#include "models/deploy/OfficialCheckpoint.h"
#include "models/sparse/Masking.h"

#include <torch/torch.h>

#include <set>
#include <stdexcept>
#include <utility>

namespace slak::models {
namespace {

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
  checkpoint::WeightReader reader("checkpoint " + path + " (official SLaK checkpoint)", [&] {
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

/// A slak-train checkpoint into `model`: its weights (the EMA's with `ema`)
/// and masks, dead weights set to exactly 0 as the trainer keeps them.
LoadedCheckpoint loadTrained(const std::string &path, Classifier &model, bool ema) {
  checkpoint::TrainingCheckpoint file(path, checkpoint::Reader::Tool);
  LoadedCheckpoint out;
  out.ema = ema;
  out.config = file.meta().config;
  out.step = file.meta().step;
  if (ema && !file.hasEma())
    file.refuse("has no EMA weights (trained with --ema-decay 0): drop --ema");
  file.readWeights(model, ema);
  torch::NoGradGuard noGrad;
  auto params = model.named_parameters();
  for (auto &[name, mask] : file.readMasks(model).layers) {
    torch::Tensor &param = params[name];
    torch::Tensor m = mask.to(param.device(), param.scalar_type());
    param.mul_(m);
    out.masks[name] = m;
  }
  pushMasksToLargeKernels(model, out.masks);
  return out;
}

} // namespace

std::string checkpointConfig(const std::string &path) {
  if (auto official = OfficialCheckpoint::open(path))
    return officialModelConfigJson(
        describeOfficialModel(official->shapes(!official->hasWeights(false))));
  checkpoint::TrainingCheckpoint file(path, checkpoint::Reader::Tool);
  if (file.meta().config.empty())
    file.refuse("has no meta/config: not a slak-train checkpoint");
  return file.meta().config;
}

LoadedCheckpoint loadCheckpoint(const std::string &path, Classifier &model, bool ema) {
  if (auto official = OfficialCheckpoint::open(path))
    return loadOfficial(*official, model, ema);
  return loadTrained(path, model, ema);
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

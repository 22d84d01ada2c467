#include "models/checkpoint/ConfigJson.h"

#include <nlohmann/json.hpp>

#include <optional>
#include <stdexcept>

namespace slak::checkpoint {

using json = nlohmann::json;

namespace {

json toJson(const models::ModelConfig &c, unsigned fields = kAllFields) {
  json j{{"name", c.name},
         {"depths", c.depths},
         {"dims", c.dims()},
         {"decomposed", c.decomposed},
         {"branch_bn", c.branchBatchNorm}};
  if (fields & kKernelSizes)
    j["kernel_sizes"] = c.kernelSizes;
  if (fields & kSmallKernel)
    j["small_kernel"] = c.smallKernel;
  if (fields & kInChannels)
    j["in_channels"] = c.inChannels;
  if (fields & kNumClasses)
    j["num_classes"] = c.numClasses;
  if (fields & kStem) {
    j["stem_kernel"] = c.stemKernel;
    j["stem_stride"] = c.stemStride;
  }
  if (fields & kSparsity)
    j["sparsity"] = c.sparsity;
  return j;
}

/// The width factor (on a 0.01 grid) that turns `base` into `dims`, or 0.
double inferWidthFactor(const std::vector<int64_t> &base, const std::vector<int64_t> &dims) {
  if (base.size() != dims.size() || base.empty())
    return 0;
  for (int k = 1; k <= 1000; ++k) {
    models::ModelConfig c;
    c.baseDims = base;
    c.widthFactor = k / 100.0;
    if (c.dims() == dims)
      return c.widthFactor;
  }
  return 0;
}

/// Sets an unset override from the record's `key`.
template <typename T>
void takeRecorded(std::optional<T> &field, const json &recorded, const char *key) {
  if (!field && recorded.contains(key))
    field = recorded[key].get<T>();
}

} // namespace

std::string configJson(const models::ModelConfig &config, unsigned fields) {
  return toJson(config, fields).dump();
}

std::string upgradeConfigJson(const std::string &recorded) {
  json c = json::parse(recorded, nullptr, /*allow_exceptions=*/false);
  if (!c.is_object())
    return recorded; // the config checks name what is wrong with it
  if (!c.contains("stem_stride") && c.contains("stem_kernel"))
    c["stem_stride"] = c["stem_kernel"];
  return c.dump();
}

models::ModelConfig configFromJson(const std::string &recorded, const std::string &model,
                                   const models::ModelOverrides &overrides,
                                   const std::string &file) {
  const json saved = json::parse(upgradeConfigJson(recorded));
  const std::string name = model.empty() ? saved.value("name", std::string()) : model;
  models::ModelOverrides o = overrides;
  takeRecorded(o.kernelSizes, saved, "kernel_sizes");
  takeRecorded(o.smallKernel, saved, "small_kernel");
  takeRecorded(o.decomposed, saved, "decomposed");
  takeRecorded(o.branchBatchNorm, saved, "branch_bn");
  takeRecorded(o.inChannels, saved, "in_channels");
  takeRecorded(o.numClasses, saved, "num_classes");
  takeRecorded(o.stemKernel, saved, "stem_kernel");
  takeRecorded(o.stemStride, saved, "stem_stride");
  takeRecorded(o.sparsity, saved, "sparsity");
  if (!o.widthFactor && saved.contains("dims")) {
    const auto base = models::modelConfig(name).baseDims;
    if (double w = inferWidthFactor(base, saved["dims"].get<std::vector<int64_t>>()); w > 0)
      o.widthFactor = w;
  }
  models::ModelConfig config = models::modelConfig(name, o);
  json built = toJson(config, kAllFields & ~kSparsity), wanted = saved;
  for (auto it = wanted.begin(); it != wanted.end();)
    it = built.contains(it.key()) ? std::next(it) : wanted.erase(it);
  if (built != wanted)
    throw std::runtime_error(file + " was written for model " + wanted.dump() +
                             ", but these options build " + built.dump() +
                             ": pass the checkpoint's --model and overrides (or none)");
  return config;
}

} // namespace slak::checkpoint

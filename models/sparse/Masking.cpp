#include "models/sparse/Masking.h"

#include "codegen/EnumNames.h"

#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <stdexcept>

namespace slak::sparse {

namespace {

using codegen::Named;
using codegen::nameOf;

constexpr Named<Init> kInits[] = {
    {"snip", Init::Snip}, {"ERK", Init::ERK}, {"erk", Init::ERK}, {"uniform", Init::Uniform}};
constexpr Named<Growth> kGrowths[] = {{"random", Growth::Random}, {"gradient", Growth::Gradient}};
constexpr Named<MomentPolicy> kMomentPolicies[] = {{"reset", MomentPolicy::Reset},
                                                   {"keep", MomentPolicy::Keep}};

template <typename E, size_t N>
E parseNamed(const Named<E> (&names)[N], const std::string &name, const std::string &what) {
  if (std::optional<E> value = codegen::valueOf(names, name))
    return *value;
  throw std::invalid_argument("unknown " + what + " '" + name + "': expected " +
                              codegen::nameList(names));
}

} // namespace

Init parseInit(const std::string &name) { return parseNamed(kInits, name, "sparse init"); }
Growth parseGrowth(const std::string &name) { return parseNamed(kGrowths, name, "growth mode"); }
MomentPolicy parseMomentPolicy(const std::string &name) {
  return parseNamed(kMomentPolicies, name, "moment policy");
}
const char *initName(Init init) { return nameOf(kInits, init); }
const char *growthName(Growth growth) { return nameOf(kGrowths, growth); }
const char *momentPolicyName(MomentPolicy policy) { return nameOf(kMomentPolicies, policy); }

// ------------------------------------------------------------- densities

std::vector<double> snipDensities(const std::vector<torch::Tensor> &scores, double sparsity) {
  std::vector<torch::Tensor> flat;
  int64_t total = 0;
  for (const auto &s : scores) {
    flat.push_back(s.detach().flatten().to(torch::kCPU, torch::kFloat64));
    total += s.numel();
  }
  auto all = torch::cat(flat);
  int64_t keep = static_cast<int64_t>(static_cast<double>(total) * (1.0 - sparsity));
  keep = std::clamp<int64_t>(keep, 1, total);
  // The keep-th largest score: kthvalue counts from the smallest.
  double threshold = std::get<0>(all.kthvalue(total - keep + 1)).item<double>();
  std::vector<double> densities;
  for (const auto &f : flat)
    densities.push_back(f.ge(threshold).sum().item<double>() / static_cast<double>(f.numel()));
  return densities;
}

std::vector<double> erkDensities(const std::vector<std::vector<int64_t>> &shapes, double sparsity,
                                 double powerScale) {
  const double density = 1.0 - sparsity;
  std::vector<bool> dense(shapes.size(), false);
  std::vector<double> raw(shapes.size(), 0.0);
  for (size_t i = 0; i < shapes.size(); ++i) {
    double sum = 0, prod = 1;
    for (int64_t d : shapes[i]) {
      sum += static_cast<double>(d);
      prod *= static_cast<double>(d);
    }
    raw[i] = std::pow(sum / prod, powerScale);
  }
  double epsilon = 0;
  while (true) {
    double rhs = 0, divisor = 0;
    for (size_t i = 0; i < shapes.size(); ++i) {
      double n = 1;
      for (int64_t d : shapes[i])
        n *= static_cast<double>(d);
      if (dense[i]) {
        rhs -= n * (1.0 - density);
      } else {
        rhs += n * density;
        divisor += raw[i] * n;
      }
    }
    if (divisor <= 0) // every layer dense
      break;
    epsilon = rhs / divisor;
    double maxRaw = 0;
    for (size_t i = 0; i < shapes.size(); ++i)
      if (!dense[i])
        maxRaw = std::max(maxRaw, raw[i]);
    if (maxRaw * epsilon <= 1.0)
      break;
    for (size_t i = 0; i < shapes.size(); ++i)
      if (!dense[i] && raw[i] == maxRaw)
        dense[i] = true;
  }
  std::vector<double> out;
  for (size_t i = 0; i < shapes.size(); ++i)
    out.push_back(dense[i] ? 1.0 : epsilon * raw[i]);
  return out;
}

// ---------------------------------------------------------------- Masking

Masking::Masking(torch::nn::Module &model, Options options)
    : options_(options), generator_(at::detail::createCPUGenerator(options.seed)) {
  if (options_.sparsity < 0 || options_.sparsity >= 1)
    throw std::invalid_argument("sparsity " + std::to_string(options_.sparsity) +
                                " is outside [0, 1)");
  for (const auto &p : model.named_parameters()) {
    const auto &t = p.value();
    if (t.dim() == 2 || t.dim() == 4) {
      candidates_.emplace_back(p.key(), t);
      maskable_ += t.numel();
    }
  }
}

void Masking::initialize(const std::function<torch::Tensor()> &snipLoss) {
  std::vector<double> densities;
  switch (options_.init) {
  case Init::Uniform:
    densities.assign(candidates_.size(), 1.0 - options_.sparsity);
    break;
  case Init::ERK: {
    std::vector<std::vector<int64_t>> shapes;
    for (const auto &c : candidates_)
      shapes.push_back(c.second.sizes().vec());
    densities = erkDensities(shapes, options_.sparsity, options_.erkPowerScale);
    break;
  }
  case Init::Snip: {
    if (!snipLoss)
      throw std::invalid_argument("sparse init snip needs a batch to score weights on; "
                                  "use --sparse-init ERK or uniform where there is none");
    for (auto &c : candidates_)
      c.second.mutable_grad() = torch::Tensor();
    snipLoss().backward();
    std::vector<torch::Tensor> scores;
    {
      torch::NoGradGuard noGrad;
      for (auto &c : candidates_) {
        if (!c.second.grad().defined())
          throw std::runtime_error("snip: parameter " + c.first +
                                   " received no gradient from the scoring batch");
        scores.push_back((c.second * c.second.grad()).abs());
      }
    }
    densities = snipDensities(scores, options_.sparsity);
    for (auto &c : candidates_)
      c.second.mutable_grad() = torch::Tensor();
    break;
  }
  }
  drawMasks(densities);
  applyToWeights();
}

void Masking::drawMasks(const std::vector<double> &densities) {
  layers_.clear();
  for (size_t i = 0; i < candidates_.size(); ++i) {
    if (densities[i] >= options_.denseThreshold)
      continue; // stays dense: no mask
    const auto &[name, weight] = candidates_[i];
    int64_t n = weight.numel();
    int64_t live = std::clamp<int64_t>(std::llround(densities[i] * static_cast<double>(n)), 1, n);
    auto order = torch::randperm(n, generator_, torch::kLong);
    auto flat = torch::zeros({n}, torch::kFloat32);
    flat.index_fill_(0, order.slice(0, 0, live), 1.0f);
    LayerMask layer;
    layer.name = name;
    layer.weight = weight;
    layer.mask = flat.view(weight.sizes()).to(weight.options());
    layer.live = live;
    layers_.push_back(std::move(layer));
  }
}

void Masking::applyToWeights() {
  torch::NoGradGuard noGrad;
  for (auto &l : layers_)
    l.weight.mul_(l.mask);
}

void Masking::applyTo(torch::nn::Module &other) {
  torch::NoGradGuard noGrad;
  auto params = other.named_parameters();
  for (auto &l : layers_) {
    auto *p = params.find(l.name);
    if (!p)
      throw std::invalid_argument("module has no parameter " + l.name + " to mask");
    p->mul_(l.mask);
  }
}

double Masking::pruneRateAt(int64_t step) const {
  double total = static_cast<double>(std::max<int64_t>(options_.totalSteps, 1));
  double t = std::min(static_cast<double>(step), total) / total;
  return options_.pruneRateMin +
         0.5 * (options_.pruneRate - options_.pruneRateMin) * (1.0 + std::cos(M_PI * t));
}

namespace {

/// exp_avg / exp_avg_sq of `param` in an AdamW or Adam optimizer; empty when
/// the parameter has no state yet.
std::vector<torch::Tensor> adamMoments(torch::optim::Optimizer &optimizer,
                                       const torch::Tensor &param) {
  auto it = optimizer.state().find(param.unsafeGetTensorImpl());
  if (it == optimizer.state().end())
    return {};
  if (auto *s = dynamic_cast<torch::optim::AdamWParamState *>(it->second.get()))
    return {s->exp_avg(), s->exp_avg_sq()};
  if (auto *s = dynamic_cast<torch::optim::AdamParamState *>(it->second.get()))
    return {s->exp_avg(), s->exp_avg_sq()};
  throw std::invalid_argument("moment policy reset supports AdamW and Adam optimizers only; "
                              "use --moments keep with other optimizers");
}

} // namespace

UpdateReport Masking::update(int64_t step, torch::optim::Optimizer *optimizer) {
  torch::NoGradGuard noGrad;
  UpdateReport report;
  report.step = step;
  report.pruneRate = pruneRateAt(step);
  for (auto &l : layers_) {
    const int64_t n = l.weight.numel();
    auto oldMask = l.mask.to(torch::kCPU).flatten().gt(0.5);
    int64_t remove =
        static_cast<int64_t>(std::ceil(report.pruneRate * static_cast<double>(l.live)));
    remove = std::min(remove, l.live);
    auto newMask = oldMask.clone();
    if (remove > 0) {
      // Prune: the `remove` live weights of smallest magnitude.
      auto magnitude = l.weight.detach().to(torch::kCPU, torch::kFloat32).abs().flatten();
      magnitude.masked_fill_(oldMask.logical_not(), std::numeric_limits<float>::infinity());
      auto pruned = std::get<1>(magnitude.topk(remove, 0, /*largest=*/false));
      newMask.index_fill_(0, pruned, false);

      // Regrow as many among the dead positions (just-pruned ones included).
      torch::Tensor score;
      if (options_.growth == Growth::Random) {
        score = torch::rand({n}, generator_, torch::kFloat32);
      } else {
        if (!l.weight.grad().defined())
          throw std::runtime_error("gradient growth: " + l.name +
                                   " has no gradient; update masks before zero_grad()");
        score = l.weight.grad().detach().to(torch::kCPU, torch::kFloat32).abs().flatten();
      }
      score.masked_fill_(newMask, -1.0f);
      auto grown = std::get<1>(score.topk(remove, 0, /*largest=*/true));
      newMask.index_fill_(0, grown, true);
    }
    auto changed = newMask.ne(oldMask).view(l.weight.sizes()).to(l.weight.device());
    l.mask = newMask.view(l.weight.sizes()).to(l.weight.options());
    l.live = newMask.sum().item<int64_t>();
    l.weight.mul_(l.mask); // regrown weights start at 0
    if (optimizer && options_.moments == MomentPolicy::Reset)
      for (auto &m : adamMoments(*optimizer, l.weight))
        m.masked_fill_(changed, 0);
    report.layers.push_back({l.name, remove, l.live, l.density()});
  }
  return report;
}

std::map<std::string, torch::Tensor> Masking::maskMap() const {
  std::map<std::string, torch::Tensor> out;
  for (const auto &l : layers_)
    out[l.name] = l.mask;
  return out;
}

double Masking::overallDensity() const {
  if (maskable_ == 0)
    return 1.0;
  int64_t dead = 0;
  for (const auto &l : layers_)
    dead += l.weight.numel() - l.live;
  return 1.0 - static_cast<double>(dead) / static_cast<double>(maskable_);
}

void Masking::synchronize(const std::function<void(torch::Tensor &)> &broadcast) {
  // Which candidates rank 0 masks, then their masks and the generator state.
  auto masked = torch::zeros({static_cast<int64_t>(candidates_.size())}, torch::kInt64);
  for (const auto &l : layers_)
    for (size_t i = 0; i < candidates_.size(); ++i)
      if (candidates_[i].first == l.name)
        masked[static_cast<int64_t>(i)] = 1;
  broadcast(masked);
  std::vector<LayerMask> layers;
  for (size_t i = 0; i < candidates_.size(); ++i) {
    if (masked[static_cast<int64_t>(i)].item<int64_t>() == 0)
      continue;
    const auto &[name, weight] = candidates_[i];
    auto it = std::find_if(layers_.begin(), layers_.end(),
                           [&](const LayerMask &l) { return l.name == name; });
    LayerMask layer;
    layer.name = name;
    layer.weight = weight;
    layer.mask = it != layers_.end() ? it->mask.clone() : torch::zeros_like(weight.detach());
    broadcast(layer.mask);
    layer.live = layer.mask.gt(0.5).sum().item<int64_t>();
    layers.push_back(std::move(layer));
  }
  layers_ = std::move(layers);
  auto state = generator_.get_state();
  broadcast(state);
  generator_.set_state(state);
  applyToWeights();
}

torch::Tensor Masking::checksums() const {
  auto out = torch::zeros({static_cast<int64_t>(layers_.size())}, torch::kFloat64);
  for (size_t i = 0; i < layers_.size(); ++i) {
    auto flat = layers_[i].mask.detach().to(torch::kCPU, torch::kFloat64).flatten();
    // Position weights in [1, 2): a mask moved to other positions changes the sum.
    auto w = torch::arange(flat.numel(), torch::kFloat64).remainder(1021.0).div(1021.0).add(1.0);
    out[static_cast<int64_t>(i)] = flat.dot(w).item<double>();
  }
  return out;
}

torch::Tensor Masking::generatorState() const { return generator_.get_state(); }

void Masking::restore(const std::vector<std::pair<std::string, torch::Tensor>> &masks,
                      const torch::Tensor &generatorState) {
  std::vector<LayerMask> layers;
  for (const auto &[name, mask] : masks) {
    auto it = std::find_if(candidates_.begin(), candidates_.end(),
                           [&](const auto &c) { return c.first == name; });
    if (it == candidates_.end())
      throw std::invalid_argument("a mask for " + name +
                                  ", which is not a maskable parameter (rank 2 or 4) of the model");
    if (!mask.sizes().equals(it->second.sizes()))
      throw std::invalid_argument("the mask of " + name + " has shape " + c10::str(mask.sizes()) +
                                  ", expected " + c10::str(it->second.sizes()));
    LayerMask layer;
    layer.name = name;
    layer.weight = it->second;
    layer.mask = mask.to(it->second.options());
    layer.live = mask.gt(0.5).sum().item<int64_t>();
    layers.push_back(std::move(layer));
  }
  layers_ = std::move(layers);
  if (generatorState.defined())
    generator_.set_state(generatorState);
}

} // namespace slak::sparse

#include "models/deploy/Deploy.h"

#include "codegen/Reparam.h"
#include "codegen/package/KernelPackage.h"
#include "models/deploy/LayerExport.h"

#ifdef SLAK_MODELS_WITH_RUNTIME
#include "runtime/KernelPackageLoader.h"
#endif

#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <set>
#include <sstream>
#include <stdexcept>

namespace slak::models {
namespace {

const char *const kFix = "; re-export the model (slak-export) and rebuild the package "
                         "(slak-opt --slak-pipeline=mode=infer, slak-translate "
                         "--emit-kernel-package)";

std::string windowText(int kh, int kw, int ph, int pw) {
  return std::to_string(kh) + "x" + std::to_string(kw) + " (padding " + std::to_string(ph) + ", " +
         std::to_string(pw) + ")";
}

/// A layer's (or package op's) taps as one window of relative offsets
/// [-rh, rh] x [-rw, rw] per channel: the sum of every branch's folded
/// weights and where a live tap lies.
struct EffectiveKernel {
  int64_t channels = 0;
  int rh = 0, rw = 0;
  std::vector<double> weight; // [C][2rh+1][2rw+1]
  std::vector<uint8_t> live;  // same layout

  EffectiveKernel(int64_t c, int rh, int rw)
      : channels(c), rh(rh), rw(rw), weight(c * (2 * rh + 1) * (2 * rw + 1), 0.0),
        live(weight.size(), 0) {}
  int64_t index(int64_t c, int dy, int dx) const {
    return (c * (2 * rh + 1) + dy + rh) * (2 * rw + 1) + dx + rw;
  }
  bool inside(int dy, int dx) const { return std::abs(dy) <= rh && std::abs(dx) <= rw; }
};

} // namespace

std::string checkPackagedOp(const codegen::PackagedOp &op, const ExportedLayer &layer,
                            double tolerance) {
  const codegen::KernelSpec &s = op.kernels.spec;
  const std::string what = "kernel package op '" + op.name + "' does not fit layer " + layer.path;
  const int64_t C = layer.channels;
  if (s.channels != C)
    return what + ": it has " + std::to_string(s.channels) + " channels, the layer " +
           std::to_string(C) + kFix;
  if ((s.height > 0 && s.height != layer.height) || (s.width > 0 && s.width != layer.width))
    return what + ": it was compiled for " + std::to_string(s.height) + "x" +
           std::to_string(s.width) + " inputs, the layer sees " + std::to_string(layer.height) +
           "x" + std::to_string(layer.width) + kFix;
  if (s.elementType != codegen::ElementType::F32)
    return what + ": it computes " + codegen::elementTypeName(s.elementType) +
           ", the layer float32" + kFix;
  if (s.perBranchOutputs)
    return what +
           ": it writes one output per branch (a training package); build it with "
           "--slak-pipeline=mode=infer" +
           std::string(kFix);

  // The layer folded (codegen/Reparam.h), every surviving branch added into
  // one window of relative offsets.
  int rh = 0, rw = 0;
  std::string layerWindows;
  std::vector<codegen::ArrayFoldBranch> inputs;
  for (const ExportedBranch &b : layer.branches) {
    rh = std::max(rh, b.padH);
    rw = std::max(rw, b.padW);
    layerWindows += (layerWindows.empty() ? "" : ", ") + std::to_string(b.kernelH) + "x" +
                    std::to_string(b.kernelW);
    codegen::ArrayFoldBranch in;
    in.window = {b.kernelH, b.kernelW, b.padH, b.padW};
    in.weight.assign(b.weight.begin(), b.weight.end());
    in.mask = b.mask;
    if (b.batchNorm) {
      in.hasNorm = true;
      in.norm = {{b.scale.begin(), b.scale.end()},
                 {b.shift.begin(), b.shift.end()},
                 {b.mean.begin(), b.mean.end()},
                 {b.variance.begin(), b.variance.end()},
                 b.epsilon};
    }
    inputs.push_back(std::move(in));
  }
  const std::vector<double> layerBias(layer.bias.begin(), layer.bias.end());
  const codegen::ArrayFoldedLayer folded =
      codegen::foldLayer(C, std::move(inputs), layer.bias.empty() ? nullptr : &layerBias);
  const std::vector<double> modelBias = folded.hasBias ? folded.bias : std::vector<double>(C, 0.0);
  EffectiveKernel model(C, rh, rw);
  for (size_t f = 0; f < folded.weights.size(); ++f) {
    const codegen::KernelWindow &w = folded.windows[f];
    for (int64_t c = 0; c < C; ++c)
      for (int64_t u = 0; u < w.kernelH; ++u)
        for (int64_t v = 0; v < w.kernelW; ++v) {
          const int64_t k = (c * w.kernelH + u) * w.kernelW + v;
          const int64_t i =
              model.index(c, static_cast<int>(u - w.padH), static_cast<int>(v - w.padW));
          model.weight[i] += folded.weights[f][k];
          model.live[i] |= folded.masks[f].empty() || folded.masks[f][k];
        }
  }

  // Each packaged branch window must lie inside one of the layer's (merging
  // only adds a window to a larger one; trimming only shrinks).
  for (size_t p = 0; p < s.branches.size(); ++p) {
    const codegen::Branch &pb = s.branches[p];
    bool contained = false;
    for (const ExportedBranch &b : layer.branches)
      contained |= pb.padH <= b.padH && pb.kernelH - 1 - pb.padH <= b.kernelH - 1 - b.padH &&
                   pb.padW <= b.padW && pb.kernelW - 1 - pb.padW <= b.kernelW - 1 - b.padW;
    if (!contained)
      return what + ": its branch " + std::to_string(p) + " is " +
             windowText(pb.kernelH, pb.kernelW, pb.padH, pb.padW) +
             ", which lies in no branch of the layer (" + layerWindows + ")" + kFix;
  }
  if (op.weights.size() != s.branches.size() ||
      std::any_of(op.weights.begin(), op.weights.end(), [](const auto &w) { return w.empty(); }))
    return what + ": it holds no constant weights (export them as constants)" + std::string(kFix);
  if (!op.table)
    return what + ": it builds its tap table at run time (its masks were not constants)" +
           std::string(kFix);

  // The package's taps and weights on the same window.
  EffectiveKernel package(C, rh, rw);
  std::vector<uint8_t> tableLive(package.weight.size(), 0), denseCover(package.weight.size(), 0);
  for (size_t p = 0; p < s.branches.size(); ++p) {
    const codegen::Branch &pb = s.branches[p];
    const std::vector<float> &w = op.weights[p];
    auto add = [&](int64_t c, int u, int v, std::vector<uint8_t> &mark) {
      const int64_t i = package.index(c, u - pb.padH, v - pb.padW);
      package.weight[i] += w[(c * pb.kernelH + u) * pb.kernelW + v];
      mark[i] = 1;
    };
    for (int64_t c = 0; c < C; ++c) {
      if (pb.dense) {
        for (int u = 0; u < pb.kernelH; ++u)
          for (int v = 0; v < pb.kernelW; ++v)
            add(c, u, v, denseCover);
      } else {
        for (int64_t k = op.table->begin(static_cast<int>(p), c);
             k < op.table->end(static_cast<int>(p), c); ++k) {
          const int32_t tap = op.table->taps[k];
          add(c, codegen::TapTable::unpackRow(tap), codegen::TapTable::unpackCol(tap), tableLive);
        }
      }
    }
  }

  auto where = [&](int64_t i) {
    const int64_t span = (2 * rh + 1) * (2 * rw + 1);
    const int64_t c = i / span, r = i % span;
    return "channel " + std::to_string(c) + ", offset (" + std::to_string(r / (2 * rw + 1) - rh) +
           ", " + std::to_string(r % (2 * rw + 1) - rw) + ")";
  };
  // The masks: a tap the package computes (in its table, or a non-zero
  // weight of a dense-form branch, whose dead taps are zeroed weights) must
  // be live in the layer, and a live tap of the layer (of non-zero weight)
  // must be computed by the package.
  int64_t deadServed = 0, liveSkipped = 0, firstDead = -1, firstSkipped = -1;
  for (int64_t i = 0; i < static_cast<int64_t>(model.live.size()); ++i) {
    const bool served = tableLive[i] || (denseCover[i] && package.weight[i] != 0);
    if (served && !model.live[i] && deadServed++ == 0)
      firstDead = i;
    if (model.live[i] && model.weight[i] != 0 && !served && liveSkipped++ == 0)
      firstSkipped = i;
  }
  if (deadServed > 0 || liveSkipped > 0) {
    std::ostringstream os;
    os << what << ": it was built for other masks: ";
    if (deadServed > 0)
      os << deadServed << " of its taps are dead in the layer's masks (first: " << where(firstDead)
         << ")";
    if (deadServed > 0 && liveSkipped > 0)
      os << ", and ";
    if (liveSkipped > 0)
      os << liveSkipped
         << " live taps of the layer are missing from its tap table (first: " << where(firstSkipped)
         << ")";
    return os.str() + kFix;
  }

  double scale = 0;
  for (double v : model.weight)
    scale = std::max(scale, std::abs(v));
  const double limit = tolerance * std::max(scale, 1e-30);
  int64_t differ = 0, first = -1;
  double worst = 0;
  for (int64_t i = 0; i < static_cast<int64_t>(model.weight.size()); ++i) {
    const double d = std::abs(package.weight[i] - model.weight[i]);
    if (d > limit && differ++ == 0)
      first = i;
    worst = std::max(worst, d);
  }
  if (differ > 0) {
    std::ostringstream os;
    os << what << ": it was built from other weights: " << differ
       << " folded weights differ by more than " << tolerance << " of the largest (worst " << worst
       << "; first: " << where(first) << ", package " << package.weight[first] << ", layer "
       << model.weight[first] << ")";
    return os.str() + kFix;
  }
  for (int64_t c = 0; c < C; ++c) {
    const double packaged = s.hasBias && static_cast<int64_t>(op.bias.size()) == C ? op.bias[c] : 0;
    if (std::abs(packaged - modelBias[c]) > tolerance * std::max(scale, std::abs(modelBias[c]))) {
      std::ostringstream os;
      os << what << ": it was built from other BatchNorm statistics or bias: the folded bias of "
         << "channel " << c << " is " << packaged << " in the package, " << modelBias[c]
         << " in the layer";
      return os.str() + kFix;
    }
  }
  return "";
}

#ifdef SLAK_MODELS_WITH_RUNTIME

DeployReport attachKernelPackage(Classifier &model, const std::string &dir,
                                 const DeployOptions &options) {
  std::shared_ptr<KernelPackageModule> package;
  try {
    package = load_kernel_package(dir);
  } catch (const c10::Error &e) {
    throw std::runtime_error(e.what_without_backtrace());
  }
  const std::vector<ExportedLayer> layers = exportLargeKernelLayers(model, options.imageSize);
  const codegen::KernelPackage &pkg = package->package();
  std::vector<std::string> errors;
  std::set<std::string> matched;
  for (const ExportedLayer &layer : layers) {
    const codegen::PackagedOp *op = pkg.find(layer.path);
    if (!op) {
      std::string names;
      for (const codegen::PackagedOp &o : pkg.ops)
        names += (names.empty() ? "" : ", ") + o.name;
      errors.push_back("kernel package " + dir + " has no op for layer " + layer.path +
                       " (its ops: " + (names.empty() ? "none" : names) +
                       "; ops are named after their slak-export function or location: a module "
                       "not written by slak-export, or whose functions were renamed, gives "
                       "lk_conv_<i>)" +
                       kFix);
      continue;
    }
    matched.insert(op->name);
    std::string error = checkPackagedOp(*op, layer, options.tolerance);
    if (!error.empty())
      errors.push_back(std::move(error));
  }
  for (const codegen::PackagedOp &o : pkg.ops)
    if (!matched.count(o.name))
      errors.push_back("kernel package " + dir + " op '" + o.name +
                       "' matches no large-kernel layer of model " + model.config().name +
                       ": the package was built for another model" + kFix);
  if (!errors.empty()) {
    std::string message = "refusing kernel package " + dir + ": " + errors.front();
    if (errors.size() > 1)
      message += " (and " + std::to_string(errors.size() - 1) + " more problems)";
    throw std::runtime_error(message);
  }

  DeployReport report;
  report.package = dir;
  for (auto &[path, layer] : largeKernelLayers(model)) {
    const std::string name = path, backend = options.backend;
    layer->setEvalForward([package, name, backend](const torch::Tensor &x) {
      return package->forward(name, x, {}, std::nullopt, {}, backend);
    });
    report.layers.push_back(path);
  }
  return report;
}

#else

DeployReport attachKernelPackage(Classifier &, const std::string &dir, const DeployOptions &) {
  throw std::runtime_error("cannot serve kernel package " + dir +
                           ": this build has no slak runtime (slak_runtime was not built with "
                           "LibTorch)");
}

#endif // SLAK_MODELS_WITH_RUNTIME

void detachKernelPackage(Classifier &model) {
  for (auto &[path, layer] : largeKernelLayers(model))
    layer->setEvalForward(nullptr);
}

} // namespace slak::models

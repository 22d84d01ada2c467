#include "runtime/LkConv.h"

#include <ATen/ATen.h>
#include <ATen/core/ivalue.h>
#include <torch/csrc/autograd/custom_function.h>
#include <torch/library.h>

#include <list>
#include <mutex>
#include <sstream>

#include "codegen/BufferLayout.h"
#include "runtime/LayerTaps.h"
#include "runtime/LkConvBackend.h"

namespace slak {
namespace {

using runtime::BackendKind;
using runtime::LayerTaps;
using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

std::string shapeText(const at::Tensor &t) {
  std::ostringstream os;
  os << t.sizes();
  return os.str();
}

const char *dtypeText(const at::Tensor &t) { return c10::toString(t.scalar_type()); }

codegen::ElementType elementType(at::ScalarType type) {
  switch (type) {
  case at::kFloat:
    return codegen::ElementType::F32;
  case at::kHalf:
    return codegen::ElementType::F16;
  case at::kBFloat16:
    return codegen::ElementType::BF16;
  default:
    TORCH_CHECK(false, "slak::lk_conv: unsupported dtype ", c10::toString(type));
  }
}

/// Checks everything about the arguments that does not need the backend.
void checkArguments(const at::Tensor &x, at::TensorList weights, at::TensorList masks,
                    const std::optional<at::Tensor> &bias, const LkConvOptions &options) {
  TORCH_CHECK(x.defined(), "slak::lk_conv: x is undefined, expected a 4-D NCHW tensor");
  TORCH_CHECK(x.dim() == 4, "slak::lk_conv: x has rank ", x.dim(), " (shape ", shapeText(x),
              "), expected a 4-D NCHW tensor");
  const at::ScalarType type = x.scalar_type();
  TORCH_CHECK(type == at::kFloat || type == at::kHalf || type == at::kBFloat16,
              "slak::lk_conv: x has dtype ", dtypeText(x), ", expected Float, Half or BFloat16");
  TORCH_CHECK(x.numel() > 0, "slak::lk_conv: x has shape ", shapeText(x),
              ", expected no empty dimension");
  const int64_t channels = x.size(1);
  TORCH_CHECK(!weights.empty(),
              "slak::lk_conv: weights is empty, expected one [C, 1, KH, KW] tensor per branch");
  for (size_t b = 0; b < weights.size(); ++b) {
    const at::Tensor &w = weights[b];
    TORCH_CHECK(w.defined(), "slak::lk_conv: weights[", b, "] is undefined");
    TORCH_CHECK(w.dim() == 4 && w.size(1) == 1, "slak::lk_conv: weights[", b, "] has shape ",
                shapeText(w), ", expected [C, 1, KH, KW] (a depthwise weight)");
    TORCH_CHECK(w.size(0) == channels, "slak::lk_conv: weights[", b, "] has ", w.size(0),
                " channels (shape ", shapeText(w), "), expected ", channels, " (x has shape ",
                shapeText(x), ")");
    TORCH_CHECK(w.size(2) > 0 && w.size(3) > 0 && w.size(2) % 2 == 1 && w.size(3) % 2 == 1,
                "slak::lk_conv: weights[", b, "] has kernel ", w.size(2), "x", w.size(3),
                ", expected odd sizes");
    TORCH_CHECK(w.scalar_type() == type, "slak::lk_conv: weights[", b, "] has dtype ", dtypeText(w),
                ", expected ", dtypeText(x), " (the dtype of x)");
    TORCH_CHECK(w.device() == x.device(), "slak::lk_conv: weights[", b, "] is on ",
                w.device().str(), ", expected ", x.device().str(), " (the device of x)");
  }
  if (!options.taps) {
    TORCH_CHECK(masks.empty() || masks.size() == weights.size(), "slak::lk_conv: masks has ",
                masks.size(), " entries, expected ", weights.size(),
                " (one per branch, undefined for dense) or none");
    for (size_t b = 0; b < masks.size(); ++b)
      TORCH_CHECK(!masks[b].defined() || masks[b].sizes() == weights[b].sizes(),
                  "slak::lk_conv: masks[", b, "] has shape ", shapeText(masks[b]), ", expected ",
                  shapeText(weights[b]), " (the shape of weights[", b, "])");
  }
  if (bias && bias->defined()) {
    const at::Tensor &t = *bias;
    TORCH_CHECK(t.dim() == 1 && t.size(0) == channels, "slak::lk_conv: bias has shape ",
                shapeText(t), ", expected [", channels, "] (one per channel of x)");
    TORCH_CHECK(t.scalar_type() == type, "slak::lk_conv: bias has dtype ", dtypeText(t),
                ", expected ", dtypeText(x), " (the dtype of x)");
    TORCH_CHECK(t.device() == x.device(), "slak::lk_conv: bias is on ", t.device().str(),
                ", expected ", x.device().str(), " (the device of x)");
    TORCH_CHECK(!options.perBranch,
                "slak::lk_conv: a bias with per_branch outputs is ambiguous; fold it into the "
                "per-branch BatchNorm, or use summed outputs");
  }
  TORCH_CHECK(options.paddings.empty() || options.paddings.size() == weights.size(),
              "slak::lk_conv: padding has ", options.paddings.size(), " (padH, padW) pairs, ",
              "expected ", weights.size(), " (one per branch) or none for \"same\"");
}

std::vector<runtime::BranchWindow> windowsOf(at::TensorList weights) {
  std::vector<runtime::BranchWindow> windows;
  for (const at::Tensor &w : weights)
    windows.push_back({static_cast<int>(w.size(2)), static_cast<int>(w.size(3))});
  return windows;
}

std::shared_ptr<LayerTaps> buildTaps(at::TensorList weights, at::TensorList masks) {
  std::vector<codegen::BranchMask> bytes(weights.size());
  for (size_t b = 0; b < masks.size(); ++b) {
    if (!masks[b].defined())
      continue;
    const at::Tensor live = masks[b].detach().to(at::kCPU).ne(0).to(at::kByte).contiguous();
    const uint8_t *p = live.data_ptr<uint8_t>();
    bytes[b].assign(p, p + live.numel());
  }
  return std::make_shared<LayerTaps>(weights[0].size(0), windowsOf(weights), std::move(bytes));
}

/// Taps of recent mask sets, so that repeated calls with unchanged masks do
/// not read them again (masks on a GPU would sync). A mask set matches when
/// each mask is the same live tensor at the same version.
class TapsMemo {
public:
  std::shared_ptr<LayerTaps> get(at::TensorList weights, at::TensorList masks) {
    Key key;
    for (const at::Tensor &m : masks) {
      if (m.defined() && m.is_inference())
        return buildTaps(weights, masks); // no version counter: never reuse
      key.masks.push_back(
          m.defined()
              ? c10::weak_intrusive_ptr<c10::TensorImpl>(m.getIntrusivePtr())
              : c10::weak_intrusive_ptr<c10::TensorImpl>(c10::intrusive_ptr<c10::TensorImpl>()));
      key.versions.push_back(m.defined() ? m._version() : -1);
    }
    for (const auto &w : windowsOf(weights))
      key.windows.push_back({w.kernelH, w.kernelW});
    key.channels = weights[0].size(0);
    std::lock_guard<std::mutex> lock(mutex_);
    for (auto it = entries_.begin(); it != entries_.end(); ++it) {
      if (matches(it->first, key, masks)) {
        entries_.splice(entries_.begin(), entries_, it);
        return entries_.front().second;
      }
    }
    auto taps = buildTaps(weights, masks);
    entries_.emplace_front(std::move(key), taps);
    if (entries_.size() > 32)
      entries_.pop_back();
    return taps;
  }

private:
  struct Key {
    std::vector<c10::weak_intrusive_ptr<c10::TensorImpl>> masks;
    std::vector<int64_t> versions;
    std::vector<std::pair<int, int>> windows;
    int64_t channels = 0;
  };
  static bool matches(const Key &a, const Key &b, at::TensorList masks) {
    if (a.masks.size() != b.masks.size() || a.windows != b.windows || a.channels != b.channels ||
        a.versions != b.versions)
      return false;
    for (size_t i = 0; i < masks.size(); ++i) {
      c10::TensorImpl *now = masks[i].defined() ? masks[i].unsafeGetTensorImpl() : nullptr;
      if (a.masks[i]._unsafe_get_target() != now || (now && a.masks[i].expired()))
        return false;
    }
    return true;
  }
  std::mutex mutex_;
  std::list<std::pair<Key, std::shared_ptr<LayerTaps>>> entries_;
};

/// What the autograd node keeps besides tensors.
struct LkConvPlan : torch::CustomClassHolder {
  std::shared_ptr<runtime::LkConvKernel> kernel;
  std::shared_ptr<LayerTaps> taps;
  bool xGrad = false, weightGrad = false, biasGrad = false;
};

[[noreturn]] void rethrow(const char *where, const std::exception &e) {
  TORCH_CHECK(false, "slak::lk_conv ", where, ": ", e.what());
}

at::Tensor flatWeights(at::TensorList weights) {
  std::vector<at::Tensor> flat;
  for (const at::Tensor &w : weights)
    flat.push_back(w.reshape({-1}));
  return flat.size() == 1 ? flat[0].contiguous() : at::cat(flat);
}

struct LkConvFunction : public torch::autograd::Function<LkConvFunction> {
  static at::Tensor forward(AutogradContext *ctx, const at::Tensor &x, at::TensorList weights,
                            const std::optional<at::Tensor> &bias,
                            const c10::intrusive_ptr<LkConvPlan> &plan) {
    const codegen::KernelSpec &spec = plan->kernel->spec();
    const at::Tensor xc = x.contiguous();
    const at::Tensor flat = flatWeights(weights);
    const at::Tensor biasc = bias && bias->defined() ? bias->contiguous() : at::Tensor();
    const int64_t n = x.size(0), ho = spec.outHeight(x.size(2)), wo = spec.outWidth(x.size(3));
    std::vector<int64_t> shape = {n, spec.channels, ho, wo};
    if (spec.perBranchOutputs)
      shape.insert(shape.begin(), static_cast<int64_t>(spec.branches.size()));
    at::Tensor y = at::empty(shape, x.options());
    try {
      plan->kernel->forward(xc, flat, biasc, *plan->taps, y);
    } catch (const c10::Error &) {
      throw;
    } catch (const std::exception &e) {
      rethrow("forward", e);
    }
    plan->xGrad = x.requires_grad();
    plan->weightGrad = false;
    for (const at::Tensor &w : weights)
      plan->weightGrad |= w.requires_grad();
    plan->biasGrad = biasc.defined() && bias->requires_grad();
    ctx->save_for_backward({xc, flat});
    ctx->saved_data["plan"] = c10::IValue::make_capsule(plan);
    return y;
  }

  static variable_list backward(AutogradContext *ctx, variable_list grads) {
    auto plan = c10::static_intrusive_pointer_cast<LkConvPlan>(ctx->saved_data["plan"].toCapsule());
    const codegen::KernelSpec &spec = plan->kernel->spec();
    const int numBranches = static_cast<int>(spec.branches.size());
    variable_list out(static_cast<size_t>(numBranches) + 3);
    const at::Tensor &grad = grads[0];
    if (!grad.defined())
      return out;
    const auto saved = ctx->get_saved_variables();
    const at::Tensor &x = saved[0], &flat = saved[1];
    const at::Tensor dy = grad.to(x.scalar_type()).contiguous();
    try {
      if (plan->xGrad) {
        at::Tensor dx = at::empty(x.sizes(), x.options());
        plan->kernel->backwardData(dy, flat, *plan->taps, dx);
        out[0] = dx;
      }
      if (plan->weightGrad) {
        at::Tensor dw = at::empty({codegen::weightCount(spec)}, x.options());
        plan->kernel->backwardWeight(x, dy, *plan->taps, dw);
        for (int b = 0; b < numBranches; ++b) {
          const codegen::Branch &br = spec.branches[b];
          out[1 + b] = dw.narrow(0, codegen::weightOffset(spec, b), spec.channels * br.windowSize())
                           .view({spec.channels, 1, br.kernelH, br.kernelW});
        }
      }
    } catch (const c10::Error &) {
      throw;
    } catch (const std::exception &e) {
      rethrow("backward", e);
    }
    if (plan->biasGrad)
      out[1 + numBranches] = dy.sum({0, 2, 3}, false, at::kFloat).to(x.scalar_type());
    return out;
  }
};

} // namespace

std::shared_ptr<runtime::LayerTaps> make_layer_taps(at::TensorList weights, at::TensorList masks) {
  TORCH_CHECK(!weights.empty(), "slak::make_layer_taps: weights is empty");
  const at::Tensor probe = at::empty({1, weights[0].size(0), 1, 1}, weights[0].options());
  checkArguments(probe, weights, masks, std::nullopt, LkConvOptions{});
  return buildTaps(weights, masks);
}

at::Tensor lk_conv(const at::Tensor &x, at::TensorList weights, at::TensorList masks,
                   const std::optional<at::Tensor> &bias, const LkConvOptions &options) {
  checkArguments(x, weights, masks, bias, options);
  const BackendKind backend =
      runtime::resolveBackend(runtime::parseBackendKind(options.backend), x.device());

  std::shared_ptr<LayerTaps> taps = options.taps;
  if (taps) {
    bool fits =
        taps->numBranches() == static_cast<int>(weights.size()) && taps->channels() == x.size(1);
    for (size_t b = 0; fits && b < weights.size(); ++b)
      fits = taps->windows()[b].kernelH == weights[b].size(2) &&
             taps->windows()[b].kernelW == weights[b].size(3);
    TORCH_CHECK(fits, "slak::lk_conv: options.taps were built for other weights (",
                taps->numBranches(), " branches of ", taps->channels(),
                " channels); rebuild them with make_layer_taps");
  } else if (masks.empty()) {
    static TapsMemo dense;
    taps = dense.get(weights, {});
  } else {
    static TapsMemo memo;
    taps = memo.get(weights, masks);
  }

  codegen::KernelSpec spec;
  spec.channels = x.size(1);
  spec.height = x.size(2);
  spec.width = x.size(3);
  for (size_t b = 0; b < weights.size(); ++b) {
    codegen::Branch branch = codegen::Branch::same(static_cast<int>(weights[b].size(2)),
                                                   static_cast<int>(weights[b].size(3)),
                                                   taps->dense(static_cast<int>(b)));
    if (!options.paddings.empty()) {
      branch.padH = static_cast<int>(options.paddings[b].first);
      branch.padW = static_cast<int>(options.paddings[b].second);
    }
    spec.branches.push_back(branch);
  }
  spec.perBranchOutputs = options.perBranch;
  spec.hasBias = bias && bias->defined();
  spec.denseWeightGrad = options.denseWeightGrad;
  spec.elementType = elementType(x.scalar_type());
  if (std::string err = spec.validate(); !err.empty())
    TORCH_CHECK(false, "slak::lk_conv: ", err, " (x has shape ", shapeText(x), ")");
  if (backend == BackendKind::Cuda || backend == BackendKind::OpenCL)
    spec.schedule = runtime::chooseSchedule(spec, taps->sparseDensity(),
                                            runtime::scheduleDeviceKey(backend, x.device()));

  std::shared_ptr<runtime::LkConvKernel> kernel;
  try {
    kernel = runtime::getKernel(backend, spec, x.device());
  } catch (const c10::Error &) {
    throw;
  } catch (const std::exception &e) {
    TORCH_CHECK(false, "slak::lk_conv: the ", runtime::backendKindName(backend),
                " backend failed to prepare the kernels: ", e.what());
  }
  return runtime::applyLkConv(x, weights, bias, std::move(kernel), std::move(taps));
}

at::Tensor runtime::applyLkConv(const at::Tensor &x, at::TensorList weights,
                                const std::optional<at::Tensor> &bias,
                                std::shared_ptr<LkConvKernel> kernel,
                                std::shared_ptr<LayerTaps> taps) {
  auto plan = c10::make_intrusive<LkConvPlan>();
  plan->kernel = std::move(kernel);
  plan->taps = std::move(taps);
  return LkConvFunction::apply(x, weights, bias, plan);
}

namespace {

at::Tensor lkConvOp(const at::Tensor &x, at::TensorList weights,
                    const c10::List<std::optional<at::Tensor>> &masks,
                    const std::optional<at::Tensor> &bias, bool perBranch, bool denseWeightGrad,
                    at::IntArrayRef padding, c10::string_view backend) {
  std::vector<at::Tensor> maskList;
  for (const std::optional<at::Tensor> &m : masks)
    maskList.push_back(m.has_value() ? *m : at::Tensor());
  LkConvOptions options;
  options.perBranch = perBranch;
  options.denseWeightGrad = denseWeightGrad;
  options.backend = std::string(backend);
  TORCH_CHECK(padding.size() % 2 == 0, "slak::lk_conv: padding has ", padding.size(),
              " values, expected pairs [ph_0, pw_0, ph_1, pw_1, ...] or none");
  for (size_t i = 0; i + 1 < padding.size(); i += 2)
    options.paddings.emplace_back(padding[i], padding[i + 1]);
  return lk_conv(x, weights, maskList, bias, options);
}

} // namespace
} // namespace slak

TORCH_LIBRARY(slak, m) {
  m.def("lk_conv(Tensor x, Tensor[] weights, Tensor?[] masks, Tensor? bias=None, "
        "bool per_branch=False, bool dense_weight_grad=False, int[] padding=[], "
        "str backend=\"auto\") -> Tensor");
}

TORCH_LIBRARY_IMPL(slak, CompositeImplicitAutograd, m) { m.impl("lk_conv", &slak::lkConvOp); }

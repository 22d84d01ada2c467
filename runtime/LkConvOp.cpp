#include "runtime/LkConvOp.h"

#include <ATen/ATen.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <ATen/core/ivalue.h>
#include <torch/csrc/autograd/custom_function.h>
#include <torch/library.h>

#include <list>
#include <mutex>
#include <sstream>
#include <unordered_map>

#include "codegen/BufferLayout.h"
#include "runtime/LayerTaps.h"
#include "runtime/LkConvBackend.h"

namespace slak {
namespace {

using runtime::BackendKind;
using runtime::LayerTaps;
using torch::autograd::AutogradContext;
using torch::autograd::variable_list;
using MaskList = c10::List<std::optional<at::Tensor>>;

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

std::vector<at::Tensor> maskVector(const MaskList &masks) {
  std::vector<at::Tensor> out;
  for (const std::optional<at::Tensor> &m : masks)
    out.push_back(m.has_value() ? *m : at::Tensor());
  return out;
}

/// The op's arguments other than the tensors, as the kernels read them.
struct CallOptions {
  bool perBranch = false;
  bool denseWeightGrad = false;
  std::vector<std::pair<int64_t, int64_t>> paddings;
  std::string backend = "auto";
};

CallOptions callOptions(bool perBranch, bool denseWeightGrad, at::IntArrayRef padding,
                        c10::string_view backend) {
  CallOptions o;
  o.perBranch = perBranch;
  o.denseWeightGrad = denseWeightGrad;
  o.backend = std::string(backend);
  TORCH_CHECK(padding.size() % 2 == 0, "slak::lk_conv: padding has ", padding.size(),
              " values, expected pairs [ph_0, pw_0, ph_1, pw_1, ...] or none");
  for (size_t i = 0; i + 1 < padding.size(); i += 2)
    o.paddings.emplace_back(padding[i], padding[i + 1]);
  return o;
}

/// Checks everything about the arguments that does not need the backend.
void checkArguments(const at::Tensor &x, at::TensorList weights, at::TensorList masks,
                    const at::Tensor &bias, const CallOptions &options) {
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
  TORCH_CHECK(masks.empty() || masks.size() == weights.size(), "slak::lk_conv: masks has ",
              masks.size(), " entries, expected ", weights.size(),
              " (one per branch, undefined for dense) or none");
  for (size_t b = 0; b < masks.size(); ++b)
    TORCH_CHECK(!masks[b].defined() || masks[b].sizes() == weights[b].sizes(),
                "slak::lk_conv: masks[", b, "] has shape ", shapeText(masks[b]), ", expected ",
                shapeText(weights[b]), " (the shape of weights[", b, "])");
  if (bias.defined()) {
    TORCH_CHECK(bias.dim() == 1 && bias.size(0) == channels, "slak::lk_conv: bias has shape ",
                shapeText(bias), ", expected [", channels, "] (one per channel of x)");
    TORCH_CHECK(bias.scalar_type() == type, "slak::lk_conv: bias has dtype ", dtypeText(bias),
                ", expected ", dtypeText(x), " (the dtype of x)");
    TORCH_CHECK(bias.device() == x.device(), "slak::lk_conv: bias is on ", bias.device().str(),
                ", expected ", x.device().str(), " (the device of x)");
    TORCH_CHECK(!options.perBranch,
                "slak::lk_conv: a bias with per_branch outputs is ambiguous; fold it into the "
                "per-branch BatchNorm, or use summed outputs");
  }
  TORCH_CHECK(options.paddings.empty() || options.paddings.size() == weights.size(),
              "slak::lk_conv: padding has ", options.paddings.size(), " (padH, padW) pairs, ",
              "expected ", weights.size(), " (one per branch) or none for \"same\"");
}

std::vector<codegen::KernelWindow> windowsOf(at::TensorList weights) {
  std::vector<codegen::KernelWindow> windows;
  for (const at::Tensor &w : weights)
    windows.push_back({static_cast<int>(w.size(2)), static_cast<int>(w.size(3))});
  return windows;
}

std::shared_ptr<LayerTaps> buildTaps(at::TensorList weights, at::TensorList masks) {
  std::vector<codegen::BranchMask> bytes(weights.size());
  for (size_t b = 0; b < masks.size(); ++b) {
    if (!masks[b].defined())
      continue;
    const at::Tensor live = live_mask(masks[b]);
    const uint8_t *p = live.data_ptr<uint8_t>();
    bytes[b].assign(p, p + live.numel());
  }
  return std::make_shared<LayerTaps>(weights[0].size(0), windowsOf(weights), std::move(bytes));
}

/// The taps of every mask set in use, so that calls with unchanged masks do
/// not read them again (masks on a GPU would sync; a model calls each layer
/// with the same mask tensors every step, its backward again). A mask set
/// matches when each mask is the same live tensor at the same version and the
/// windows and channels agree. Entries whose masks died are dropped.
class TapsMemo {
public:
  std::shared_ptr<LayerTaps> get(at::TensorList weights, at::TensorList masks) {
    bool anyMask = false;
    for (const at::Tensor &m : masks) {
      if (m.defined() && m.is_inference())
        return buildTaps(weights, masks); // no version counter: never reuse
      anyMask |= m.defined();
    }
    Key key;
    key.channels = weights[0].size(0);
    for (const auto &w : windowsOf(weights))
      key.windows.push_back({w.kernelH, w.kernelW});
    if (anyMask)
      for (const at::Tensor &m : masks) {
        key.masks.push_back(m.defined() ? m.unsafeGetTensorImpl() : nullptr);
        key.versions.push_back(m.defined() ? m._version() : -1);
      }
    const size_t hash = hashOf(key);
    std::lock_guard<std::mutex> lock(mutex_);
    auto range = entries_.equal_range(hash);
    for (auto it = range.first; it != range.second; ++it)
      if (it->second.key == key && alive(it->second))
        return it->second.taps;
    // Masks die at every mask update of a sparse trainer: drop their entries
    // (and the device copies of their taps) regularly.
    if (++insertsSincePrune_ >= kPruneEvery)
      prune();
    Entry entry{key, {}, buildTaps(weights, anyMask ? masks : at::TensorList())};
    for (const at::Tensor &m : masks)
      if (m.defined())
        entry.alive.emplace_back(m.getIntrusivePtr());
    auto taps = entry.taps;
    entries_.emplace(hash, std::move(entry));
    return taps;
  }

private:
  static constexpr size_t kPruneEvery = 32;
  static constexpr size_t kMaxEntries = 4096;
  struct Key {
    std::vector<const c10::TensorImpl *> masks;
    std::vector<int64_t> versions;
    std::vector<std::pair<int, int>> windows;
    int64_t channels = 0;
    bool operator==(const Key &o) const {
      return masks == o.masks && versions == o.versions && windows == o.windows &&
             channels == o.channels;
    }
  };
  struct Entry {
    Key key;
    std::vector<c10::weak_intrusive_ptr<c10::TensorImpl>> alive;
    std::shared_ptr<LayerTaps> taps;
  };
  static size_t hashOf(const Key &k) {
    size_t h = std::hash<int64_t>()(k.channels);
    auto mix = [&h](size_t v) { h ^= v + 0x9e3779b97f4a7c15ULL + (h << 6) + (h >> 2); };
    for (const auto *m : k.masks)
      mix(std::hash<const void *>()(m));
    for (int64_t v : k.versions)
      mix(std::hash<int64_t>()(v));
    for (const auto &w : k.windows)
      mix(std::hash<int64_t>()(w.first * 100003 + w.second));
    return h;
  }
  /// Whether the masks the entry was built from still live (a freed mask's
  /// address may come back for another tensor).
  static bool alive(const Entry &e) {
    for (const auto &w : e.alive)
      if (w.expired())
        return false;
    return true;
  }
  void prune() {
    insertsSincePrune_ = 0;
    for (auto it = entries_.begin(); it != entries_.end();)
      it = alive(it->second) ? std::next(it) : entries_.erase(it);
    if (entries_.size() >= kMaxEntries)
      entries_.clear();
  }
  size_t insertsSincePrune_ = 0;
  std::mutex mutex_;
  std::unordered_multimap<size_t, Entry> entries_;
};

TapsMemo &tapsMemo() {
  static TapsMemo memo;
  return memo;
}

[[noreturn]] void rethrow(const char *where, const std::exception &e) {
  TORCH_CHECK(false, "slak::lk_conv ", where, ": ", e.what());
}

/// The branches' weights as one flat tensor, branch after branch: a view
/// where they already lie so in one storage (LKConv2d keeps them there),
/// else a concatenated copy.
at::Tensor flatWeights(at::TensorList weights) {
  bool adjacent = true;
  int64_t total = 0;
  for (const at::Tensor &w : weights) {
    adjacent = adjacent && w.is_contiguous() && w.storage().is_alias_of(weights[0].storage()) &&
               w.storage_offset() == weights[0].storage_offset() + total;
    total += w.numel();
  }
  if (adjacent)
    return weights[0].as_strided({total}, {1}, weights[0].storage_offset());
  std::vector<at::Tensor> flat;
  for (const at::Tensor &w : weights)
    flat.push_back(w.reshape({-1}));
  return flat.size() == 1 ? flat[0].contiguous() : at::cat(flat);
}

/// Whether a 4-D tensor is laid out channels-last (NHWC in memory) rather
/// than NCHW; the op answers in the layout it is given. python/slak/_meta.py
/// applies the same rule to fake tensors.
bool channelsLast(const at::Tensor &t) {
  return t.dim() == 4 && !t.is_contiguous() && t.is_contiguous(at::MemoryFormat::ChannelsLast);
}

/// An NCHW-contiguous result [.., C, H, W] in the memory format of `like`:
/// channels-last keeps C innermost (for per-branch outputs, every branch
/// y[b] is a channels-last 4-D tensor).
at::Tensor inLayoutOf(const at::Tensor &y, const at::Tensor &like) {
  if (!channelsLast(like))
    return y;
  if (y.dim() == 4)
    return y.contiguous(at::MemoryFormat::ChannelsLast);
  if (y.permute({0, 1, 3, 4, 2}).is_contiguous()) // written channels-last already
    return y;
  at::Tensor out = at::empty({y.size(0), y.size(1), y.size(3), y.size(4), y.size(2)}, y.options());
  out.copy_(y.permute({0, 1, 3, 4, 2}));
  return out.permute({0, 1, 4, 2, 3});
}

/// Whether `kernel` takes x's channels-last tensors as they are: the Halide
/// CPU backend reads and writes NHWC memory (converting inside where its
/// schedule wants NCHW), and GPU kernels built with the NHWC layout do; the
/// others get NCHW copies, and their results are laid out like x afterwards.
bool keepsChannelsLast(const at::Tensor &x, const runtime::LkConvKernel &kernel) {
  return channelsLast(x) && (kernel.kind() == BackendKind::Cpu || kernel.spec().channelsLast());
}

/// An image tensor (x, dy) laid out as `kernel` reads it.
at::Tensor forKernel(const at::Tensor &t, const at::Tensor &x,
                     const runtime::LkConvKernel &kernel) {
  if (!keepsChannelsLast(x, kernel))
    return t.contiguous();
  if (t.dim() == 4)
    return t.contiguous(at::MemoryFormat::ChannelsLast);
  // Per-branch [B, N, C, H, W]: each branch's image channels-last.
  return t.permute({0, 1, 3, 4, 2}).contiguous().permute({0, 1, 4, 2, 3});
}

/// An output image [.., C, H, W] for `kernel` to write: channels-last (per
/// branch) where it keeps x's channels-last layout, else NCHW.
at::Tensor kernelOutput(at::IntArrayRef shape, const at::Tensor &x,
                        const runtime::LkConvKernel &kernel) {
  if (!keepsChannelsLast(x, kernel))
    return at::empty(shape, x.options());
  if (shape.size() == 4)
    return at::empty(shape, x.options().memory_format(at::MemoryFormat::ChannelsLast));
  return at::empty({shape[0], shape[1], shape[3], shape[4], shape[2]}, x.options())
      .permute({0, 1, 4, 2, 3});
}

/// What one call of the kernels needs: the live taps and the compiled kernel.
struct PreparedCall {
  std::shared_ptr<LayerTaps> taps;
  std::shared_ptr<runtime::LkConvKernel> kernel;
};

PreparedCall prepare(const at::Tensor &x, at::TensorList weights, at::TensorList masks,
                     bool hasBias, const CallOptions &options) {
  const BackendKind backend =
      runtime::resolveBackend(runtime::parseBackendKind(options.backend), x.device());
  PreparedCall call;
  call.taps = tapsMemo().get(weights, masks);

  codegen::KernelSpec spec;
  spec.channels = x.size(1);
  spec.height = x.size(2);
  spec.width = x.size(3);
  for (size_t b = 0; b < weights.size(); ++b) {
    codegen::Branch branch = codegen::Branch::same(static_cast<int>(weights[b].size(2)),
                                                   static_cast<int>(weights[b].size(3)),
                                                   call.taps->dense(static_cast<int>(b)));
    if (!options.paddings.empty()) {
      branch.padH = static_cast<int>(options.paddings[b].first);
      branch.padW = static_cast<int>(options.paddings[b].second);
    }
    spec.branches.push_back(branch);
  }
  spec.perBranchOutputs = options.perBranch;
  spec.hasBias = hasBias;
  spec.denseWeightGrad = options.denseWeightGrad;
  spec.elementType = elementType(x.scalar_type());
  if (std::string err = spec.validate(); !err.empty())
    TORCH_CHECK(false, "slak::lk_conv: ", err, " (x has shape ", shapeText(x), ")");
  if (backend == BackendKind::Cuda || backend == BackendKind::OpenCL) {
    // The GPU kernels are emitted for x's layout (channels-last: NHWC).
    spec.layout = channelsLast(x) ? codegen::DataLayout::NHWC : codegen::DataLayout::NCHW;
    spec.schedule = runtime::chooseSchedule(spec, call.taps->sparseDensity(),
                                            runtime::scheduleDeviceKey(backend, x.device()));
  }
  try {
    call.kernel = runtime::getKernel(backend, spec, x.device());
  } catch (const c10::Error &) {
    throw;
  } catch (const std::exception &e) {
    TORCH_CHECK(false, "slak::lk_conv: the ", runtime::backendKindName(backend),
                " backend failed to prepare the kernels: ", e.what());
  }
  return call;
}

// ------------------------------------------------------------------ kernels
// The device kernels of slak::lk_conv and slak::lk_conv_backward (CPU and
// CUDA dispatch keys; the backend option may send CPU tensors to OpenCL).
// They see real tensors: fake and meta tensors go to python/slak/_meta.py.

at::Tensor forwardOutput(const at::Tensor &x, const at::Tensor &weights, const at::Tensor &bias,
                         const PreparedCall &call) {
  const codegen::KernelSpec &spec = call.kernel->spec();
  const at::Tensor xc = forKernel(x, x, *call.kernel);
  const int64_t n = x.size(0), ho = spec.outHeight(x.size(2)), wo = spec.outWidth(x.size(3));
  std::vector<int64_t> shape = {n, spec.channels, ho, wo};
  if (spec.perBranchOutputs)
    shape.insert(shape.begin(), static_cast<int64_t>(spec.branches.size()));
  at::Tensor y = kernelOutput(shape, x, *call.kernel);
  try {
    call.kernel->forward(xc, weights, bias, *call.taps, y);
  } catch (const c10::Error &) {
    throw;
  } catch (const std::exception &e) {
    rethrow("forward", e);
  }
  return inLayoutOf(y, x);
}

/// dx (in x's layout; undefined unless outputMask[0]) and one dW per branch
/// (unless outputMask[1]) from dy, shaped like the output.
std::tuple<at::Tensor, std::vector<at::Tensor>>
backwardOutputs(const PreparedCall &call, const at::Tensor &x, const at::Tensor &xc,
                const at::Tensor &dy, const at::Tensor &flat, std::array<bool, 2> outputMask) {
  const codegen::KernelSpec &spec = call.kernel->spec();
  at::Tensor dx = at::empty({0}, x.options());
  std::vector<at::Tensor> dweights;
  try {
    if (outputMask[0]) {
      dx = kernelOutput(x.sizes(), x, *call.kernel);
      call.kernel->backwardData(dy, flat, *call.taps, dx);
      dx = inLayoutOf(dx, x);
    }
    if (outputMask[1]) {
      at::Tensor dw = at::empty({codegen::weightCount(spec)}, x.options());
      call.kernel->backwardWeight(xc, dy, *call.taps, dw);
      for (size_t b = 0; b < spec.branches.size(); ++b) {
        const codegen::Branch &br = spec.branches[b];
        dweights.push_back(dw.narrow(0, codegen::weightOffset(spec, static_cast<int>(b)),
                                     spec.channels * br.windowSize())
                               .view({spec.channels, 1, br.kernelH, br.kernelW})
                               .clone()); // outputs of an op must not alias each other
      }
    }
  } catch (const c10::Error &) {
    throw;
  } catch (const std::exception &e) {
    rethrow("backward", e);
  }
  return {dx, dweights};
}

at::Tensor lkConvKernel(const at::Tensor &x, at::TensorList weights, const MaskList &masks,
                        const std::optional<at::Tensor> &bias, bool perBranch, bool denseWeightGrad,
                        at::IntArrayRef padding, c10::string_view backend) {
  const CallOptions options = callOptions(perBranch, denseWeightGrad, padding, backend);
  const std::vector<at::Tensor> maskTensors = maskVector(masks);
  const at::Tensor b = bias && bias->defined() ? bias->contiguous() : at::Tensor();
  checkArguments(x, weights, maskTensors, b, options);
  const PreparedCall call = prepare(x, weights, maskTensors, b.defined(), options);
  return forwardOutput(x, flatWeights(weights), b, call);
}

std::tuple<at::Tensor, std::vector<at::Tensor>>
lkConvBackwardKernel(const at::Tensor &grad, const at::Tensor &x, at::TensorList weights,
                     const MaskList &masks, bool hasBias, bool perBranch, bool denseWeightGrad,
                     at::IntArrayRef padding, c10::string_view backend,
                     std::array<bool, 2> outputMask) {
  const CallOptions options = callOptions(perBranch, denseWeightGrad, padding, backend);
  const std::vector<at::Tensor> maskTensors = maskVector(masks);
  checkArguments(x, weights, maskTensors, at::Tensor(), options);
  const PreparedCall call = prepare(x, weights, maskTensors, hasBias, options);
  const codegen::KernelSpec &spec = call.kernel->spec();
  const at::Tensor xc = forKernel(x, x, *call.kernel);
  const at::Tensor dy = forKernel(grad.to(x.scalar_type()), x, *call.kernel);
  std::vector<int64_t> yShape = {x.size(0), spec.channels, spec.outHeight(x.size(2)),
                                 spec.outWidth(x.size(3))};
  if (perBranch)
    yShape.insert(yShape.begin(), static_cast<int64_t>(weights.size()));
  TORCH_CHECK(dy.sizes() == at::IntArrayRef(yShape), "slak::lk_conv_backward: grad has shape ",
              shapeText(dy), ", expected ", at::IntArrayRef(yShape), " (the output's shape)");
  return backwardOutputs(call, x, xc, dy, flatWeights(weights), outputMask);
}

// ----------------------------------------------------------------- autograd
// The Autograd kernel of slak::lk_conv: it calls the op below autograd and
// slak::lk_conv_backward through the dispatcher, and touches no data, so
// that AOTAutograd and torch.compile trace it with fake tensors and
// symbolic shapes (torch.library.opcheck's aot_dispatch tests).

const c10::TypedOperatorHandle<decltype(lkConvKernel)> &lkConvHandle() {
  static const auto handle = c10::Dispatcher::singleton()
                                 .findSchemaOrThrow("slak::lk_conv", "")
                                 .typed<decltype(lkConvKernel)>();
  return handle;
}

const c10::TypedOperatorHandle<decltype(lkConvBackwardKernel)> &lkConvBackwardHandle() {
  static const auto handle = c10::Dispatcher::singleton()
                                 .findSchemaOrThrow("slak::lk_conv_backward", "")
                                 .typed<decltype(lkConvBackwardKernel)>();
  return handle;
}

struct LkConvFunction : public torch::autograd::Function<LkConvFunction> {
  static at::Tensor forward(AutogradContext *ctx, const at::Tensor &x, at::TensorList weights,
                            const std::optional<at::Tensor> &bias, const MaskList &masks,
                            bool perBranch, bool denseWeightGrad, at::IntArrayRef padding,
                            c10::string_view backend) {
    at::Tensor y;
    {
      at::AutoDispatchBelowADInplaceOrView guard;
      y = lkConvHandle().call(x, weights, masks, bias, perBranch, denseWeightGrad, padding,
                              backend);
    }
    bool weightGrad = false;
    for (const at::Tensor &w : weights)
      weightGrad |= w.requires_grad();
    std::vector<at::Tensor> saved = {x};
    saved.insert(saved.end(), weights.begin(), weights.end());
    ctx->save_for_backward(saved);
    ctx->saved_data["masks"] = masks;
    ctx->saved_data["has_bias"] = bias.has_value() && bias->defined();
    ctx->saved_data["bias_grad"] = bias.has_value() && bias->defined() && bias->requires_grad();
    ctx->saved_data["x_grad"] = x.requires_grad();
    ctx->saved_data["weight_grad"] = weightGrad;
    ctx->saved_data["per_branch"] = perBranch;
    ctx->saved_data["dense_weight_grad"] = denseWeightGrad;
    ctx->saved_data["padding"] = padding.vec();
    ctx->saved_data["backend"] = std::string(backend);
    return y;
  }

  static variable_list backward(AutogradContext *ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const at::Tensor &x = saved[0];
    const std::vector<at::Tensor> weights(saved.begin() + 1, saved.end());
    const size_t numBranches = weights.size();
    // Gradients by argument: x, each weight, bias, then the five non-tensor
    // arguments (masks, per_branch, dense_weight_grad, padding, backend).
    variable_list out(numBranches + 7);
    const at::Tensor &grad = grads[0];
    if (!grad.defined())
      return out;
    const std::array<bool, 2> outputMask = {ctx->saved_data["x_grad"].toBool(),
                                            ctx->saved_data["weight_grad"].toBool()};
    const std::vector<int64_t> padding = ctx->saved_data["padding"].toIntVector();
    const std::string backend = ctx->saved_data["backend"].toStringRef();
    if (outputMask[0] || outputMask[1]) {
      auto [dx, dweights] = lkConvBackwardHandle().call(
          grad, x, weights, ctx->saved_data["masks"].toOptionalTensorList(),
          ctx->saved_data["has_bias"].toBool(), ctx->saved_data["per_branch"].toBool(),
          ctx->saved_data["dense_weight_grad"].toBool(), padding, backend, outputMask);
      if (outputMask[0])
        out[0] = dx;
      for (size_t b = 0; outputMask[1] && b < numBranches; ++b)
        out[1 + b] = dweights[b];
    }
    if (ctx->saved_data["bias_grad"].toBool())
      out[1 + numBranches] =
          grad.contiguous().sum({0, 2, 3}, false, at::kFloat).to(x.scalar_type());
    return out;
  }
};

at::Tensor lkConvAutograd(const at::Tensor &x, at::TensorList weights, const MaskList &masks,
                          const std::optional<at::Tensor> &bias, bool perBranch,
                          bool denseWeightGrad, at::IntArrayRef padding, c10::string_view backend) {
  return LkConvFunction::apply(x, weights, bias, masks, perBranch, denseWeightGrad, padding,
                               backend);
}

// ------------------------------------------------- kernels of a fixed build
// Kernel packages bring their own compiled kernel and taps (AOT): an autograd
// function over that kernel, outside the dispatcher.

struct PackagedKernelPlan : torch::CustomClassHolder {
  std::shared_ptr<runtime::LkConvKernel> kernel;
  std::shared_ptr<LayerTaps> taps;
  bool xGrad = false, weightGrad = false, biasGrad = false;
};

struct PackagedKernelFunction : public torch::autograd::Function<PackagedKernelFunction> {
  static at::Tensor forward(AutogradContext *ctx, const at::Tensor &x, at::TensorList weights,
                            const std::optional<at::Tensor> &bias,
                            const c10::intrusive_ptr<PackagedKernelPlan> &plan) {
    const at::Tensor flat = flatWeights(weights);
    const at::Tensor biasc = bias && bias->defined() ? bias->contiguous() : at::Tensor();
    const at::Tensor y = forwardOutput(x, flat, biasc, {plan->taps, plan->kernel});
    plan->xGrad = x.requires_grad();
    plan->weightGrad = false;
    for (const at::Tensor &w : weights)
      plan->weightGrad |= w.requires_grad();
    plan->biasGrad = biasc.defined() && bias->requires_grad();
    ctx->save_for_backward({x.contiguous(), flat});
    ctx->saved_data["plan"] = c10::IValue::make_capsule(plan);
    return y;
  }

  static variable_list backward(AutogradContext *ctx, variable_list grads) {
    auto plan =
        c10::static_intrusive_pointer_cast<PackagedKernelPlan>(ctx->saved_data["plan"].toCapsule());
    const codegen::KernelSpec &spec = plan->kernel->spec();
    const int numBranches = static_cast<int>(spec.branches.size());
    variable_list out(static_cast<size_t>(numBranches) + 3);
    const at::Tensor &grad = grads[0];
    if (!grad.defined())
      return out;
    const auto saved = ctx->get_saved_variables();
    const at::Tensor &x = saved[0], &flat = saved[1];
    const at::Tensor dy = grad.to(x.scalar_type()).contiguous();
    auto [dx, dweights] = backwardOutputs({plan->taps, plan->kernel}, x, x, dy, flat,
                                          {plan->xGrad, plan->weightGrad});
    if (plan->xGrad)
      out[0] = dx;
    for (int b = 0; plan->weightGrad && b < numBranches; ++b)
      out[1 + b] = dweights[b];
    if (plan->biasGrad)
      out[1 + numBranches] = dy.sum({0, 2, 3}, false, at::kFloat).to(x.scalar_type());
    return out;
  }
};

} // namespace

at::Tensor live_mask(const at::Tensor &mask) {
  return mask.detach().to(at::kCPU).ne(0).to(at::kByte).contiguous();
}

void check_lk_conv_arguments(const at::Tensor &x, at::TensorList weights, at::TensorList masks,
                             const std::optional<at::Tensor> &bias) {
  checkArguments(x, weights, masks, bias && bias->defined() ? *bias : at::Tensor(), CallOptions{});
}

std::shared_ptr<runtime::LayerTaps> make_layer_taps(at::TensorList weights, at::TensorList masks) {
  TORCH_CHECK(!weights.empty(), "slak::make_layer_taps: weights is empty");
  const at::Tensor probe = at::empty({1, weights[0].size(0), 1, 1}, weights[0].options());
  checkArguments(probe, weights, masks, at::Tensor(), CallOptions{});
  return tapsMemo().get(weights, masks);
}

at::Tensor lk_conv(const at::Tensor &x, at::TensorList weights, at::TensorList masks,
                   const std::optional<at::Tensor> &bias, const LkConvOptions &options) {
  MaskList maskList;
  for (const at::Tensor &m : masks)
    maskList.push_back(m.defined() ? std::optional<at::Tensor>(m) : std::nullopt);
  std::vector<int64_t> padding;
  for (const auto &[ph, pw] : options.paddings) {
    padding.push_back(ph);
    padding.push_back(pw);
  }
  static const auto op = c10::Dispatcher::singleton()
                             .findSchemaOrThrow("slak::lk_conv", "")
                             .typed<decltype(lkConvKernel)>();
  return op.call(x, weights, maskList, bias, options.perBranch, options.denseWeightGrad, padding,
                 options.backend);
}

at::Tensor runtime::applyLkConv(const at::Tensor &x, at::TensorList weights,
                                const std::optional<at::Tensor> &bias,
                                std::shared_ptr<LkConvKernel> kernel,
                                std::shared_ptr<LayerTaps> taps) {
  auto plan = c10::make_intrusive<PackagedKernelPlan>();
  plan->kernel = std::move(kernel);
  plan->taps = std::move(taps);
  return PackagedKernelFunction::apply(x, weights, bias, plan);
}

} // namespace slak

// The schema, the device kernels and the autograd kernel. Fake tensors (for
// torch.compile, torch.export and meta tensors) are python/slak/_meta.py's.
TORCH_LIBRARY(slak, m) {
  m.def("lk_conv(Tensor x, Tensor[] weights, Tensor?[] masks, Tensor? bias=None, "
        "bool per_branch=False, bool dense_weight_grad=False, int[] padding=[], "
        "str backend=\"auto\") -> Tensor");
  m.def("lk_conv_backward(Tensor grad, Tensor x, Tensor[] weights, Tensor?[] masks, "
        "bool has_bias, bool per_branch, bool dense_weight_grad, int[] padding, str backend, "
        "bool[2] output_mask) -> (Tensor, Tensor[])");
}

TORCH_LIBRARY_IMPL(slak, CPU, m) {
  m.impl("lk_conv", &slak::lkConvKernel);
  m.impl("lk_conv_backward", &slak::lkConvBackwardKernel);
}

TORCH_LIBRARY_IMPL(slak, CUDA, m) {
  m.impl("lk_conv", &slak::lkConvKernel);
  m.impl("lk_conv_backward", &slak::lkConvBackwardKernel);
}

TORCH_LIBRARY_IMPL(slak, Autograd, m) { m.impl("lk_conv", &slak::lkConvAutograd); }

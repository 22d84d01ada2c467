#include "runtime/KernelPackageLoader.h"

#include "codegen/FileKind.h"

#include <ATen/ATen.h>

#include <sstream>

#include "runtime/LayerTaps.h"
#include "runtime/LkConvOp.h"
#include "runtime/LkConvBackend.h"

namespace slak {

using runtime::BackendKind;

struct KernelPackageModule::OpState {
  const codegen::PackagedOp *op = nullptr;
  std::mutex mutex;
  std::shared_ptr<runtime::LayerTaps> tableTaps;
  std::map<std::string, std::vector<at::Tensor>> weights; // per device and dtype
  std::map<std::string, at::Tensor> bias;
};

namespace {

at::ScalarType scalarType(codegen::ElementType type) {
  switch (type) {
  case codegen::ElementType::F32:
    return at::kFloat;
  case codegen::ElementType::F16:
    return at::kHalf;
  case codegen::ElementType::BF16:
    return at::kBFloat16;
  }
  return at::kFloat;
}

std::string expectedInput(const codegen::KernelSpec &spec) {
  std::ostringstream os;
  os << "[N, " << spec.channels << ", " << (spec.height > 0 ? std::to_string(spec.height) : "H")
     << ", " << (spec.width > 0 ? std::to_string(spec.width) : "W") << "] "
     << c10::toString(scalarType(spec.elementType));
  return os.str();
}

std::vector<codegen::KernelWindow> windowsOf(const codegen::KernelSpec &spec) {
  std::vector<codegen::KernelWindow> windows;
  for (const codegen::Branch &b : spec.branches)
    windows.push_back(b.window());
  return windows;
}

} // namespace

KernelPackageModule::KernelPackageModule(codegen::KernelPackage package)
    : package_(std::move(package)) {
  for (const codegen::PackagedOp &op : package_.ops) {
    states_.push_back(std::make_unique<OpState>());
    states_.back()->op = &op;
  }
}

std::vector<std::string> KernelPackageModule::op_names() const {
  std::vector<std::string> names;
  for (const codegen::PackagedOp &op : package_.ops)
    names.push_back(op.name);
  return names;
}

KernelPackageModule::OpState &KernelPackageModule::state(const std::string &op) const {
  for (const auto &s : states_)
    if (s->op->name == op)
      return *s;
  std::string names;
  for (const codegen::PackagedOp &o : package_.ops)
    names += (names.empty() ? "" : ", ") + o.name;
  TORCH_CHECK(false, "slak: kernel package ", package_.directory, " has no op '", op,
              "'; its ops are: ", names.empty() ? "(none)" : names);
}

const codegen::KernelSpec &KernelPackageModule::spec(const std::string &op) const {
  return state(op).op->kernels.spec;
}

bool KernelPackageModule::has_weights(const std::string &op) const {
  const codegen::PackagedOp &o = *state(op).op;
  if (o.weights.size() != o.kernels.spec.branches.size())
    return false;
  for (const std::vector<float> &w : o.weights)
    if (w.empty())
      return false;
  return true;
}

at::Tensor KernelPackageModule::forward(const std::string &opName, const at::Tensor &x,
                                        at::TensorList weights,
                                        const std::optional<at::Tensor> &bias, at::TensorList masks,
                                        const std::string &backendName) {
  OpState &st = state(opName);
  const codegen::PackagedOp &op = *st.op;
  const codegen::KernelSpec &spec = op.kernels.spec;
  const std::string what = "slak: kernel package " + package_.directory + " op '" + op.name + "'";
  const int numBranches = static_cast<int>(spec.branches.size());

  TORCH_CHECK(x.defined() && x.dim() == 4, what, " was compiled for input ", expectedInput(spec),
              ", got x of rank ", x.defined() ? x.dim() : 0);
  const bool fits = x.size(1) == spec.channels && (spec.height <= 0 || x.size(2) == spec.height) &&
                    (spec.width <= 0 || x.size(3) == spec.width) &&
                    x.scalar_type() == scalarType(spec.elementType) && x.numel() > 0;
  TORCH_CHECK(fits, what, " was compiled for input ", expectedInput(spec), ", got x of shape ",
              x.sizes(), " ", c10::toString(x.scalar_type()),
              "; regenerate the package for this shape or use slak::lk_conv (JIT)");

  const BackendKind backend =
      runtime::resolveBackend(runtime::parseBackendKind(backendName), x.device());

  // Taps: the packaged table, or lk_conv's taps of the masks given now.
  std::shared_ptr<runtime::LayerTaps> taps;
  if (op.table) {
    TORCH_CHECK(masks.empty(), what, " has a packaged tap table; pass no masks");
    std::lock_guard<std::mutex> lock(st.mutex);
    if (!st.tableTaps)
      st.tableTaps =
          std::make_shared<runtime::LayerTaps>(spec.channels, windowsOf(spec), *op.table);
    taps = st.tableTaps;
  } else {
    TORCH_CHECK(masks.empty() || static_cast<int>(masks.size()) == numBranches, what, " has ",
                numBranches, " branches, got ", masks.size(), " masks");
    TORCH_CHECK(!spec.anySparse() || !masks.empty(), what,
                " builds its tap table at run time: pass one mask per branch");
    for (int b = 0; b < static_cast<int>(masks.size()); ++b) {
      const codegen::Branch &br = spec.branches[b];
      TORCH_CHECK(!masks[b].defined() || masks[b].numel() == spec.channels * br.windowSize(), what,
                  ": masks[", b, "] has shape ", masks[b].sizes(), ", expected [", spec.channels,
                  ", 1, ", br.kernelH, ", ", br.kernelW, "]");
      TORCH_CHECK(!masks[b].defined() || !br.dense, what, ": branch ", b,
                  " was compiled dense; its mask would be ignored. Regenerate the package "
                  "with the mask");
    }
  }

  // Weights and bias: given, else the packaged constants on x's device.
  const std::string placement = x.device().str() + "/" + c10::toString(x.scalar_type());
  std::vector<at::Tensor> w;
  if (!weights.empty()) {
    TORCH_CHECK(static_cast<int>(weights.size()) == numBranches, what, " has ", numBranches,
                " branches, got ", weights.size(), " weights");
    for (int b = 0; b < numBranches; ++b) {
      const codegen::Branch &br = spec.branches[b];
      TORCH_CHECK(weights[b].defined() &&
                      weights[b].sizes() ==
                          at::IntArrayRef({spec.channels, 1, br.kernelH, br.kernelW}),
                  what, ": weights[", b, "] has shape ",
                  weights[b].defined() ? weights[b].sizes() : at::IntArrayRef{}, ", expected [",
                  spec.channels, ", 1, ", br.kernelH, ", ", br.kernelW, "]");
      TORCH_CHECK(weights[b].scalar_type() == x.scalar_type() && weights[b].device() == x.device(),
                  what, ": weights[", b, "] is ", c10::toString(weights[b].scalar_type()), " on ",
                  weights[b].device().str(), ", expected ", c10::toString(x.scalar_type()), " on ",
                  x.device().str(), " (like x)");
    }
    w.assign(weights.begin(), weights.end());
  } else {
    TORCH_CHECK(has_weights(op.name), what,
                " holds no weights (they were not constants): pass one weight per branch");
    std::lock_guard<std::mutex> lock(st.mutex);
    auto it = st.weights.find(placement);
    if (it == st.weights.end()) {
      std::vector<at::Tensor> made;
      for (int b = 0; b < numBranches; ++b) {
        const codegen::Branch &br = spec.branches[b];
        made.push_back(at::tensor(at::ArrayRef<float>(op.weights[b]), at::kFloat)
                           .view({spec.channels, 1, br.kernelH, br.kernelW})
                           .to(x.device(), x.scalar_type()));
      }
      it = st.weights.emplace(placement, std::move(made)).first;
    }
    w = it->second;
  }
  std::optional<at::Tensor> b;
  if (bias && bias->defined()) {
    TORCH_CHECK(spec.hasBias, what, " was compiled without a bias; pass none");
    TORCH_CHECK(bias->dim() == 1 && bias->size(0) == spec.channels &&
                    bias->scalar_type() == x.scalar_type() && bias->device() == x.device(),
                what, ": bias has shape ", bias->sizes(), " ", c10::toString(bias->scalar_type()),
                " on ", bias->device().str(), ", expected [", spec.channels, "] ",
                c10::toString(x.scalar_type()), " on ", x.device().str());
    b = *bias;
  } else if (spec.hasBias) {
    TORCH_CHECK(!op.bias.empty(), what, " needs a bias and the package holds none: pass one");
    std::lock_guard<std::mutex> lock(st.mutex);
    auto it = st.bias.find(placement);
    if (it == st.bias.end())
      it = st.bias
               .emplace(placement, at::tensor(at::ArrayRef<float>(op.bias), at::kFloat)
                                       .to(x.device(), x.scalar_type()))
               .first;
    b = it->second;
  }

  check_lk_conv_arguments(x, w, masks, b);
  if (!taps)
    taps = make_layer_taps(w, masks);

  runtime::GpuKernelSource source;
  source.kernels = op.kernels;
  source.label = "kernel package " + package_.directory + " op " + op.name;
  source.source = backend == BackendKind::Cuda ? package_.cudaSource : package_.openclSource;
  std::shared_ptr<runtime::LkConvKernel> kernel;
  try {
    kernel = runtime::getKernel(backend, spec, x.device(), &source);
  } catch (const c10::Error &) {
    throw;
  } catch (const std::exception &e) {
    TORCH_CHECK(false, what, ": cannot prepare the ", runtime::backendKindName(backend),
                " kernels: ", e.what());
  }
  return runtime::applyLkConv(x, w, b, kernel, taps);
}

std::shared_ptr<KernelPackageModule> load_kernel_package(const std::string &dir) {
  // A checkpoint or image given as the package, or as its manifest: named
  // for what it is (the JSON parser would quote its first, binary byte).
  const std::string kind = codegen::describeFileKind(dir);
  TORCH_CHECK(kind.empty() || kind.rfind("a folder", 0) == 0, "slak::load_kernel_package: ", dir,
              " is ", kind,
              ", not a kernel package folder (slak-translate --emit-kernel-package -o DIR writes "
              "one)");
  const std::string manifest = codegen::describeFileKind(dir + "/manifest.json");
  TORCH_CHECK(manifest.empty() || manifest == "JSON text" || manifest == "a text file",
              "slak::load_kernel_package: ", dir, "/manifest.json is ", manifest,
              ", not the JSON manifest of a kernel package: rebuild the package (slak-translate "
              "--emit-kernel-package)");
  try {
    return std::make_shared<KernelPackageModule>(codegen::readKernelPackage(dir));
  } catch (const c10::Error &) {
    throw;
  } catch (const std::exception &e) {
    TORCH_CHECK(false, "slak::load_kernel_package: ", e.what());
  }
}

} // namespace slak

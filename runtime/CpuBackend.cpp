// The CPU backends: Halide pipelines (codegen/halide) where the build has
// them, else the reference oracle. Both compute in f32; f16/bf16 tensors are
// widened on the way in and rounded once on the way out, like the GPU
// kernels' stores.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include "codegen/BufferLayout.h"
#include "codegen/reference/Reference.h"
#include "runtime/CpuTensors.h"
#include "runtime/LkConvBackend.h"

#include "runtime/Files.h"
#include "runtime/Log.h"

#include <dlfcn.h>

#include <cstdlib>
#include <mutex>

namespace slak::runtime {
namespace {

using codegen::KernelSpec;

std::vector<float> toVector(const at::Tensor &t, int64_t offset, int64_t count) {
  const float *p = t.data_ptr<float>() + offset;
  return std::vector<float>(p, p + count);
}

class ReferenceKernel final : public LkConvKernel {
public:
  explicit ReferenceKernel(const KernelSpec &spec) : LkConvKernel(spec) {}
  BackendKind kind() const override { return BackendKind::Reference; }

  void forward(const at::Tensor &x, const at::Tensor &weights, const at::Tensor &bias,
               LayerTaps &taps, at::Tensor &y) override {
    const reference::Shape in = shape(x);
    const at::Tensor xf = cpu::asFloat(x);
    std::vector<float> biasValues;
    if (spec_.hasBias)
      biasValues = toVector(cpu::asFloat(bias), 0, spec_.channels);
    const auto outs = reference::forward(spec_, in, toVector(xf, 0, xf.numel()),
                                         branchWeights(weights), taps.masks(), biasValues);
    at::Tensor yf = cpu::floatTarget(y);
    float *dst = yf.data_ptr<float>();
    for (const std::vector<float> &o : outs)
      dst = std::copy(o.begin(), o.end(), dst);
    cpu::finish(y, yf);
  }

  void backwardData(const at::Tensor &dy, const at::Tensor &weights, LayerTaps &taps,
                    at::Tensor &dx) override {
    const reference::Shape in = shape(dx);
    const std::vector<float> result =
        reference::backwardData(spec_, in, splitDy(dy, in), branchWeights(weights), taps.masks());
    at::Tensor dxf = cpu::floatTarget(dx);
    std::copy(result.begin(), result.end(), dxf.data_ptr<float>());
    cpu::finish(dx, dxf);
  }

  void backwardWeight(const at::Tensor &x, const at::Tensor &dy, LayerTaps &taps,
                      at::Tensor &dw) override {
    const reference::Shape in = shape(x);
    const at::Tensor xf = cpu::asFloat(x);
    const reference::Weights grads = reference::backwardWeight(
        spec_, in, toVector(xf, 0, xf.numel()), splitDy(dy, in), taps.masks());
    at::Tensor dwf = cpu::floatTarget(dw);
    float *dst = dwf.data_ptr<float>();
    for (const std::vector<float> &g : grads)
      dst = std::copy(g.begin(), g.end(), dst);
    cpu::finish(dw, dwf);
  }

private:
  static reference::Shape shape(const at::Tensor &t) {
    return reference::Shape{t.size(0), t.size(1), t.size(2), t.size(3)};
  }
  reference::Weights branchWeights(const at::Tensor &weights) const {
    const at::Tensor wf = cpu::asFloat(weights);
    reference::Weights out;
    for (size_t b = 0; b < spec_.branches.size(); ++b)
      out.push_back(
          toVector(wf, codegen::weightOffset(spec_, static_cast<int>(b)),
                   static_cast<int64_t>(spec_.channels) * spec_.branches[b].windowSize()));
    return out;
  }
  std::vector<std::vector<float>> splitDy(const at::Tensor &dy, const reference::Shape &in) const {
    const at::Tensor dyf = cpu::asFloat(dy);
    const int64_t plane = codegen::outputPlaneCount(spec_, in.n, in.h, in.w);
    std::vector<std::vector<float>> out;
    const int parts = spec_.perBranchOutputs ? static_cast<int>(spec_.branches.size()) : 1;
    for (int b = 0; b < parts; ++b)
      out.push_back(toVector(dyf, b * plane, plane));
    return out;
  }
};

} // namespace

namespace {

using MakeHalideKernel = LkConvKernel *(*)(const KernelSpec &);

/// The Halide CPU backend lives in a plugin (libslak_cpu_halide.so next to
/// this library, or $SLAK_HALIDE_PLUGIN) opened with RTLD_LOCAL: Halide 14
/// brings LLVM 14, and with LLVM 14 in the global symbol scope the LLVM 15
/// inside PoCL (the OpenCL backend) binds to it and crashes. Loaded locally,
/// each LLVM sees only itself. Without the plugin the oracle runs.
MakeHalideKernel halidePlugin(std::string *why) {
  static std::once_flag once;
  static MakeHalideKernel make = nullptr;
  static std::string error;
  std::call_once(once, [] {
    std::string path, from;
    if (const char *env = std::getenv("SLAK_HALIDE_PLUGIN"); env && *env) {
      path = env;
      from = " (SLAK_HALIDE_PLUGIN; unset it to use the build's libslak_cpu_halide.so)";
    } else {
      Dl_info info{};
      if (dladdr(reinterpret_cast<void *>(&halidePlugin), &info) && info.dli_fname)
        path = joinPath(parentDirectory(info.dli_fname), "libslak_cpu_halide.so");
    }
    if (path.empty() || !fileExists(path)) {
      error = "there is no Halide plugin (" + (path.empty() ? std::string("path unknown") : path) +
              " does not exist" +
              (from.empty() ? ": this build has no Halide; configure with "
                              "-DSLAK_WITH_HALIDE=ON for speed)"
                            : ")" + from);
      return;
    }
    void *handle = ::dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (!handle) {
      const char *err = ::dlerror();
      error =
          "it cannot load the Halide plugin " + path + ": " + (err ? err : "unknown error") + from;
      return;
    }
    make = reinterpret_cast<MakeHalideKernel>(::dlsym(handle, "slak_make_halide_kernel"));
    if (!make)
      error = "the Halide plugin " + path + " lacks slak_make_halide_kernel" + from;
  });
  if (why)
    *why = error;
  return make;
}

} // namespace

const char *cpuBackendName() { return halidePlugin(nullptr) ? "halide" : "reference"; }

std::shared_ptr<LkConvKernel> makeReferenceKernel(const KernelSpec &spec) {
  return std::make_shared<ReferenceKernel>(spec);
}

std::shared_ptr<LkConvKernel> makeCpuKernel(const KernelSpec &spec) {
  std::string why;
  if (MakeHalideKernel make = halidePlugin(&why))
    return std::shared_ptr<LkConvKernel>(make(spec));
  logOnce("cpu-backend", "CPU backend: the reference oracle (slow), because " + why);
  return std::make_shared<ReferenceKernel>(spec);
}

} // namespace slak::runtime

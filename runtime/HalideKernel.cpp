// The Halide CPU backend, built as a plugin (libslak_cpu_halide.so) that
// CpuBackend.cpp opens with RTLD_LOCAL, so that Halide's LLVM 14 stays out of
// the global symbol scope (where it breaks the LLVM 15 inside PoCL). The
// pipelines are codegen/halide's; they compute in f32, so f16/bf16 tensors
// are widened on the way in and rounded once on the way out. Channels-last
// tensors stay channels-last where the schedule vectorises across channels
// (the pipelines read and write NHWC memory in place). The schedule
// is the tuning database's CPU choice for the spec on this host, else the
// per-spec default (per image size for specs with dynamic sizes). Compiled
// pipelines are kept in the kernel cache on disk (HostAot.h), so a later
// process loads them instead of compiling; SLAK_HALIDE_AOT=0 JIT-compiles
// every pipeline instead.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include "codegen/BufferLayout.h"
#include "codegen/halide/CpuLkConv.h"
#include "codegen/halide/CpuSchedule.h"
#include "codegen/halide/HostAot.h"
#include "runtime/CpuTensors.h"
#include "runtime/LkConvBackend.h"
#include "runtime/PipelineStoreOnDisk.h"

#include <cstdlib>
#include <cstring>

namespace slak::runtime {
namespace {

using codegen::KernelSpec;

/// Installs the kernel cache as the store of compiled pipelines, once.
void usePipelineStore() {
  static const bool installed = [] {
    const char *aot = std::getenv("SLAK_HALIDE_AOT");
    if (!(aot && std::strcmp(aot, "0") == 0))
      codegen::cpu::setPipelineStore(makePipelineStoreOnDisk(KernelCache::global()));
    return true;
  }();
  (void)installed;
}

int64_t planeCount(const KernelSpec &spec, const at::Tensor &x) {
  return codegen::outputPlaneCount(spec, x.size(0), x.size(2), x.size(3));
}

class HalideKernel final : public LkConvKernel {
public:
  explicit HalideKernel(const KernelSpec &spec) : LkConvKernel(spec), f32Spec_(spec) {
    usePipelineStore();
    f32Spec_.elementType = codegen::ElementType::F32;
    std::string source;
    schedule_ = tunedCpuSchedule(f32Spec_, at::get_num_threads(), &source);
    if (!schedule_ && spec.height > 0 && spec.width > 0)
      schedule_ = codegen::cpu::defaultCpuSchedule(f32Spec_, spec.height, spec.width);
    description_ = schedule_ ? "cpu " + schedule_->str() + " (" + source + ")"
                             : "cpu per-size default (" + source + ")";
  }
  BackendKind kind() const override { return BackendKind::Cpu; }
  std::string scheduleDescription() const override { return description_; }

  // A channels-last schedule reads and writes NCHW or NHWC memory in place;
  // the others compute NCHW, so NHWC tensors are converted for them.
  void forward(const at::Tensor &x, const at::Tensor &weights, const at::Tensor &bias,
               LayerTaps &taps, at::Tensor &y) override {
    auto conv = pipelines(taps);
    const bool nhwc = inPlaceNhwc(*conv, x);
    const at::Tensor xf = cpu::asFloatIn(x, nhwc), wf = cpu::asFloat(weights);
    const at::Tensor bf = spec_.hasBias ? cpu::asFloat(bias) : at::Tensor();
    at::Tensor yf = cpu::floatTargetIn(y, nhwc);
    std::vector<float *> outputs;
    const int parts = spec_.perBranchOutputs ? static_cast<int>(spec_.branches.size()) : 1;
    for (int b = 0; b < parts; ++b)
      outputs.push_back(yf.data_ptr<float>() + b * planeCount(spec_, x));
    conv->forward(shape(x, nhwc), xf.data_ptr<float>(), branchPointers(wf),
                  bf.defined() ? bf.data_ptr<float>() : nullptr, outputs, at::get_num_threads());
    cpu::finish(y, yf);
  }

  void backwardData(const at::Tensor &dy, const at::Tensor &weights, LayerTaps &taps,
                    at::Tensor &dx) override {
    auto conv = pipelines(taps);
    const bool nhwc = inPlaceNhwc(*conv, dx);
    const at::Tensor dyf = cpu::asFloatIn(dy, nhwc), wf = cpu::asFloat(weights);
    at::Tensor dxf = cpu::floatTargetIn(dx, nhwc);
    conv->backwardData(shape(dx, nhwc), dyPointers(dyf, dx), branchPointers(wf),
                       dxf.data_ptr<float>(), at::get_num_threads());
    cpu::finish(dx, dxf);
  }

  void backwardWeight(const at::Tensor &x, const at::Tensor &dy, LayerTaps &taps,
                      at::Tensor &dw) override {
    auto conv = pipelines(taps);
    const bool nhwc = inPlaceNhwc(*conv, x);
    const at::Tensor xf = cpu::asFloatIn(x, nhwc), dyf = cpu::asFloatIn(dy, nhwc);
    at::Tensor dwf = cpu::floatTarget(dw);
    std::vector<float *> grads;
    for (size_t b = 0; b < spec_.branches.size(); ++b)
      grads.push_back(dwf.data_ptr<float>() + codegen::weightOffset(spec_, static_cast<int>(b)));
    conv->backwardWeight(shape(x, nhwc), xf.data_ptr<float>(), dyPointers(dyf, x), grads,
                         at::get_num_threads());
    cpu::finish(dw, dwf);
  }

private:
  static codegen::cpu::Shape shape(const at::Tensor &t, bool nhwc) {
    return codegen::cpu::Shape{t.size(0), t.size(1), t.size(2), t.size(3), nhwc};
  }
  /// Whether the call computes in NHWC memory: the image `t` is channels-last
  /// and the schedule for its size vectorises across channels.
  static bool inPlaceNhwc(const codegen::cpu::CpuLkConv &conv, const at::Tensor &t) {
    return cpu::channelsLastMemory(t) && conv.scheduleFor(t.size(2), t.size(3)).channelsLast;
  }
  std::vector<const float *> branchPointers(const at::Tensor &wf) const {
    std::vector<const float *> out;
    for (size_t b = 0; b < spec_.branches.size(); ++b)
      out.push_back(wf.data_ptr<float>() + codegen::weightOffset(spec_, static_cast<int>(b)));
    return out;
  }
  std::vector<const float *> dyPointers(const at::Tensor &dyf, const at::Tensor &x) const {
    std::vector<const float *> out;
    const int parts = spec_.perBranchOutputs ? static_cast<int>(spec_.branches.size()) : 1;
    for (int b = 0; b < parts; ++b)
      out.push_back(dyf.data_ptr<float>() + b * planeCount(spec_, x));
    return out;
  }
  /// The pipelines with this layer's taps (one object per spec and taps).
  std::shared_ptr<codegen::cpu::CpuLkConv> pipelines(LayerTaps &taps) {
    std::shared_ptr<void> p = taps.upload("halide " + spec_.signature(), [&] {
      auto conv = schedule_ ? std::make_shared<codegen::cpu::CpuLkConv>(f32Spec_, *schedule_)
                            : std::make_shared<codegen::cpu::CpuLkConv>(f32Spec_);
      conv->setTaps(taps.table());
      return std::static_pointer_cast<void>(conv);
    });
    return std::static_pointer_cast<codegen::cpu::CpuLkConv>(p);
  }

  KernelSpec f32Spec_;
  std::optional<codegen::cpu::CpuSchedule> schedule_; // none: defaults per image size
  std::string description_;
};

} // namespace
} // namespace slak::runtime

/// The plugin's entry point (looked up with dlsym).
extern "C" __attribute__((visibility("default"))) slak::runtime::LkConvKernel *
slak_make_halide_kernel(const slak::codegen::KernelSpec &spec) {
  return new slak::runtime::HalideKernel(spec);
}

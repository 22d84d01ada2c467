// KernelPackageLoader: the runtime's AOT path. load_kernel_package(dir)
// reads what `slak-translate --emit-kernel-package` wrote
// (codegen/package/KernelPackage.h) and serves its ops through the same
// entry as lk_conv: its argument checks, its "auto" backend rule (CUDA
// tensors: cuda; CPU tensors: the CPU backend), its taps of run-time masks
// and its kernel registry, which compiles the package's kernels.cu (CUDA,
// NVRTC) or kernels.cl (OpenCL) instead of emitting them; the CPU backends
// build from the packaged spec. Where the package holds them, its tap table
// and constant weights and bias are used. Gradients flow to x and to
// weights passed in.
#pragma once

#include <ATen/core/Tensor.h>

#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "codegen/package/KernelPackage.h"

namespace slak {

namespace runtime {
class LayerTaps;
class LkConvKernel;
} // namespace runtime

class KernelPackageModule {
public:
  explicit KernelPackageModule(codegen::KernelPackage package);

  const std::string &directory() const { return package_.directory; }
  std::vector<std::string> op_names() const;
  /// Throws c10::Error listing the package's ops when `op` is not one.
  const codegen::KernelSpec &spec(const std::string &op) const;
  /// Whether the package holds the op's weights (forward needs none then).
  bool has_weights(const std::string &op) const;
  const codegen::KernelPackage &package() const { return package_; }

  /// Runs op `op` on x. `weights` (one [C, 1, KH, KW] per branch) and `bias`
  /// are needed only when the package holds none; `masks` only when the op's
  /// tap table is built at run time. `backend`: as lk_conv's ("auto": CUDA
  /// tensors cuda, CPU tensors cpu; "opencl", "cpu", "reference" or
  /// "cuda"). An x whose shape or dtype the op was not
  /// compiled for is refused with a c10::Error naming both.
  at::Tensor forward(const std::string &op, const at::Tensor &x, at::TensorList weights = {},
                     const std::optional<at::Tensor> &bias = std::nullopt,
                     at::TensorList masks = {}, const std::string &backend = "auto");

private:
  struct OpState;
  OpState &state(const std::string &op) const;

  codegen::KernelPackage package_;
  std::vector<std::unique_ptr<OpState>> states_;
};

/// Reads the package in `dir`. Throws c10::Error naming the file and the
/// problem when it is missing or malformed.
std::shared_ptr<KernelPackageModule> load_kernel_package(const std::string &dir);

} // namespace slak

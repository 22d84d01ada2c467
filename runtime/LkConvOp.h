// lk_conv: the SLaK large-kernel depthwise convolution as a LibTorch op with
// autograd (DESIGN section 1). x is NCHW or channels-last; branch b has a
// depthwise weight [C, 1, KH_b, KW_b] (odd sizes), an optional mask of the
// same shape (non-zero = live tap; masked taps are skipped and get zero
// gradient unless dense_weight_grad), and "same" padding (KH_b/2, KW_b/2)
// unless given.
//
//   summed:     y [N, C, Ho, Wo] = bias + sum_b conv_b(x)
//   per-branch: y [B, N, C, Ho, Wo], y[b] = conv_b(x) (no bias; for a
//               BatchNorm per branch)
//
// The result (and dx) has x's memory format: channels-last in, channels-last
// out (each y[b] of per-branch outputs too). f32, f16 and bf16 tensors (one
// dtype for x, weights and bias); f16/bf16 are storage types, arithmetic is
// f32. The backend follows x's device (CPU: Halide or the oracle; CUDA:
// NVRTC + the driver API), or options.backend ("opencl" runs CPU tensors on
// the OpenCL device). Registered as two dispatcher ops:
//
//   lk_conv(Tensor x, Tensor[] weights, Tensor?[] masks, Tensor? bias=None,
//           bool per_branch=False, bool dense_weight_grad=False,
//           int[] padding=[], str backend="auto") -> Tensor
//   lk_conv_backward(Tensor grad, Tensor x, Tensor[] weights, Tensor?[] masks,
//           bool has_bias, bool per_branch, bool dense_weight_grad,
//           int[] padding, str backend, bool[2] output_mask)
//           -> (Tensor dx, Tensor[] dweights)
//
// with CPU and CUDA kernels and an Autograd kernel that calls both through
// the dispatcher, so torch.compile and torch.export trace it (the Python
// package registers their fake kernels). padding: flat [ph_0, pw_0, ph_1,
// pw_1, ...] or empty for "same". The taps of a mask set are read once and
// kept while the same mask tensors are passed unchanged (same tensor, same
// version). Wrong dtype, device, rank or channel count raise c10::Error
// naming the argument, its value and what was expected.
#pragma once

#include <ATen/core/Tensor.h>

#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace slak {

namespace runtime {
class LayerTaps;
}

struct LkConvOptions {
  /// One output per branch ([B, N, C, Ho, Wo]) instead of their sum.
  bool perBranch = false;
  /// Backward-weight computes every window position, masked or not.
  bool denseWeightGrad = false;
  /// "auto", "cpu", "reference", "opencl" or "cuda".
  std::string backend = "auto";
  /// Per-branch (padH, padW); empty = "same" (KH/2, KW/2) for every branch.
  std::vector<std::pair<int64_t, int64_t>> paddings;
  LkConvOptions &per_branch(bool v) {
    perBranch = v;
    return *this;
  }
  LkConvOptions &dense_weight_grad(bool v) {
    denseWeightGrad = v;
    return *this;
  }
  LkConvOptions &with_backend(std::string v) {
    backend = std::move(v);
    return *this;
  }
  LkConvOptions &with_paddings(std::vector<std::pair<int64_t, int64_t>> v) {
    paddings = std::move(v);
    return *this;
  }
};

/// The op. `masks`: empty (all dense) or one per branch, each undefined
/// (dense) or shaped like its weight.
at::Tensor lk_conv(const at::Tensor &x, at::TensorList weights, at::TensorList masks = {},
                   const std::optional<at::Tensor> &bias = std::nullopt,
                   const LkConvOptions &options = {});

/// The live taps of `masks` as lk_conv reads them for weights of these
/// shapes (the same object lk_conv uses while the masks are unchanged).
/// Checks shapes like lk_conv.
std::shared_ptr<runtime::LayerTaps> make_layer_taps(at::TensorList weights, at::TensorList masks);

/// A mask as every part of the runtime keeps it: CPU bytes, 1 = live tap
/// (any non-zero value of `mask`), contiguous, detached.
at::Tensor live_mask(const at::Tensor &mask);

/// lk_conv's argument checks (summed outputs, "same" padding), for entries
/// that run a fixed kernel (kernel packages): throws c10::Error naming the
/// argument, its value and what was expected.
void check_lk_conv_arguments(const at::Tensor &x, at::TensorList weights, at::TensorList masks,
                             const std::optional<at::Tensor> &bias);

} // namespace slak

// Linear layers of the models' blocks (the MLP of SLaK / ConvNeXt blocks):
// y = x W^T + b over the last dimension, with autograd.
//
// On the CPU, fp32, these run on oneDNN's matmul (LibTorch's
// mkldnn::_linear_pointwise), forward and both gradients. LibTorch's own
// torch::linear calls MKL's sgemm, which on this project's AVX-512 AMD
// machine takes its generic AVX2 path: 35-77% of the FMA peak on SLaK-T's
// MLP shapes, against oneDNN's 75-90% (docs/profile.md). Elsewhere (CUDA,
// other dtypes, a LibTorch built without oneDNN) they are torch::linear.
// The results equal torch::linear up to fp32 summation order.
#pragma once

#include <torch/types.h>

namespace slak::models {

/// How many of LibTorch's threads an at::parallel_for of this library's
/// code runs on (LibTorch's thread count where it is built with OpenMP: see
/// slak_torch_openmp in cmake/SlakDependencies.cmake; 1 if that is missing).
int parallelForThreads();

/// Whether linear() runs on oneDNN for this tensor.
bool oneDnnLinearApplies(const torch::Tensor &x);

/// x W^T + b (b may be undefined), differentiable in x, weight and bias.
torch::Tensor linear(const torch::Tensor &x, const torch::Tensor &weight,
                     const torch::Tensor &bias);

/// gelu(x W^T + b) (erf GELU). Without gradients (inference) on the CPU the
/// GELU runs inside the matmul's output pass.
torch::Tensor linearGelu(const torch::Tensor &x, const torch::Tensor &weight,
                         const torch::Tensor &bias);

/// residual + scale * (x W^T + b), scale per output feature (undefined: 1),
/// residual undefined: none.
/// Without gradients on the CPU, with residual laid out like the result, the
/// scale is folded into the weights and the add runs inside the matmul.
torch::Tensor linearScaleAdd(const torch::Tensor &x, const torch::Tensor &weight,
                             const torch::Tensor &bias, const torch::Tensor &scale,
                             const torch::Tensor &residual);

/// residual + scale * (gelu(x W1^T + b1) W2^T + b2): the MLP of a SLaK /
/// ConvNeXt block (scale and residual may be undefined). With gradients on
/// the CPU (oneDNN and an AVX-512 host) it is one autograd function that
/// keeps the GELU's slope and applies it inside the second linear's
/// backward matmul (SLAK_GELU=torch: LibTorch's GELU and its backward);
/// otherwise linearGelu then linearScaleAdd.
torch::Tensor mlp(const torch::Tensor &x, const torch::Tensor &w1, const torch::Tensor &b1,
                  const torch::Tensor &w2, const torch::Tensor &b2, const torch::Tensor &scale,
                  const torch::Tensor &residual);

} // namespace slak::models

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

} // namespace slak::models

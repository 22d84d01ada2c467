// Reparam: structural re-parameterisation of a large-kernel layer for
// inference (DESIGN section 1), the math of `slak-opt --slak-fuse-lk=mode=infer`:
//
//   W'_b = W_b * mask_b * g_b / sqrt(v_b + eps)
//   bias' = sum_b (beta_b - mean_b * g_b / sqrt(v_b + eps)) + bias
//
// then every branch whose window nests in a larger one (the small kernel
// inside M x N) is zero-padded and added to it; its mask is OR-ed in. The
// steps are codegen/Reparam.h's (the pass and deploy run them on arrays),
// here on ATen tensors: differentiable, double precision, results in the
// weights' dtype. Used by LKConv2d's eval mode and, as the op
// torch.ops.slak.reparameterize, by the Python package's modules.
#pragma once

#include <ATen/core/Tensor.h>

#include <utility>
#include <vector>

namespace slak::runtime {

struct ReparamBranch {
  at::Tensor weight; // [C, 1, KH, KW]
  at::Tensor mask;   // same shape, non-zero = live; undefined = dense
  /// The branch's BatchNorm; runningMean undefined = no BatchNorm. weight
  /// and bias undefined = an affine-free BatchNorm (1 and 0).
  at::Tensor bnWeight, bnBias, bnRunningMean, bnRunningVar;
};

struct ReparamLayer {
  std::vector<at::Tensor> weights;                   // [C, 1, KH, KW] per surviving branch
  std::vector<at::Tensor> masks;                     // uint8, undefined = dense
  at::Tensor bias;                                   // [C]; undefined when nothing adds a shift
  std::vector<std::pair<int64_t, int64_t>> paddings; // (KH/2, KW/2) per branch
};

/// Folds each branch's BatchNorm (eps) and the sum's bias (may be undefined)
/// and merges nested windows into the first larger window holding them
/// (larger areas first, argument order among equals).
ReparamLayer reparameterize(const std::vector<ReparamBranch> &branches, double eps,
                            const at::Tensor &bias);

} // namespace slak::runtime

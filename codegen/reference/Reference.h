// The reference oracle: plain, obviously correct loop nests for the three
// kernels of a multi-branch masked depthwise convolution, accumulating in
// double. Used by tests, and as the last-resort fallback. MLIR- and
// LibTorch-free.
//
// Layouts: x, y, dy, dx are NCHW (contiguous); branch weights and masks are
// [C, 1, KH_b, KW_b]; bias is [C]. Masks: one per branch, empty = dense, else
// C*KH_b*KW_b bytes, non-zero = live; an empty list of masks means every
// branch is dense. The masks decide liveness (Branch::dense is not read).
// Every function checks the spec and the sizes of its arguments and throws
// std::invalid_argument naming the argument, its size and the expected one.
#pragma once

#include "codegen/KernelSpec.h"
#include "codegen/TapTable.h"

#include <cstdint>
#include <vector>

namespace slak::reference {

struct Shape {
  int64_t n = 1, c = 1, h = 1, w = 1;
  int64_t numel() const { return n * c * h * w; }
};

using Weights = std::vector<std::vector<float>>; // one per branch

/// Forward. Summed: returns one tensor of the output shape (plus bias).
/// Per-branch (spec.perBranchOutputs): returns one tensor per branch, bias
/// (if any) added to none of them.
std::vector<std::vector<float>> forward(const codegen::KernelSpec &spec, const Shape &in,
                                        const std::vector<float> &x, const Weights &weights,
                                        const std::vector<codegen::BranchMask> &masks,
                                        const std::vector<float> &bias);

/// Backward-data: dx from one dy per branch (per-branch outputs) or a single
/// dy shared by all branches (summed output).
std::vector<float> backwardData(const codegen::KernelSpec &spec, const Shape &in,
                                const std::vector<std::vector<float>> &dy, const Weights &weights,
                                const std::vector<codegen::BranchMask> &masks);

/// Backward-weight: dW_b for every branch; masked taps get zero unless
/// spec.denseWeightGrad. dy as in backwardData.
Weights backwardWeight(const codegen::KernelSpec &spec, const Shape &in,
                       const std::vector<float> &x, const std::vector<std::vector<float>> &dy,
                       const std::vector<codegen::BranchMask> &masks);

/// dbias[c] = sum over n, i, j of the (summed) dy.
std::vector<float> backwardBias(const codegen::KernelSpec &spec, const Shape &in,
                                const std::vector<std::vector<float>> &dy);

} // namespace slak::reference

// Shared pieces of the runtime tests: which backends this machine has, a
// LibTorch reference for the op (sum of conv2d(groups=C) branches in double,
// with autograd), random masks, and tolerant comparisons that report the
// worst element.
#pragma once

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "runtime/LkConvBackend.h"

namespace slak::testing {

/// Whether `kind` can run here; prints "[SKIP] ..." and returns false if not
/// (callers then GTEST_SKIP). Cuda: "[SKIP] no CUDA device".
bool backendAvailable(runtime::BackendKind kind);
/// The device tensors of `kind` live on.
at::Device deviceOf(runtime::BackendKind kind);

/// A random mask shaped like `weight` with about `density` live taps
/// (exactly round(density * numel) live), uint8 on the CPU.
at::Tensor randomMask(const at::Tensor &weight, double density, uint64_t seed);

struct TorchResult {
  at::Tensor y;               // [N,C,Ho,Wo] or [B,N,C,Ho,Wo], double
  at::Tensor dx;              // double
  std::vector<at::Tensor> dw; // per branch, double; masked unless dense
  at::Tensor dbias;           // double, undefined without bias
};

/// The op's math in LibTorch, double precision, with autograd: each branch
/// is conv2d(x, W_b * mask_b, padding (ph_b, pw_b), groups = C). `dy` is the
/// gradient of y. With denseWeightGrad, dw is the gradient with respect to
/// the masked weight (every tap); else it is masked.
TorchResult torchReference(const at::Tensor &x, const std::vector<at::Tensor> &weights,
                           const std::vector<at::Tensor> &masks,
                           const std::optional<at::Tensor> &bias, bool perBranch,
                           bool denseWeightGrad, const at::Tensor &dy,
                           std::vector<std::pair<int64_t, int64_t>> paddings = {});

/// |got - want| <= tol * max(|want|) (+ tiny) everywhere; reports the worst.
void expectClose(const at::Tensor &got, const at::Tensor &want, double tol,
                 const std::string &what);

/// Relative tolerance for results stored in `type`.
double toleranceFor(at::ScalarType type);

/// The message of the c10::Error `call` throws ("" when it throws nothing;
/// fails the test when it throws something else).
std::string errorOf(const std::function<void()> &call);

} // namespace slak::testing

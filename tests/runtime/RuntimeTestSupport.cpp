#include "tests/runtime/RuntimeTestSupport.h"

#include <torch/autograd.h>
#include <torch/cuda.h>

#include <cstdio>
#include <cstdlib>

#ifdef SLAK_HAVE_OPENCL
#include "runtime/OpenCLProgramCache.h"
#endif

namespace slak::testing {
namespace {

#ifndef SLAK_TEST_CACHE_DIR
#define SLAK_TEST_CACHE_DIR "/tmp/slak-test-cache"
#endif

// Every test binary keeps its compiled kernels under the build tree, not in
// the user's ~/.cache/slak, unless SLAK_CACHE_DIR says otherwise.
const bool cacheDirSet = [] {
  ::setenv("SLAK_CACHE_DIR", SLAK_TEST_CACHE_DIR, 0);
  return true;
}();

} // namespace

bool backendAvailable(runtime::BackendKind kind) {
  (void)cacheDirSet;
  switch (kind) {
  case runtime::BackendKind::Cuda:
    if (torch::cuda::is_available())
      return true;
    std::printf("[SKIP] no CUDA device\n");
    return false;
  case runtime::BackendKind::OpenCL:
#ifdef SLAK_HAVE_OPENCL
    try {
      runtime::openclContext();
      return true;
    } catch (const std::exception &e) {
      std::printf("[SKIP] no OpenCL device: %s\n", e.what());
      return false;
    }
#else
    std::printf("[SKIP] this build has no OpenCL backend\n");
    return false;
#endif
  default:
    return true;
  }
}

at::Device deviceOf(runtime::BackendKind kind) {
  return kind == runtime::BackendKind::Cuda ? at::Device(at::kCUDA, 0) : at::Device(at::kCPU);
}

at::Tensor randomMask(const at::Tensor &weight, double density, uint64_t seed) {
  at::Generator gen = at::detail::createCPUGenerator(seed);
  const int64_t n = weight.numel();
  const int64_t live = static_cast<int64_t>(density * static_cast<double>(n) + 0.5);
  at::Tensor flat = at::zeros({n}, at::kByte);
  at::Tensor order = at::randperm(n, gen, at::kLong);
  flat.index_fill_(0, order.narrow(0, 0, live), 1);
  return flat.view(weight.sizes());
}

TorchResult torchReference(const at::Tensor &x, const std::vector<at::Tensor> &weights,
                           const std::vector<at::Tensor> &masks,
                           const std::optional<at::Tensor> &bias, bool perBranch,
                           bool denseWeightGrad, const at::Tensor &dy,
                           std::vector<std::pair<int64_t, int64_t>> paddings) {
  at::AutoGradMode enable(true);
  const int64_t channels = x.size(1);
  at::Tensor xd = x.detach().to(at::kCPU, at::kDouble).requires_grad_(true);
  std::vector<at::Tensor> leaves, effective;
  for (size_t b = 0; b < weights.size(); ++b) {
    at::Tensor w = weights[b].detach().to(at::kCPU, at::kDouble);
    const bool masked = b < masks.size() && masks[b].defined();
    const at::Tensor m = masked ? masks[b].to(at::kCPU, at::kDouble) : at::Tensor();
    if (denseWeightGrad) {
      // Gradient with respect to the masked weight: every tap.
      at::Tensor leaf = (masked ? w * m : w).requires_grad_(true);
      leaves.push_back(leaf);
      effective.push_back(leaf);
    } else {
      at::Tensor leaf = w.requires_grad_(true);
      leaves.push_back(leaf);
      effective.push_back(masked ? leaf * m : leaf);
    }
  }
  at::Tensor bd;
  if (bias && bias->defined())
    bd = bias->detach().to(at::kCPU, at::kDouble).requires_grad_(true);
  std::vector<at::Tensor> outs;
  for (size_t b = 0; b < effective.size(); ++b) {
    const int64_t kh = effective[b].size(2), kw = effective[b].size(3);
    const auto pad = paddings.empty() ? std::make_pair(kh / 2, kw / 2) : paddings[b];
    outs.push_back(
        at::conv2d(xd, effective[b], {}, {1, 1}, {pad.first, pad.second}, {1, 1}, channels));
  }
  at::Tensor y;
  if (perBranch) {
    y = at::stack(outs);
  } else {
    y = outs[0];
    for (size_t b = 1; b < outs.size(); ++b)
      y = y + outs[b];
    if (bd.defined())
      y = y + bd.view({1, channels, 1, 1});
  }
  std::vector<at::Tensor> inputs = {xd};
  inputs.insert(inputs.end(), leaves.begin(), leaves.end());
  if (bd.defined())
    inputs.push_back(bd);
  const auto grads = torch::autograd::grad({y}, inputs, {dy.detach().to(at::kCPU, at::kDouble)});
  TorchResult r;
  r.y = y.detach();
  r.dx = grads[0];
  for (size_t b = 0; b < leaves.size(); ++b)
    r.dw.push_back(grads[1 + b]);
  if (bd.defined())
    r.dbias = grads.back();
  return r;
}

void expectClose(const at::Tensor &got, const at::Tensor &want, double tol,
                 const std::string &what) {
  ASSERT_TRUE(got.defined()) << what << ": undefined result";
  ASSERT_EQ(got.sizes(), want.sizes()) << what;
  const at::Tensor g = got.detach().to(at::kCPU, at::kDouble);
  const at::Tensor w = want.detach().to(at::kCPU, at::kDouble);
  const double scale = w.numel() ? w.abs().max().item<double>() : 0.0;
  const at::Tensor err = (g - w).abs();
  ASSERT_FALSE(g.isnan().any().item<bool>()) << what << ": NaN in the result";
  const int64_t worst = err.numel() ? err.flatten().argmax().item<int64_t>() : 0;
  const double worstErr = err.numel() ? err.flatten()[worst].item<double>() : 0.0;
  EXPECT_LE(worstErr, tol * scale + 1e-12)
      << what << ": worst at flat index " << worst << " got " << g.flatten()[worst].item<double>()
      << " expected " << w.flatten()[worst].item<double>() << " (max |expected| " << scale
      << ", tol " << tol << ")";
}

double toleranceFor(at::ScalarType type) {
  switch (type) {
  case at::kHalf:
    return 3e-3;
  case at::kBFloat16:
    return 1.6e-2;
  default:
    return 1e-4;
  }
}

std::string errorOf(const std::function<void()> &call) {
  try {
    call();
  } catch (const c10::Error &e) {
    return e.what_without_backtrace();
  } catch (const std::exception &e) {
    ADD_FAILURE() << "expected a c10::Error, got another exception: " << e.what();
    return e.what();
  }
  return {};
}

} // namespace slak::testing

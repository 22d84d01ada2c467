// slak::lk_conv on every backend (CPU, the reference oracle, OpenCL, CUDA):
// forward and gradients (input, every weight, bias) against LibTorch
// (conv2d(groups=C) branches in double with autograd) and against the
// oracle, over odd channel counts, batch 1, kernels larger than the image,
// masks of several densities (0 to 1), per-branch and summed outputs, dense
// weight gradients; f16/bf16 storage; any layout or stride.
#include <gtest/gtest.h>

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>
#include <c10/core/InferenceMode.h>

#include <sstream>

#include "codegen/reference/Reference.h"
#include "runtime/LkConvOp.h"
#include "tests/runtime/RuntimeTestSupport.h"

namespace slak::testing {
namespace {

using runtime::BackendKind;

struct LayerCase {
  std::string name;
  int64_t n, c, h, w;
  std::vector<std::pair<int64_t, int64_t>> kernels;
  std::vector<double> densities; // per branch; 1 = no mask
  bool bias = false;
  bool perBranch = false;
  bool denseWeightGrad = false;
};

std::vector<LayerCase> layerCases() {
  return {
      {"slak_sparse_bias", 2, 7, 12, 12, {{13, 5}, {5, 13}, {5, 5}}, {0.6, 0.6, 1.0}, true},
      {"per_branch_masks", 1, 5, 9, 11, {{15, 3}, {3, 15}, {3, 3}}, {0.3, 0.1, 0.6}, false, true},
      {"kernel_larger_than_image", 1, 3, 4, 6, {{13, 5}, {5, 13}}, {1.0, 0.5}, true},
      {"empty_mask_dense_grad", 2, 9, 7, 7, {{7, 7}, {5, 5}}, {0.0, 0.4}, true, false, true},
      {"single_dense_branch", 1, 13, 10, 8, {{7, 3}}, {1.0}},
  };
}

struct LayerData {
  at::Tensor x, dy, bias;
  std::vector<at::Tensor> weights, masks;
};

LayerData makeData(const LayerCase &lc, uint64_t seed, at::ScalarType type, at::Device device) {
  at::manual_seed(seed);
  LayerData d;
  // Values exactly representable in `type`, so every backend sees the same.
  auto rand = [&](at::IntArrayRef shape) {
    return (at::rand(shape, at::kFloat) * 2 - 1).to(type).to(device);
  };
  d.x = rand({lc.n, lc.c, lc.h, lc.w});
  for (size_t b = 0; b < lc.kernels.size(); ++b) {
    at::Tensor w = rand({lc.c, 1, lc.kernels[b].first, lc.kernels[b].second});
    d.weights.push_back(w);
    d.masks.push_back(lc.densities[b] >= 1.0
                          ? at::Tensor()
                          : randomMask(w, lc.densities[b], seed + 17 * b).to(device));
  }
  if (lc.bias)
    d.bias = rand({lc.c});
  const int64_t b = static_cast<int64_t>(lc.kernels.size());
  d.dy = lc.perBranch ? rand({b, lc.n, lc.c, lc.h, lc.w}) : rand({lc.n, lc.c, lc.h, lc.w});
  return d;
}

/// The oracle's forward and gradients for the data (f32 values).
struct OracleResult {
  at::Tensor y, dx;
  std::vector<at::Tensor> dw;
};

OracleResult oracle(const LayerCase &lc, const LayerData &d) {
  codegen::KernelSpec spec;
  spec.channels = lc.c;
  for (const auto &k : lc.kernels)
    spec.branches.push_back(
        codegen::Branch::same(static_cast<int>(k.first), static_cast<int>(k.second)));
  spec.perBranchOutputs = lc.perBranch;
  spec.hasBias = lc.bias;
  spec.denseWeightGrad = lc.denseWeightGrad;
  auto vec = [](const at::Tensor &t) {
    const at::Tensor f = t.to(at::kCPU, at::kFloat).contiguous();
    return std::vector<float>(f.data_ptr<float>(), f.data_ptr<float>() + f.numel());
  };
  const reference::Shape in{lc.n, lc.c, lc.h, lc.w};
  reference::Weights weights;
  std::vector<codegen::BranchMask> masks;
  for (size_t b = 0; b < d.weights.size(); ++b) {
    weights.push_back(vec(d.weights[b]));
    codegen::BranchMask m;
    if (d.masks[b].defined()) {
      const at::Tensor mm = d.masks[b].to(at::kCPU, at::kByte).contiguous();
      m.assign(mm.data_ptr<uint8_t>(), mm.data_ptr<uint8_t>() + mm.numel());
    }
    masks.push_back(m);
  }
  const std::vector<float> bias = lc.bias ? vec(d.bias) : std::vector<float>{};
  auto outs = reference::forward(spec, in, vec(d.x), weights, masks, bias);
  std::vector<std::vector<float>> dy;
  const int64_t plane = in.numel();
  const std::vector<float> all = vec(d.dy);
  for (size_t p = 0; p < (lc.perBranch ? lc.kernels.size() : 1); ++p)
    dy.emplace_back(all.begin() + p * plane, all.begin() + (p + 1) * plane);
  auto toTensor = [](const std::vector<float> &v, at::IntArrayRef shape) {
    return at::tensor(at::ArrayRef<float>(v), at::kFloat).view(shape).clone();
  };
  OracleResult r;
  std::vector<at::Tensor> ys;
  for (const auto &o : outs)
    ys.push_back(toTensor(o, {lc.n, lc.c, lc.h, lc.w}));
  r.y = lc.perBranch ? at::stack(ys) : ys[0];
  r.dx = toTensor(reference::backwardData(spec, in, dy, weights, masks), {lc.n, lc.c, lc.h, lc.w});
  const auto dw = reference::backwardWeight(spec, in, vec(d.x), dy, masks);
  for (size_t b = 0; b < dw.size(); ++b)
    r.dw.push_back(toTensor(dw[b], d.weights[b].sizes()));
  return r;
}

/// Runs the op with autograd; returns y and the gradients for dy.
struct OpResult {
  at::Tensor y, dx, dbias;
  std::vector<at::Tensor> dw;
};

OpResult runOp(const LayerCase &lc, const LayerData &d, BackendKind kind) {
  at::Tensor x = d.x.detach().clone().requires_grad_(true);
  std::vector<at::Tensor> weights;
  for (const at::Tensor &w : d.weights)
    weights.push_back(w.detach().clone().requires_grad_(true));
  std::optional<at::Tensor> bias;
  if (d.bias.defined())
    bias = d.bias.detach().clone().requires_grad_(true);
  LkConvOptions options;
  options.perBranch = lc.perBranch;
  options.denseWeightGrad = lc.denseWeightGrad;
  options.backend = runtime::backendKindName(kind);
  OpResult r;
  r.y = lk_conv(x, weights, d.masks, bias, options);
  r.y.backward(d.dy);
  r.dx = x.grad();
  for (const at::Tensor &w : weights)
    r.dw.push_back(w.grad());
  if (bias)
    r.dbias = bias->grad();
  return r;
}

class LkConvBackendTest : public ::testing::TestWithParam<BackendKind> {
protected:
  void SetUp() override {
    if (!backendAvailable(GetParam()))
      GTEST_SKIP() << "backend " << runtime::backendKindName(GetParam()) << " not available";
  }
  at::Device device() const { return deviceOf(GetParam()); }
};

TEST_P(LkConvBackendTest, ForwardAndGradientsMatchTorchAndOracle) {
  for (const LayerCase &lc : layerCases()) {
    SCOPED_TRACE(lc.name);
    const LayerData d = makeData(lc, 1234, at::kFloat, device());
    const OpResult got = runOp(lc, d, GetParam());
    EXPECT_EQ(got.y.device(), device());
    const TorchResult ref =
        torchReference(d.x, d.weights, d.masks,
                       d.bias.defined() ? std::optional<at::Tensor>(d.bias) : std::nullopt,
                       lc.perBranch, lc.denseWeightGrad, d.dy);
    const OracleResult orc = oracle(lc, d);
    const double tol = 1e-4;
    expectClose(got.y, ref.y, tol, "forward vs torch");
    expectClose(got.y, orc.y, tol, "forward vs oracle");
    expectClose(got.dx, ref.dx, tol, "dx vs torch");
    expectClose(got.dx, orc.dx, tol, "dx vs oracle");
    for (size_t b = 0; b < got.dw.size(); ++b) {
      expectClose(got.dw[b], ref.dw[b], tol, "dW[" + std::to_string(b) + "] vs torch");
      expectClose(got.dw[b], orc.dw[b], tol, "dW[" + std::to_string(b) + "] vs oracle");
      if (d.masks[b].defined() && !lc.denseWeightGrad) {
        // Masked taps get exactly zero.
        const at::Tensor dead = d.masks[b].to(at::kCPU).eq(0);
        EXPECT_EQ(got.dw[b].cpu().masked_select(dead).abs().sum().item<double>(), 0.0);
      }
    }
    if (lc.bias)
      expectClose(got.dbias, ref.dbias, tol, "dbias vs torch");
  }
}

TEST_P(LkConvBackendTest, HalfAndBFloat16Storage) {
  LayerCase lc = layerCases()[0];
  for (at::ScalarType type : {at::kHalf, at::kBFloat16}) {
    SCOPED_TRACE(c10::toString(type));
    const LayerData d = makeData(lc, 99, type, device());
    const OpResult got = runOp(lc, d, GetParam());
    EXPECT_EQ(got.y.scalar_type(), type);
    EXPECT_EQ(got.dx.scalar_type(), type);
    EXPECT_EQ(got.dw[0].scalar_type(), type);
    // The oracle on the same (already rounded) values, in f32.
    const OracleResult orc = oracle(lc, d);
    const double tol = toleranceFor(type);
    expectClose(got.y, orc.y, tol, "forward");
    expectClose(got.dx, orc.dx, tol, "dx");
    for (size_t b = 0; b < got.dw.size(); ++b)
      expectClose(got.dw[b], orc.dw[b], tol, "dW[" + std::to_string(b) + "]");
  }
}

TEST_P(LkConvBackendTest, AnyLayoutOrStrideGivesTheSameResult) {
  const LayerCase lc = layerCases()[0];
  const LayerData d = makeData(lc, 7, at::kFloat, device());
  const OpResult plain = runOp(lc, d, GetParam());

  LayerData odd = d;
  odd.x = d.x.contiguous(at::MemoryFormat::ChannelsLast);
  ASSERT_FALSE(odd.x.is_contiguous());
  // A weight stored transposed, read through a transposing view.
  odd.weights[0] = d.weights[0].transpose(2, 3).contiguous().transpose(2, 3);
  ASSERT_FALSE(odd.weights[0].is_contiguous());
  // A bias that is a strided slice.
  odd.bias = at::stack({d.bias, d.bias}, 1).select(1, 0);
  ASSERT_FALSE(odd.bias.is_contiguous());
  // dy broadcast from one value per channel (a zero-stride gradient).
  odd.dy = d.dy.mean({0, 2, 3}, true).expand_as(d.dy);
  LayerData same = d;
  same.dy = odd.dy.contiguous();
  const OpResult strided = runOp(lc, odd, GetParam());
  const OpResult reference = runOp(lc, same, GetParam());
  expectClose(strided.y, plain.y, 0, "forward");
  expectClose(strided.dx, reference.dx, 0, "dx");
  // The GPU backends run their NHWC kernels on the channels-last x, whose
  // backward-weight sums the pixels in another order.
  const bool gpu = GetParam() == BackendKind::OpenCL || GetParam() == BackendKind::Cuda;
  for (size_t b = 0; b < strided.dw.size(); ++b)
    expectClose(strided.dw[b], reference.dw[b], gpu ? 1e-5 : 0, "dW");
  expectClose(strided.dbias, reference.dbias, 0, "dbias");
}

TEST_P(LkConvBackendTest, ChannelsLastInputGivesChannelsLastResults) {
  // A summed output with bias, and per-branch outputs (a 5-D result).
  for (const LayerCase &lc : {layerCases()[0], layerCases()[1]}) {
    const LayerData d = makeData(lc, 11, at::kFloat, device());
    const OpResult plain = runOp(lc, d, GetParam());
    LayerData last = d;
    last.x = d.x.contiguous(at::MemoryFormat::ChannelsLast);
    const OpResult got = runOp(lc, last, GetParam());
    // The GPU backends run their NHWC kernels on channels-last tensors and
    // sum in another order than the NCHW ones.
    const double tol =
        GetParam() == BackendKind::OpenCL || GetParam() == BackendKind::Cuda ? 1e-5 : 0;
    expectClose(got.y, plain.y, tol, "forward");
    expectClose(got.dx, plain.dx, tol, "dx");
    for (size_t b = 0; b < got.dw.size(); ++b)
      expectClose(got.dw[b], plain.dw[b], tol, "dW[" + std::to_string(b) + "]");
    const at::Tensor y0 = got.y.dim() == 4 ? got.y : got.y.select(0, 0);
    EXPECT_TRUE(y0.is_contiguous(at::MemoryFormat::ChannelsLast));
    EXPECT_TRUE(got.dx.is_contiguous(at::MemoryFormat::ChannelsLast));
  }
}

TEST_P(LkConvBackendTest, NoGradAndInferenceModeRunForwardOnly) {
  const LayerCase lc = layerCases()[2];
  const LayerData d = makeData(lc, 5, at::kFloat, device());
  LkConvOptions options;
  options.backend = runtime::backendKindName(GetParam());
  const at::Tensor w0 = d.weights[0].detach().clone().requires_grad_(true);
  at::Tensor y1, y2;
  {
    at::NoGradGuard noGrad;
    y1 = lk_conv(d.x, {w0, d.weights[1]}, d.masks, d.bias, options);
  }
  EXPECT_FALSE(y1.requires_grad());
  {
    c10::InferenceMode inference;
    y2 = lk_conv(d.x, {w0, d.weights[1]}, d.masks, d.bias, options);
  }
  expectClose(y2, y1, 0, "inference mode");
  const at::Tensor y3 = lk_conv(d.x, {w0, d.weights[1]}, d.masks, d.bias, options);
  EXPECT_TRUE(y3.requires_grad());
  expectClose(y3, y1, 0, "grad mode");
}

std::string backendName(const ::testing::TestParamInfo<BackendKind> &info) {
  return runtime::backendKindName(info.param);
}

INSTANTIATE_TEST_SUITE_P(Backends, LkConvBackendTest,
                         ::testing::Values(BackendKind::Cpu, BackendKind::Reference,
                                           BackendKind::OpenCL, BackendKind::Cuda),
                         backendName);

} // namespace
} // namespace slak::testing

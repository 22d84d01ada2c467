#include "models/Linear.h"

#include "models/Gelu.h"

#include <ATen/Config.h>
#include <ATen/Parallel.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/autograd.h>
#include <torch/torch.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <initializer_list>
#include <optional>
#include <tuple>
#include <utility>

#include <immintrin.h>

namespace slak::models {
namespace {

using Pointwise = torch::Tensor(const torch::Tensor &, const torch::Tensor &,
                                const std::optional<torch::Tensor> &, c10::string_view,
                                c10::List<std::optional<c10::Scalar>>,
                                std::optional<c10::string_view>);
using PointwiseBinary = torch::Tensor(const torch::Tensor &, const torch::Tensor &,
                                      const torch::Tensor &, const std::optional<torch::Tensor> &,
                                      c10::string_view);

/// LibTorch's oneDNN linear ops, looked up once; nullopt where this LibTorch
/// lacks them (built without oneDNN) or SLAK_LINEAR=torch asks for
/// torch::linear.
struct OneDnnOps {
  c10::TypedOperatorHandle<Pointwise> pointwise;
  c10::TypedOperatorHandle<PointwiseBinary> binary;
};

/// Whether the environment variable `name` is "torch" (LibTorch's own op
/// asked for instead of this file's).
bool torchAskedFor(const char *name) {
  const char *choice = std::getenv(name);
  return choice && std::strcmp(choice, "torch") == 0;
}

const std::optional<OneDnnOps> &oneDnnOps() {
  static const std::optional<OneDnnOps> ops = []() -> std::optional<OneDnnOps> {
    if (torchAskedFor("SLAK_LINEAR") || !at::hasMKLDNN())
      return std::nullopt;
    auto &dispatcher = c10::Dispatcher::singleton();
    auto unary = dispatcher.findSchema({"mkldnn::_linear_pointwise", ""});
    auto binary = dispatcher.findSchema({"mkldnn::_linear_pointwise", "binary"});
    if (!unary || !binary)
      return std::nullopt;
    return OneDnnOps{unary->typed<Pointwise>(), binary->typed<PointwiseBinary>()};
  }();
  return ops;
}

std::optional<torch::Tensor> optional(const torch::Tensor &t) {
  return t.defined() ? std::optional<torch::Tensor>(t) : std::nullopt;
}

/// x2d (M x K, any strides) times weight (N x K, any strides) transposed,
/// plus bias, then the eltwise attr ("none" or "gelu").
torch::Tensor matmul(const torch::Tensor &x2d, const torch::Tensor &weight,
                     const torch::Tensor &bias, const char *attr = "none") {
  const auto &ops = *oneDnnOps();
  const bool gelu = std::strcmp(attr, "gelu") == 0;
  return ops.pointwise.call(x2d, weight, optional(bias), attr,
                            c10::List<std::optional<c10::Scalar>>(),
                            gelu ? std::optional<c10::string_view>("none") : std::nullopt);
}

/// The 2-D view (rows x features) of x, copying only where the rows are not
/// evenly strided.
torch::Tensor rows(const torch::Tensor &x) { return x.reshape({-1, x.size(-1)}); }

std::vector<int64_t> outputShape(const torch::Tensor &x, int64_t features) {
  auto shape = x.sizes().vec();
  shape.back() = features;
  return shape;
}

/// dst (ldDst apart) = the 8 x 8 block of src (ldSrc apart), transposed, in
/// AVX2 registers: pairs of rows interleaved, then pairs of pairs, then the
/// 128-bit halves exchanged.
__attribute__((target("avx2"))) void transpose8x8(const float *src, int64_t ldSrc, float *dst,
                                                  int64_t ldDst) {
  __m256 r[8], t[8], u[8];
  for (int i = 0; i < 8; ++i)
    r[i] = _mm256_loadu_ps(src + i * ldSrc);
  for (int i = 0; i < 8; i += 2) {
    t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
    t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
  }
  for (int i = 0; i < 8; i += 4) {
    u[i] = _mm256_shuffle_ps(t[i], t[i + 2], _MM_SHUFFLE(1, 0, 1, 0));
    u[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], _MM_SHUFFLE(3, 2, 3, 2));
    u[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], _MM_SHUFFLE(1, 0, 1, 0));
    u[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], _MM_SHUFFLE(3, 2, 3, 2));
  }
  for (int i = 0; i < 4; ++i) {
    _mm256_storeu_ps(dst + i * ldDst, _mm256_permute2f128_ps(u[i], u[i + 4], 0x20));
    _mm256_storeu_ps(dst + (i + 4) * ldDst, _mm256_permute2f128_ps(u[i], u[i + 4], 0x31));
  }
}

/// The transpose of a 2-D float tensor, contiguous: tiles of 64 x 64 (16 KiB
/// read, 16 KiB written) split over LibTorch's threads, each made of 8 x 8
/// register transposes where the host has AVX2 (scalar at the edges). With
/// onesRow the result has one more row, all ones (a matmul with it then
/// also sums the other operand's rows: a bias gradient).
torch::Tensor transposed(const torch::Tensor &a, bool onesRow = false) {
  const auto in = a.contiguous();
  const int64_t rows = in.size(0), cols = in.size(1);
  auto out = torch::empty({cols + (onesRow ? 1 : 0), rows}, in.options());
  if (onesRow)
    out[cols].fill_(1.0f);
  const float *src = in.data_ptr<float>();
  float *dst = out.data_ptr<float>();
  static const bool avx2 = __builtin_cpu_supports("avx2");
  constexpr int64_t kTile = 64;
  const int64_t rowTiles = (rows + kTile - 1) / kTile, colTiles = (cols + kTile - 1) / kTile;
  at::parallel_for(0, rowTiles * colTiles, 4, [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t) {
      const int64_t r0 = (t / colTiles) * kTile, c0 = (t % colTiles) * kTile;
      const int64_t r1 = std::min(rows, r0 + kTile), c1 = std::min(cols, c0 + kTile);
      int64_t rFull = r0, cFull = c0; // ends of the 8 x 8 blocks
      if (avx2) {
        rFull = r0 + (r1 - r0) / 8 * 8;
        cFull = c0 + (c1 - c0) / 8 * 8;
        for (int64_t r = r0; r < rFull; r += 8)
          for (int64_t c = c0; c < cFull; c += 8)
            transpose8x8(src + r * cols + c, cols, dst + c * rows + r, rows);
      }
      // The edges: columns past the last block (all rows), rows past it.
      for (int64_t r = r0; r < r1; ++r)
        for (int64_t c = (r < rFull ? cFull : c0); c < c1; ++c)
          dst[c * rows + r] = src[r * cols + c];
    }
  });
  return out;
}

/// The gradients of a linear's weight and bias from its input x2d (M x K)
/// and output gradient dy (M x N), as asked (undefined otherwise).
///
/// dW = dy^T x is a linear of dy^T with weight x^T. oneDNN reads the weight
/// operand with any strides, but LibTorch copies the input operand
/// contiguous with a generic strided copy (about 5 ms for a SLaK-T stage-1
/// activation): the narrower of dy and x is transposed here with 8 x 8
/// register tiles. Where x has fewer features, dW^T = x^T dy is computed and
/// transposed back (weight-sized), and x^T gains a row of ones, so the same
/// matmul also gives db = the column sums of dy (the wider operand, read
/// once instead of twice).
std::pair<torch::Tensor, torch::Tensor>
weightAndBiasGrad(const torch::Tensor &x2d, const torch::Tensor &dy, bool weight, bool bias) {
  torch::Tensor dw, db;
  if (!weight && !bias)
    return {dw, db};
  const int64_t in = x2d.size(1);
  if (weight && in < dy.size(1)) {
    const auto dwT = matmul(transposed(x2d, bias), dy.t(), {});
    dw = transposed(dwT.narrow(0, 0, in));
    if (bias)
      db = dwT[in];
    return {dw, db};
  }
  if (weight)
    dw = matmul(transposed(dy), x2d.t(), {});
  if (bias)
    db = dy.sum(0);
  return {dw, db};
}

struct OneDnnLinearFunction : public torch::autograd::Function<OneDnnLinearFunction> {
  static torch::Tensor forward(torch::autograd::AutogradContext *ctx, const torch::Tensor &x2d,
                               const torch::Tensor &weight,
                               const std::optional<torch::Tensor> &bias) {
    ctx->save_for_backward({x2d, weight});
    ctx->saved_data["bias"] = bias.has_value();
    return matmul(x2d, weight, bias.value_or(torch::Tensor()));
  }

  static torch::autograd::tensor_list backward(torch::autograd::AutogradContext *ctx,
                                               torch::autograd::tensor_list grads) {
    const auto saved = ctx->get_saved_variables();
    const auto &x2d = saved[0], &weight = saved[1];
    const auto dy = grads[0].contiguous();
    torch::Tensor dx;
    // dx = dy W: a linear with weight W^T, passed as the transposed view
    // (oneDNN packs the weight operand from any strides; a contiguous copy
    // through LibTorch costs 5 ms for a SLaK-T stage-4 weight).
    if (ctx->needs_input_grad(0))
      dx = matmul(dy, weight.t(), {});
    auto [dw, db] = weightAndBiasGrad(x2d, dy, ctx->needs_input_grad(1),
                                      ctx->saved_data["bias"].toBool() && ctx->needs_input_grad(2));
    return {dx, dw, db};
  }
};

/// A block's MLP, gelu(x W1^T + b1) W2^T + b2, as one autograd function:
/// the forward keeps the GELU's slope (models/Gelu.h) instead of the first
/// linear's output, and the backward multiplies by it inside the second
/// linear's dx matmul (oneDNN's binary "mul" post-op), so the GELU's
/// backward is no pass of its own. It keeps as many activations as the
/// separate linear, GELU, linear functions: x, the GELU's output and its
/// slope, where those keep x, the first linear's output and the GELU's.
struct MlpFunction : public torch::autograd::Function<MlpFunction> {
  static torch::Tensor forward(torch::autograd::AutogradContext *ctx, const torch::Tensor &x2d,
                               const torch::Tensor &w1, const std::optional<torch::Tensor> &b1,
                               const torch::Tensor &w2, const std::optional<torch::Tensor> &b2) {
    auto g = matmul(x2d, w1, b1.value_or(torch::Tensor()));
    auto slope = torch::empty_like(g);
    float *gp = g.data_ptr<float>(), *sp = slope.data_ptr<float>();
    at::parallel_for(0, g.numel(), 1 << 14, [&](int64_t begin, int64_t end) {
      geluWithSlope(gp + begin, gp + begin, sp + begin, end - begin); // in place
    });
    ctx->save_for_backward({x2d, w1, g, slope, w2});
    ctx->saved_data["b1"] = b1.has_value();
    ctx->saved_data["b2"] = b2.has_value();
    return matmul(g, w2, b2.value_or(torch::Tensor()));
  }

  static torch::autograd::tensor_list backward(torch::autograd::AutogradContext *ctx,
                                               torch::autograd::tensor_list grads) {
    const auto saved = ctx->get_saved_variables();
    const auto &x2d = saved[0], &w1 = saved[1], &g = saved[2], &slope = saved[3], &w2 = saved[4];
    const auto dy = grads[0].contiguous();
    const bool hasB1 = ctx->saved_data["b1"].toBool(), hasB2 = ctx->saved_data["b2"].toBool();
    // needs_input_grad counts the tensors given: an absent b1 shifts w2.
    const int w2Input = hasB1 ? 3 : 2;
    const bool wantX = ctx->needs_input_grad(0), wantW1 = ctx->needs_input_grad(1),
               wantB1 = hasB1 && ctx->needs_input_grad(2);
    auto [dw2, db2] = weightAndBiasGrad(g, dy, ctx->needs_input_grad(w2Input),
                                        hasB2 && ctx->needs_input_grad(w2Input + 1));
    torch::Tensor dx, dw1, db1;
    if (wantX || wantW1 || wantB1) {
      // dh = (dy W2) * gelu'(h), the product inside the matmul's output pass.
      const auto dh = oneDnnOps()->binary.call(dy, slope, w2.t(), std::nullopt, "mul");
      if (wantX)
        dx = matmul(dh, w1.t(), {});
      std::tie(dw1, db1) = weightAndBiasGrad(x2d, dh, wantW1, wantB1);
    }
    return {dx, dw1, db1, dw2, db2};
  }
};

} // namespace

int parallelForThreads() {
  std::atomic<int> threads{0};
  at::parallel_for(0, at::get_num_threads(), 1, [&](int64_t begin, int64_t end) {
    if (begin < end)
      ++threads;
  });
  return threads.load();
}

bool oneDnnLinearApplies(const torch::Tensor &x) {
  return x.device().is_cpu() && x.scalar_type() == torch::kFloat && !x.is_mkldnn() &&
         x.layout() == torch::kStrided && x.dim() >= 2 && oneDnnOps().has_value();
}

namespace {

/// oneDNN serves x and this weight (else torch::linear).
bool onOneDnn(const torch::Tensor &x, const torch::Tensor &weight) {
  return oneDnnLinearApplies(x) && weight.scalar_type() == torch::kFloat;
}

/// Whether autograd will want gradients of any of these (undefined ones skipped).
bool needsGrad(std::initializer_list<torch::Tensor> tensors) {
  if (!torch::GradMode::is_enabled())
    return false;
  for (const auto &t : tensors)
    if (t.defined() && t.requires_grad())
      return true;
  return false;
}

} // namespace

torch::Tensor linear(const torch::Tensor &x, const torch::Tensor &weight,
                     const torch::Tensor &bias) {
  if (!onOneDnn(x, weight))
    return torch::linear(x, weight, bias);
  TORCH_CHECK(weight.dim() == 2 && weight.size(1) == x.size(-1), "slak linear: input with ",
              x.size(-1), " features does not match weight ", weight.sizes());
  auto y = OneDnnLinearFunction::apply(rows(x), weight, optional(bias));
  return y.view(outputShape(x, weight.size(0)));
}

torch::Tensor linearGelu(const torch::Tensor &x, const torch::Tensor &weight,
                         const torch::Tensor &bias) {
  if (needsGrad({x, weight, bias}) || !onOneDnn(x, weight))
    return torch::gelu(linear(x, weight, bias));
  return matmul(rows(x), weight, bias, "gelu").view(outputShape(x, weight.size(0)));
}

namespace {

/// weight and bias times a per-output-feature scale (undefined: as they
/// are). The scale rides on the weights (weight-sized work, differentiable)
/// instead of a pass over the output and another in the backward.
std::pair<torch::Tensor, torch::Tensor>
scaled(const torch::Tensor &weight, const torch::Tensor &bias, const torch::Tensor &scale) {
  if (!scale.defined())
    return {weight, bias};
  return {weight * scale.unsqueeze(1), bias.defined() ? bias * scale : bias};
}

} // namespace

torch::Tensor linearScaleAdd(const torch::Tensor &x, const torch::Tensor &weight,
                             const torch::Tensor &bias, const torch::Tensor &scale,
                             const torch::Tensor &residual) {
  const auto [w, b] = scaled(weight, bias, scale);
  if (!residual.defined())
    return linear(x, w, b);
  const auto shape = outputShape(x, weight.size(0));
  if (needsGrad({x, weight, bias, scale, residual}) || !onOneDnn(x, weight) ||
      residual.sizes() != c10::IntArrayRef(shape) || !residual.is_contiguous() ||
      residual.scalar_type() != torch::kFloat)
    return residual + linear(x, w, b);
  return oneDnnOps()->binary.call(rows(x), rows(residual), w, optional(b), "add").view(shape);
}

torch::Tensor mlp(const torch::Tensor &x, const torch::Tensor &w1, const torch::Tensor &b1,
                  const torch::Tensor &w2, const torch::Tensor &b2, const torch::Tensor &scale,
                  const torch::Tensor &residual) {
  static const bool atenGelu = torchAskedFor("SLAK_GELU");
  if (atenGelu || !needsGrad({x, w1, b1, w2, b2, scale}) || !onOneDnn(x, w1) ||
      w2.scalar_type() != torch::kFloat || !geluVectorized())
    return linearScaleAdd(linearGelu(x, w1, b1), w2, b2, scale, residual);
  TORCH_CHECK(w1.dim() == 2 && w1.size(1) == x.size(-1) && w2.dim() == 2 &&
                  w2.size(1) == w1.size(0),
              "slak mlp: input with ", x.size(-1), " features does not match weights ", w1.sizes(),
              " and ", w2.sizes());
  const auto [w, b] = scaled(w2, b2, scale);
  auto y = MlpFunction::apply(rows(x), w1, optional(b1), w, optional(b))
               .view(outputShape(x, w2.size(0)));
  return residual.defined() ? residual + y : y;
}

} // namespace slak::models

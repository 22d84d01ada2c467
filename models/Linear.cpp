#include "models/Linear.h"

#include <ATen/Config.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/autograd.h>
#include <torch/torch.h>

#include <cstdlib>
#include <cstring>
#include <optional>

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

const std::optional<OneDnnOps> &oneDnnOps() {
  static const std::optional<OneDnnOps> ops = []() -> std::optional<OneDnnOps> {
    const char *choice = std::getenv("SLAK_LINEAR");
    if ((choice && std::strcmp(choice, "torch") == 0) || !at::hasMKLDNN())
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
    torch::Tensor dx, dw, db;
    // dx = dy W: a linear with weight W^T (weight-sized: copied contiguous).
    if (ctx->needs_input_grad(0))
      dx = matmul(dy, weight.t().contiguous(), {});
    // dW = dy^T x, a linear of dy^T with weight x^T. oneDNN reads the weight
    // operand in place and LibTorch copies the input operand contiguous, so
    // the narrower of dy and x is the one copied: where x has fewer
    // features, dW^T = x^T dy is computed and transposed (weight-sized).
    if (ctx->needs_input_grad(1))
      dw = x2d.size(1) < dy.size(1) ? matmul(x2d.t(), dy.t(), {}).t().contiguous()
                                    : matmul(dy.t(), x2d.t(), {});
    if (ctx->saved_data["bias"].toBool() && ctx->needs_input_grad(2))
      db = dy.sum(0);
    return {dx, dw, db};
  }
};

} // namespace

bool oneDnnLinearApplies(const torch::Tensor &x) {
  return x.device().is_cpu() && x.scalar_type() == torch::kFloat && !x.is_mkldnn() &&
         x.layout() == torch::kStrided && x.dim() >= 2 && oneDnnOps().has_value();
}

torch::Tensor linear(const torch::Tensor &x, const torch::Tensor &weight,
                     const torch::Tensor &bias) {
  if (!oneDnnLinearApplies(x) || weight.scalar_type() != torch::kFloat)
    return torch::linear(x, weight, bias);
  TORCH_CHECK(weight.dim() == 2 && weight.size(1) == x.size(-1), "slak linear: input with ",
              x.size(-1), " features does not match weight ", weight.sizes());
  auto y = OneDnnLinearFunction::apply(rows(x), weight, optional(bias));
  return y.view(outputShape(x, weight.size(0)));
}

torch::Tensor linearGelu(const torch::Tensor &x, const torch::Tensor &weight,
                         const torch::Tensor &bias) {
  const bool needGrad =
      torch::GradMode::is_enabled() &&
      (x.requires_grad() || weight.requires_grad() || (bias.defined() && bias.requires_grad()));
  if (needGrad || !oneDnnLinearApplies(x) || weight.scalar_type() != torch::kFloat)
    return torch::gelu(linear(x, weight, bias));
  return matmul(rows(x), weight, bias, "gelu").view(outputShape(x, weight.size(0)));
}

torch::Tensor linearScaleAdd(const torch::Tensor &x, const torch::Tensor &weight,
                             const torch::Tensor &bias, const torch::Tensor &scale,
                             const torch::Tensor &residual) {
  const bool needGrad =
      torch::GradMode::is_enabled() &&
      (x.requires_grad() || weight.requires_grad() || (bias.defined() && bias.requires_grad()) ||
       (scale.defined() && scale.requires_grad()) || residual.requires_grad());
  const auto shape = outputShape(x, weight.size(0));
  if (needGrad || !oneDnnLinearApplies(x) || weight.scalar_type() != torch::kFloat ||
      residual.sizes() != c10::IntArrayRef(shape) || !residual.is_contiguous() ||
      residual.scalar_type() != torch::kFloat) {
    auto y = linear(x, weight, bias);
    return residual + (scale.defined() ? scale * y : y);
  }
  auto w = scale.defined() ? weight * scale.unsqueeze(1) : weight;
  auto b = scale.defined() && bias.defined() ? bias * scale : bias;
  return oneDnnOps()->binary.call(rows(x), rows(residual), w, optional(b), "add").view(shape);
}

} // namespace slak::models

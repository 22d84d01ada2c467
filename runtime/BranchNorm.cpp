// sumOfNormedBranches: SLaK's training-time sum of per-branch BatchNorms,
// out = sum_b BN_b(y_b), over the per-branch outputs y [B, N, C, H, W] of
// slak::lk_conv.
//
// On the CPU (fp32, BatchNorms in training mode) it runs as one autograd
// function of two passes each way instead of B BatchNorms and B - 1 adds:
//   forward:  per-channel sums of every branch in one read of y, then out =
//             sum_b y_b * scale_b + shift in one read of y and one write;
//   backward: per-channel sums of g and g * y_b in one read of g and y, then
//             every dy_b = A_b g + K_b y_b + D_b in one more read and one write,
//             written straight into a [B, N, C, H, W] gradient.
// LibTorch's modules instead read and write each branch several times, and
// the backward of selecting y_b zero-fills a full [B, N, C, H, W] tensor per
// branch before the branch gradients are summed into one.
//
// The statistics are those of torch::nn::BatchNorm2d in training mode: batch
// mean and biased variance normalise; the running mean and the unbiased
// running variance move by the module's momentum (or the cumulative average
// where it has none), and num_batches_tracked counts the call. Anything else
// (eval-mode modules, other devices or dtypes, modules without affine
// parameters or running statistics) takes the modules themselves.
#include "runtime/LKConv2d.h"

#include <ATen/Parallel.h>
#include <torch/autograd.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

namespace slak {
namespace {

/// Where element (b, n, c, p) of y lives (p = pixel h * W + w): either every
/// branch channels-last (channel stride 1, pixel stride C) or every branch
/// NCHW (pixel stride 1, channel stride H * W); any branch and image strides.
struct BranchLayout {
  int64_t branches, images, channels, pixels;
  int64_t branchStride, imageStride, channelStride, pixelStride;

  bool channelsLast() const { return channelStride == 1; }
  int64_t at(int64_t b, int64_t n, int64_t c, int64_t p) const {
    return b * branchStride + n * imageStride + c * channelStride + p * pixelStride;
  }
};

/// The layout of y if the fused kernels read it as it is.
std::optional<BranchLayout> layoutOf(const at::Tensor &y) {
  BranchLayout l{y.size(0),   y.size(1),   y.size(2), y.size(3) * y.size(4),
                 y.stride(0), y.stride(1), 0,         0};
  const int64_t c = l.channels, h = y.size(3), w = y.size(4);
  if (y.stride(2) == 1 && y.stride(4) == c && y.stride(3) == w * c && y.stride(1) == h * w * c) {
    l.channelStride = 1;
    l.pixelStride = c;
  } else if (y.stride(4) == 1 && y.stride(3) == w && y.stride(2) == h * w &&
             y.stride(1) == c * h * w) {
    l.channelStride = h * w;
    l.pixelStride = 1;
  } else {
    return std::nullopt;
  }
  return l;
}

/// A [N, C, H, W] tensor in the branches' layout.
at::Tensor imageLike(const at::Tensor &y, const BranchLayout &l) {
  auto options = y.options();
  if (l.channelsLast())
    options = options.memory_format(at::MemoryFormat::ChannelsLast);
  return at::empty({y.size(1), y.size(2), y.size(3), y.size(4)}, options);
}

/// Row ranges of the (image, pixel) rows for each OpenMP thread's partial
/// sums, and their reduction.
template <typename Body> std::vector<double> partialSums(int64_t rows, int64_t width, Body body) {
  const int64_t parts = std::max<int64_t>(1, std::min<int64_t>(at::get_num_threads(), rows));
  std::vector<double> partial(static_cast<size_t>(parts * width), 0.0);
  at::parallel_for(0, parts, 1, [&](int64_t begin, int64_t end) {
    for (int64_t part = begin; part < end; ++part) {
      const int64_t r0 = rows * part / parts, r1 = rows * (part + 1) / parts;
      body(r0, r1, partial.data() + part * width);
    }
  });
  std::vector<double> total(static_cast<size_t>(width), 0.0);
  for (int64_t part = 0; part < parts; ++part)
    for (int64_t i = 0; i < width; ++i)
      total[i] += partial[part * width + i];
  return total;
}

/// NCHW layouts: per-branch, per-channel sums over images and pixels of
/// term(t, b, y index, image index) (rows = image channels, inner loop over
/// pixels). Term t of branch b lands in sums[(t * B + b) * C + c].
template <int Terms, typename Term>
std::vector<double> planeSums(const BranchLayout &l, int64_t branchesSummed, Term term) {
  const int64_t width = Terms * branchesSummed * l.channels;
  const int64_t rows = l.images * l.channels;
  return partialSums(rows, width, [&](int64_t r0, int64_t r1, double *acc) {
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t n = r / l.channels, c = r % l.channels;
      const int64_t base = l.at(0, n, c, 0);
      for (int64_t b = 0; b < branchesSummed; ++b) {
        const int64_t imageBase = n * l.imageStride + c * l.channelStride;
        for (int t = 0; t < Terms; ++t) {
          double s = 0;
#pragma omp simd reduction(+ : s)
          for (int64_t p = 0; p < l.pixels; ++p)
            s += term(t, b, base + p, imageBase + p);
          acc[(t * branchesSummed + b) * l.channels + c] += s;
        }
      }
    }
  });
}

/// NCHW layouts: visits each (image, channel) plane: write(branch-0 index,
/// image index, channel, length). The element of branch b is at branch-0
/// index + b * branchStride.
template <typename Write> void forEachPlane(const BranchLayout &l, Write write) {
  at::parallel_for(0, l.images * l.channels, 4, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t n = r / l.channels, c = r % l.channels;
      write(l.at(0, n, c, 0), n * l.imageStride + c * l.channelStride, c, l.pixels);
    }
  });
}

// Channels-last layouts: `rows` pixel rows of C channels, row r at r * C in
// every tensor, branch b of y (and of its gradient) at b * branchStride.
// Plain loops over channels, compiled for AVX-512, AVX2 + FMA and the
// baseline and picked when the library loads (the rest of the library is
// built for the baseline).
#define SLAK_CHANNEL_LOOPS                                                                         \
  __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))

/// acc[b C + c] += y_b, acc[(B + b) C + c] += y_b^2.
SLAK_CHANNEL_LOOPS void rowStatSums(const float *y, int64_t branchStride, int64_t B, int64_t C,
                                    int64_t rows, double *acc) {
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t b = 0; b < B; ++b) {
      const float *__restrict yb = y + b * branchStride + r * C;
      double *__restrict sum = acc + b * C;
      double *__restrict squares = acc + (B + b) * C;
      for (int64_t c = 0; c < C; ++c) {
        const double v = yb[c];
        sum[c] += v;
        squares[c] += v * v;
      }
    }
}

/// acc[c] += g, acc[(B + b) C + c] += g y_b (acc[b C + c], b > 0, unused).
SLAK_CHANNEL_LOOPS void rowGradSums(const float *y, int64_t branchStride, const float *g, int64_t B,
                                    int64_t C, int64_t rows, double *acc) {
  for (int64_t r = 0; r < rows; ++r) {
    const float *__restrict gr = g + r * C;
    double *__restrict sum = acc;
    for (int64_t c = 0; c < C; ++c)
      sum[c] += gr[c];
    for (int64_t b = 0; b < B; ++b) {
      const float *__restrict yb = y + b * branchStride + r * C;
      double *__restrict products = acc + (B + b) * C;
      for (int64_t c = 0; c < C; ++c)
        products[c] += static_cast<double>(gr[c]) * yb[c];
    }
  }
}

/// out = shift + sum_b y_b scale_b (scale [B, C], shift [C]).
SLAK_CHANNEL_LOOPS void rowNormedSum(const float *y, int64_t branchStride, int64_t B, int64_t C,
                                     int64_t rows, const float *scale, const float *shift,
                                     float *out) {
  for (int64_t r = 0; r < rows; ++r) {
    float *__restrict o = out + r * C;
    const float *__restrict y0 = y + r * C;
    for (int64_t c = 0; c < C; ++c)
      o[c] = shift[c] + y0[c] * scale[c];
    for (int64_t b = 1; b < B; ++b) {
      const float *__restrict yb = y + b * branchStride + r * C;
      const float *__restrict sb = scale + b * C;
      for (int64_t c = 0; c < C; ++c)
        o[c] += yb[c] * sb[c];
    }
  }
}

/// dy_b = a_b g + k_b y_b + d_b (a, k, d [B, C]).
SLAK_CHANNEL_LOOPS void rowBranchGrads(const float *y, int64_t branchStride, const float *g,
                                       int64_t B, int64_t C, int64_t rows, const float *a,
                                       const float *k, const float *d, float *dy) {
  for (int64_t r = 0; r < rows; ++r) {
    const float *__restrict gr = g + r * C;
    for (int64_t b = 0; b < B; ++b) {
      const float *__restrict yb = y + b * branchStride + r * C;
      float *__restrict db = dy + b * branchStride + r * C;
      const float *__restrict ab = a + b * C, *__restrict kb = k + b * C,
                              *__restrict dd = d + b * C;
      for (int64_t c = 0; c < C; ++c)
        db[c] = ab[c] * gr[c] + kb[c] * yb[c] + dd[c];
    }
  }
}

/// Channels-last rows split over LibTorch's threads.
/// rows(count, offset of the first).
template <typename Rows> void forEachRowRange(const BranchLayout &l, Rows rows) {
  at::parallel_for(0, l.images * l.pixels, 64,
                   [&](int64_t r0, int64_t r1) { rows(r1 - r0, r0 * l.channels); });
}

struct FusedBranchNorm : public torch::autograd::Function<FusedBranchNorm> {
  /// y [B, N, C, H, W], gamma and beta [B, C]. Returns out [N, C, H, W] and
  /// the batch mean and biased variance [B, C] (not differentiable).
  static torch::autograd::variable_list forward(torch::autograd::AutogradContext *ctx,
                                                const at::Tensor &y, const at::Tensor &gamma,
                                                const at::Tensor &beta, double eps) {
    const BranchLayout l = *layoutOf(y);
    const int64_t B = l.branches, C = l.channels;
    const double count = static_cast<double>(l.images * l.pixels);
    const float *yp = y.data_ptr<float>();
    const auto sums =
        l.channelsLast()
            ? partialSums(l.images * l.pixels, 2 * B * C,
                          [&](int64_t r0, int64_t r1, double *acc) {
                            rowStatSums(yp + r0 * C, l.branchStride, B, C, r1 - r0, acc);
                          })
            : planeSums<2>(l, B, [&](int t, int64_t b, int64_t i, int64_t) {
                const double v = yp[i + b * l.branchStride];
                return t == 0 ? v : v * v;
              });
    auto mean = at::empty({B, C}, y.options());
    auto var = at::empty({B, C}, y.options());
    auto invstd = at::empty({B, C}, y.options());
    auto g = gamma.contiguous(), bt = beta.contiguous();
    const float *gp = g.data_ptr<float>(), *bp = bt.data_ptr<float>();
    float *meanp = mean.data_ptr<float>(), *varp = var.data_ptr<float>(),
          *sp = invstd.data_ptr<float>();
    std::vector<float> scale(B * C), shift(C, 0.f);
    for (int64_t b = 0; b < B; ++b)
      for (int64_t c = 0; c < C; ++c) {
        const int64_t i = b * C + c;
        const double m = sums[i] / count;
        const double v = std::max(0.0, sums[(B + b) * C + c] / count - m * m);
        const double s = 1.0 / std::sqrt(v + eps);
        meanp[i] = static_cast<float>(m);
        varp[i] = static_cast<float>(v);
        sp[i] = static_cast<float>(s);
        scale[i] = static_cast<float>(gp[i] * s);
        shift[c] += static_cast<float>(bp[i] - m * gp[i] * s);
      }
    at::Tensor out = imageLike(y, l);
    float *op = out.data_ptr<float>();
    if (l.channelsLast()) {
      forEachRowRange(l, [&](int64_t rows, int64_t at) {
        rowNormedSum(yp + at, l.branchStride, B, C, rows, scale.data(), shift.data(), op + at);
      });
    } else {
      forEachPlane(l, [&](int64_t yi, int64_t oi, int64_t c, int64_t len) {
        const float s0 = scale[c], sh = shift[c];
        float *o = op + oi;
#pragma omp simd
        for (int64_t j = 0; j < len; ++j)
          o[j] = sh + yp[yi + j] * s0;
        for (int64_t b = 1; b < B; ++b) {
          const float *yb = yp + yi + b * l.branchStride, sb = scale[b * C + c];
#pragma omp simd
          for (int64_t j = 0; j < len; ++j)
            o[j] += yb[j] * sb;
        }
      });
    }
    ctx->save_for_backward({y, gamma, mean, invstd});
    ctx->mark_non_differentiable({mean, var});
    return {out, mean, var};
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext *ctx,
                                                 torch::autograd::variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const at::Tensor &y = saved[0];
    const BranchLayout l = *layoutOf(y);
    const int64_t B = l.branches, C = l.channels;
    const double count = static_cast<double>(l.images * l.pixels);
    // dL/dout in the branches' layout.
    at::Tensor g = grads[0];
    if (!g.defined())
      return {at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
    g = g.contiguous(l.channelsLast() ? at::MemoryFormat::ChannelsLast
                                      : at::MemoryFormat::Contiguous);
    const float *yp = y.data_ptr<float>(), *gp = g.data_ptr<float>();
    // Term 0 of branch 0: sum g; term 1 of branch b: sum g * y_b. (Term 0 of
    // the other branches repeats sum g and is not read.)
    const auto sums = l.channelsLast()
                          ? partialSums(l.images * l.pixels, 2 * B * C,
                                        [&](int64_t r0, int64_t r1, double *acc) {
                                          rowGradSums(yp + r0 * C, l.branchStride, gp + r0 * C, B,
                                                      C, r1 - r0, acc);
                                        })
                          : planeSums<2>(l, B, [&](int t, int64_t b, int64_t i, int64_t gi) {
                              const double gv = gp[gi];
                              return t == 0 ? (b == 0 ? gv : 0.0) : gv * yp[i + b * l.branchStride];
                            });
    const auto gamma = saved[1].contiguous(), mean = saved[2], invstd = saved[3];
    const float *gmp = gamma.data_ptr<float>(), *mp = mean.data_ptr<float>(),
                *sp = invstd.data_ptr<float>();
    auto dgamma = at::empty({B, C}, y.options()), dbeta = at::empty({B, C}, y.options());
    float *dgp = dgamma.data_ptr<float>(), *dbp = dbeta.data_ptr<float>();
    std::vector<float> a(B * C), k(B * C), d(B * C);
    for (int64_t b = 0; b < B; ++b)
      for (int64_t c = 0; c < C; ++c) {
        const int64_t i = b * C + c;
        const double sg = sums[c], s = sp[i], m = mp[i];
        const double sgx = sums[(B + b) * C + c] - m * sg; // sum g * (y - mean)
        dbp[i] = static_cast<float>(sg);
        dgp[i] = static_cast<float>(s * sgx);
        const double ga = gmp[i] * s;
        const double kk = -ga * s * s * sgx / count;
        a[i] = static_cast<float>(ga);
        k[i] = static_cast<float>(kk);
        d[i] = static_cast<float>(-ga * sg / count - kk * m);
      }
    // dy has y's strides, so one index serves both.
    at::Tensor dy = at::empty_strided(y.sizes(), y.strides(), y.options());
    float *dp = dy.data_ptr<float>();
    if (l.channelsLast()) {
      forEachRowRange(l, [&](int64_t rows, int64_t at) {
        rowBranchGrads(yp + at, l.branchStride, gp + at, B, C, rows, a.data(), k.data(), d.data(),
                       dp + at);
      });
    } else {
      forEachPlane(l, [&](int64_t yi, int64_t gi, int64_t c, int64_t len) {
        for (int64_t b = 0; b < B; ++b) {
          const int64_t off = yi + b * l.branchStride;
          const float aa = a[b * C + c], kk = k[b * C + c], dd = d[b * C + c];
#pragma omp simd
          for (int64_t j = 0; j < len; ++j)
            dp[off + j] = aa * gp[gi + j] + kk * yp[off + j] + dd;
        }
      });
    }
    return {dy, dgamma, dbeta, at::Tensor()};
  }
};

bool fusedApplies(const at::Tensor &y, const std::vector<torch::nn::BatchNorm2d> &norms) {
  if (!y.is_cpu() || y.scalar_type() != at::kFloat || y.dim() != 5 || !layoutOf(y) ||
      y.size(1) * y.size(3) * y.size(4) < 2)
    return false;
  for (const auto &norm : norms) {
    const auto &o = norm->options;
    if (!norm->is_training() || !o.affine() || !o.track_running_stats() ||
        o.eps() != norms.front()->options.eps() || !norm->weight.defined() ||
        norm->weight.scalar_type() != at::kFloat || norm->weight.device() != y.device())
      return false;
  }
  return true;
}

} // namespace

at::Tensor sumOfNormedBranches(const at::Tensor &y, std::vector<torch::nn::BatchNorm2d> norms) {
  TORCH_CHECK(y.dim() == 5 && y.size(0) == static_cast<int64_t>(norms.size()),
              "slak::sumOfNormedBranches: outputs of shape ", y.sizes(), " for ", norms.size(),
              " BatchNorms, expected [", norms.size(), ", N, C, H, W]");
  if (!fusedApplies(y, norms)) {
    at::Tensor out;
    for (size_t b = 0; b < norms.size(); ++b) {
      at::Tensor normed = norms[b]->forward(y.select(0, static_cast<int64_t>(b)));
      out = out.defined() ? out + normed : normed;
    }
    return out;
  }
  std::vector<at::Tensor> gammas, betas;
  for (const auto &norm : norms) {
    gammas.push_back(norm->weight);
    betas.push_back(norm->bias);
  }
  auto results =
      FusedBranchNorm::apply(y, at::stack(gammas), at::stack(betas), norms.front()->options.eps());
  // The running statistics, as BatchNorm2d's training forward moves them.
  torch::NoGradGuard noGrad;
  const double count = static_cast<double>(y.size(1) * y.size(3) * y.size(4));
  for (size_t b = 0; b < norms.size(); ++b) {
    auto &norm = norms[b];
    norm->num_batches_tracked.add_(1);
    const double momentum =
        norm->options.momentum().has_value()
            ? *norm->options.momentum()
            : 1.0 / static_cast<double>(norm->num_batches_tracked.item<int64_t>());
    const auto i = static_cast<int64_t>(b);
    norm->running_mean.mul_(1 - momentum).add_(results[1][i], momentum);
    norm->running_var.mul_(1 - momentum).add_(results[2][i], momentum * count / (count - 1));
  }
  return results[0];
}

} // namespace slak

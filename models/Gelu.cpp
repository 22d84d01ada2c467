#include "models/Gelu.h"

#include <immintrin.h>

#include <cmath>
#include <initializer_list>

// GCC 12's avx512fintrin.h starts _mm512_min_ps, _mm512_roundscale_ps and
// _mm512_scalef_ps from a self-initialised "undefined" vector, which
// -Wmaybe-uninitialized reports wherever they are inlined.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

namespace slak::models {
namespace {

// erf(x) = x P(x^2) / Q(x^2) on |x| <= 3.9, fitted for this file by
// iteratively reweighted least squares over [0, 4] (2.1e-8 in double,
// 3.5e-7 evaluated in fp32); +-1 beyond (erf(3.9) rounds to 1 in fp32).
constexpr float kP[] = {1.128378977e+00f, 1.962545426e-01f, 5.346813535e-02f,
                        4.003852916e-03f, 2.880408976e-04f, 1.974727949e-06f};
constexpr float kQ[] = {
    1.0f, 5.072572197e-01f, 1.164786519e-01f, 1.544485394e-02f, 1.216399556e-03f, 3.747975451e-05f};
constexpr float kErfOne = 3.9f;
constexpr float kInvSqrt2 = 0.707106781f, kInvSqrt2Pi = 0.398942280f;
// Where |h| exceeds this, Phi(h) is 0 or 1 and h phi(h) below 1e-20: g and
// the slope are set exactly (h * Phi(h) would be NaN at -inf, h phi(h) at
// +-inf).
constexpr float kTail = 10.0f;

} // namespace

void geluWithSlopeScalar(const float *h, float *g, float *slope, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const float x = h[i];
    const float cdf = 0.5f + 0.5f * std::erf(x * kInvSqrt2);
    const bool tail = std::fabs(x) > kTail;
    const float hPdf = tail ? 0.0f : x * std::exp(-0.5f * x * x) * kInvSqrt2Pi;
    if (slope)
      slope[i] = cdf + hPdf;
    g[i] = x < -kTail ? 0.0f : x * cdf;
  }
}

namespace {

__attribute__((target("avx512f"))) inline __m512 erfVector(__m512 x) {
  const __m512 absX = _mm512_abs_ps(x);
  const __m512 a = _mm512_min_ps(absX, _mm512_set1_ps(kErfOne));
  const __m512 t = _mm512_mul_ps(a, a);
  __m512 p = _mm512_set1_ps(kP[5]), q = _mm512_set1_ps(kQ[5]);
  for (int k = 4; k >= 0; --k) {
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(kP[k]));
    q = _mm512_fmadd_ps(q, t, _mm512_set1_ps(kQ[k]));
  }
  __m512 e = _mm512_min_ps(_mm512_div_ps(_mm512_mul_ps(a, p), q), _mm512_set1_ps(1.0f));
  e = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(absX, a, _CMP_GT_OQ), e, _mm512_set1_ps(1.0f));
  // The sign of x (NaN stays NaN: min and the blends pass it through a).
  const __m512i sign = _mm512_and_si512(_mm512_castps_si512(x), _mm512_set1_epi32(INT32_MIN));
  return _mm512_castsi512_ps(_mm512_or_si512(_mm512_castps_si512(e), sign));
}

/// exp(z) for z <= 0: z = k ln 2 + r, |r| <= ln 2 / 2, exp(r) by its Taylor
/// polynomial of degree 7 (relative error below 6e-9), times 2^k (scalef:
/// below -87 the result goes to 0 smoothly through the subnormals).
__attribute__((target("avx512f"))) inline __m512 expVector(__m512 z) {
  const __m512 k = _mm512_roundscale_ps(_mm512_mul_ps(z, _mm512_set1_ps(1.44269504f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(k, _mm512_set1_ps(0.693145752f), z); // ln 2 in two parts
  r = _mm512_fnmadd_ps(k, _mm512_set1_ps(1.42860677e-6f), r);
  __m512 e = _mm512_set1_ps(1.0f / 5040);
  for (float c : {1.0f / 720, 1.0f / 120, 1.0f / 24, 1.0f / 6, 0.5f, 1.0f, 1.0f})
    e = _mm512_fmadd_ps(e, r, _mm512_set1_ps(c));
  return _mm512_scalef_ps(e, k);
}

__attribute__((target("avx512f"))) void geluAvx512(const float *h, float *g, float *slope,
                                                   int64_t n) {
  const __m512 half = _mm512_set1_ps(0.5f), tail = _mm512_set1_ps(kTail);
  int64_t i = 0;
  for (; i < n; i += 16) {
    const __mmask16 m = n - i >= 16 ? __mmask16(0xffff) : __mmask16((1u << (n - i)) - 1);
    const __m512 x = _mm512_maskz_loadu_ps(m, h + i);
    const __m512 cdf =
        _mm512_fmadd_ps(half, erfVector(_mm512_mul_ps(x, _mm512_set1_ps(kInvSqrt2))), half);
    const __mmask16 inTail = _mm512_cmp_ps_mask(_mm512_abs_ps(x), tail, _CMP_GT_OQ);
    if (slope) {
      const __m512 z = _mm512_mul_ps(_mm512_mul_ps(x, x), _mm512_set1_ps(-0.5f));
      __m512 hPdf = _mm512_mul_ps(_mm512_mul_ps(x, expVector(z)), _mm512_set1_ps(kInvSqrt2Pi));
      hPdf = _mm512_maskz_mov_ps(_knot_mask16(inTail), hPdf);
      _mm512_mask_storeu_ps(slope + i, m, _mm512_add_ps(cdf, hPdf));
    }
    const __mmask16 below = _mm512_cmp_ps_mask(x, _mm512_set1_ps(-kTail), _CMP_LT_OQ);
    _mm512_mask_storeu_ps(g + i, m, _mm512_maskz_mul_ps(_knot_mask16(below), x, cdf));
  }
}

} // namespace

bool geluVectorized() {
  static const bool avx512 = __builtin_cpu_supports("avx512f");
  return avx512;
}

void geluWithSlope(const float *h, float *g, float *slope, int64_t n) {
  if (n <= 0)
    return;
  if (geluVectorized())
    geluAvx512(h, g, slope, n);
  else
    geluWithSlopeScalar(h, g, slope, n);
}

} // namespace slak::models

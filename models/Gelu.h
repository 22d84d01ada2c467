// The erf GELU of the blocks' MLPs and its slope, in one pass:
//   g = h * Phi(h),  slope = dg/dh = Phi(h) + h * phi(h),
// Phi the standard normal CDF, 0.5 (1 + erf(h / sqrt 2)), phi its density.
//
// Training keeps the slope instead of h, so the GELU's backward is one
// multiply that oneDNN applies inside the second linear's dx matmul (a
// post-op) rather than a pass of its own (models/Linear.cpp, mlp()).
//
// On AVX-512 hosts erf is a rational function fitted for this file (odd,
// x P(x^2) / Q(x^2), clamped to +-1 from |x| = 3.9: 2e-8 in double, 4e-7
// evaluated in fp32) and exp a degree-7 Taylor polynomial after reduction by
// powers of two, 16 lanes at a time; elsewhere the C library's erf and exp,
// one element at a time (callers there keep LibTorch's GELU: see
// geluVectorized).
#pragma once

#include <cstdint>

namespace slak::models {

/// g[i] = gelu(h[i]) and, where slope is not null, slope[i] = gelu'(h[i]),
/// for i < n. g may alias h (in place); slope may not. NaN propagates; h =
/// +-inf gives g = +inf / 0 and slope 1 / 0. Single-threaded: callers split
/// long arrays.
void geluWithSlope(const float *h, float *g, float *slope, int64_t n);

/// Whether geluWithSlope runs 16 lanes at a time on this host (AVX-512).
bool geluVectorized();

/// geluWithSlope one element at a time through the C library (what hosts
/// without AVX-512 run; exposed for tests).
void geluWithSlopeScalar(const float *h, float *g, float *slope, int64_t n);

} // namespace slak::models

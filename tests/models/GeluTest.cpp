// models/Gelu: the GELU and its slope against the double-precision
// definitions (g = h Phi(h), slope = Phi(h) + h phi(h)), 16 lanes and one
// element at a time, every tail length, in place, and at inf / NaN.
#include "models/Gelu.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <string>
#include <vector>

using slak::models::geluVectorized;
using slak::models::geluWithSlope;
using slak::models::geluWithSlopeScalar;

namespace {

using Kernel = void (*)(const float *, float *, float *, int64_t);

double cdf(double x) { return 0.5 * std::erfc(-x / std::sqrt(2.0)); }
double pdf(double x) { return std::exp(-0.5 * x * x) / std::sqrt(2.0 * M_PI); }

/// Every point of [-12, 12] in steps of 1/4096: g within 5e-7 max(1, |h|)
/// of the definition, the slope within 5e-7.
void expectAccurate(Kernel kernel, const std::string &what) {
  std::vector<float> h;
  for (int i = -12 * 4096; i <= 12 * 4096; ++i)
    h.push_back(static_cast<float>(i) / 4096);
  std::vector<float> g(h.size()), slope(h.size());
  kernel(h.data(), g.data(), slope.data(), static_cast<int64_t>(h.size()));
  double worstG = 0, worstSlope = 0, atG = 0, atSlope = 0;
  for (size_t i = 0; i < h.size(); ++i) {
    const double x = h[i];
    const double eg = std::fabs(g[i] - x * cdf(x)) / std::max(1.0, std::fabs(x));
    const double es = std::fabs(slope[i] - (cdf(x) + x * pdf(x)));
    if (eg > worstG)
      worstG = eg, atG = x;
    if (es > worstSlope)
      worstSlope = es, atSlope = x;
  }
  EXPECT_LE(worstG, 5e-7) << what << ": g off by " << worstG << " at h = " << atG;
  EXPECT_LE(worstSlope, 5e-7) << what << ": slope off by " << worstSlope << " at h = " << atSlope;
}

TEST(Gelu, MatchesTheDefinitionVectorised) {
  if (!geluVectorized())
    GTEST_SKIP() << "this host has no AVX-512: geluWithSlope runs the scalar form";
  expectAccurate(geluWithSlope, "vectorised");
}

TEST(Gelu, MatchesTheDefinitionScalar) { expectAccurate(geluWithSlopeScalar, "scalar"); }

TEST(Gelu, EveryTailLengthInPlaceAndWithoutSlope) {
  for (int64_t n = 1; n <= 40; ++n) {
    std::vector<float> h(n), g(n), slope(n, -7.0f), want(n), wantSlope(n);
    for (int64_t i = 0; i < n; ++i)
      h[i] = static_cast<float>(i * 0.37 - 6.0);
    geluWithSlope(h.data(), g.data(), slope.data(), n);
    geluWithSlopeScalar(h.data(), want.data(), wantSlope.data(), n);
    for (int64_t i = 0; i < n; ++i) {
      EXPECT_NEAR(g[i], want[i], 1e-6 * std::max(1.0f, std::fabs(h[i]))) << "n " << n << " i " << i;
      EXPECT_NEAR(slope[i], wantSlope[i], 1e-6) << "n " << n << " i " << i;
    }
    // In place, no slope: the same g, nothing written past n.
    std::vector<float> inPlace = h;
    inPlace.push_back(123.0f);
    geluWithSlope(inPlace.data(), inPlace.data(), nullptr, n);
    for (int64_t i = 0; i < n; ++i)
      EXPECT_EQ(inPlace[i], g[i]) << "in place, n " << n << " i " << i;
    EXPECT_EQ(inPlace[n], 123.0f) << "wrote past the end, n " << n;
  }
}

TEST(Gelu, InfinitiesAndNaN) {
  const float inf = std::numeric_limits<float>::infinity();
  const float nan = std::numeric_limits<float>::quiet_NaN();
  for (Kernel kernel : {Kernel(geluWithSlope), Kernel(geluWithSlopeScalar)}) {
    const float h[] = {inf, -inf, nan, 0.0f, 1e30f, -1e30f};
    float g[6], slope[6];
    kernel(h, g, slope, 6);
    EXPECT_EQ(g[0], inf);
    EXPECT_EQ(slope[0], 1.0f);
    EXPECT_EQ(g[1], 0.0f);
    EXPECT_EQ(slope[1], 0.0f);
    EXPECT_TRUE(std::isnan(g[2]));
    EXPECT_TRUE(std::isnan(slope[2]));
    EXPECT_EQ(g[3], 0.0f);
    EXPECT_EQ(slope[3], 0.5f);
    EXPECT_EQ(g[4], 1e30f);
    EXPECT_EQ(slope[4], 1.0f);
    EXPECT_EQ(g[5], 0.0f);
    EXPECT_EQ(slope[5], 0.0f);
  }
}

} // namespace

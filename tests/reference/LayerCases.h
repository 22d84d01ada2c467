// LayerCases: what the oracle tests share: a layer case (input shape,
// branches, mask density, output form), its fixed seed, random inputs, and
// the comparison of results with the oracle's.
#pragma once

#include "codegen/KernelSpec.h"
#include "codegen/TapTable.h"
#include "codegen/reference/Reference.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <ostream>
#include <random>
#include <string>
#include <vector>

namespace slak::reference {

struct LayerCase {
  std::string name;
  Shape in;
  std::vector<codegen::Branch> branches;
  double density = 1.0; // < 1: branches get random masks of this density
  bool perBranchOutputs = false;
  bool hasBias = false;
};

inline std::ostream &operator<<(std::ostream &os, const LayerCase &c) { return os << c.name; }

inline std::string caseName(const ::testing::TestParamInfo<LayerCase> &info) {
  return info.param.name;
}

/// SLaK's M x N, N x M and N x N branches, "same" padding.
inline std::vector<codegen::Branch> slakBranches(int m, int n) {
  return {codegen::Branch::same(m, n), codegen::Branch::same(n, m), codegen::Branch::same(n, n)};
}

/// A fixed seed per case, the same on every standard library (FNV-1a).
inline uint32_t seedOf(const std::string &name) {
  uint32_t h = 2166136261u;
  for (char ch : name)
    h = (h ^ static_cast<uint8_t>(ch)) * 16777619u;
  return h;
}

inline std::vector<float> uniform(std::mt19937 &rng, int64_t count) {
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  std::vector<float> v(count);
  for (float &e : v)
    e = dist(rng);
  return v;
}

/// Fails with the worst index unless |got - ref| <= 1e-4 * max |ref| everywhere.
inline void expectNear(const std::vector<float> &got, const std::vector<float> &ref,
                       const std::string &what) {
  ASSERT_EQ(got.size(), ref.size()) << what;
  double scale = 0.0, worst = 0.0;
  size_t worstAt = 0;
  for (size_t k = 0; k < ref.size(); ++k) {
    scale = std::max(scale, std::abs(static_cast<double>(ref[k])));
    const double err = std::abs(static_cast<double>(got[k]) - ref[k]);
    if (!(err <= worst)) { // also catches NaN
      worst = err;
      worstAt = k;
    }
  }
  // All-zero references (density 0) must come out exactly zero.
  const double tolerance = 1e-4 * scale;
  EXPECT_LE(worst, tolerance) << what << ": worst at flat index " << worstAt << " got "
                              << got[worstAt] << " expected " << ref[worstAt] << " (max |ref| "
                              << scale << ")";
}

/// Random weights of each of `branches` for `channels` channels.
inline Weights randomWeights(std::mt19937 &rng, const std::vector<codegen::Branch> &branches,
                             int64_t channels) {
  Weights weights;
  for (const codegen::Branch &b : branches)
    weights.push_back(uniform(rng, channels * b.windowSize()));
  return weights;
}

/// Live entries are 1, or with `anyNonZero` any byte 1..255 (the oracle
/// must treat every non-zero byte as live).
inline codegen::BranchMask randomMask(std::mt19937 &rng, int64_t count, double density,
                                      bool anyNonZero = false) {
  std::bernoulli_distribution isLive(density);
  std::uniform_int_distribution<int> value(1, 255);
  codegen::BranchMask m(count);
  for (uint8_t &e : m)
    e = isLive(rng) ? static_cast<uint8_t>(anyNonZero ? value(rng) : 1) : 0;
  return m;
}

} // namespace slak::reference

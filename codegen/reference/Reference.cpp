#include "codegen/reference/Reference.h"

#include <sstream>
#include <stdexcept>
#include <string>

namespace slak::reference {
namespace {

using codegen::Branch;
using codegen::BranchMask;
using codegen::KernelSpec;

std::string shapeText(const Shape &s) {
  std::ostringstream os;
  os << s.n << "x" << s.c << "x" << s.h << "x" << s.w;
  return os.str();
}

[[noreturn]] void fail(const std::string &fn, const std::string &what) {
  throw std::invalid_argument("reference::" + fn + ": " + what);
}

/// Output geometry of a validated call.
struct Geometry {
  Shape in, out;
};

Geometry checkSpecAndShape(const char *fn, const KernelSpec &spec, const Shape &in) {
  if (std::string err = spec.validate(); !err.empty())
    fail(fn, "invalid spec: " + err);
  if (in.n <= 0 || in.c <= 0 || in.h <= 0 || in.w <= 0)
    fail(fn, "input shape " + shapeText(in) + " has a non-positive dimension");
  if (in.c != spec.channels)
    fail(fn, "input has " + std::to_string(in.c) + " channels, expected " +
                 std::to_string(spec.channels) + " (spec.channels)");
  if (spec.height != -1 && in.h != spec.height)
    fail(fn, "input height is " + std::to_string(in.h) + ", expected " +
                 std::to_string(spec.height) + " (spec.height)");
  if (spec.width != -1 && in.w != spec.width)
    fail(fn, "input width is " + std::to_string(in.w) + ", expected " + std::to_string(spec.width) +
                 " (spec.width)");
  Shape out{in.n, in.c, spec.outHeight(in.h), spec.outWidth(in.w)};
  if (out.h <= 0 || out.w <= 0)
    fail(fn, "input " + shapeText(in) + " gives an empty output " + shapeText(out) +
                 "; the input must be at least as large as kernel - 2 * padding");
  return {in, out};
}

void checkSize(const char *fn, const std::string &what, size_t actual, int64_t expected,
               const std::string &expectedText) {
  if (static_cast<int64_t>(actual) != expected)
    fail(fn, what + " has " + std::to_string(actual) + " elements, expected " +
                 std::to_string(expected) + " (" + expectedText + ")");
}

void checkWeights(const char *fn, const KernelSpec &spec, const Weights &weights) {
  if (weights.size() != spec.branches.size())
    fail(fn, "got weights for " + std::to_string(weights.size()) + " branches, expected " +
                 std::to_string(spec.branches.size()) + " (one per branch)");
  for (size_t b = 0; b < weights.size(); ++b) {
    const Branch &br = spec.branches[b];
    std::ostringstream shape;
    shape << spec.channels << "x1x" << br.kernelH << "x" << br.kernelW;
    checkSize(fn, "weight of branch " + std::to_string(b), weights[b].size(),
              spec.channels * br.windowSize(), shape.str());
  }
}

void checkMasks(const char *fn, const KernelSpec &spec, const std::vector<BranchMask> &masks) {
  if (masks.empty())
    return; // every branch dense
  if (masks.size() != spec.branches.size())
    fail(fn, "got masks for " + std::to_string(masks.size()) + " branches, expected " +
                 std::to_string(spec.branches.size()) +
                 " (one per branch, empty = dense) or none at all");
  for (size_t b = 0; b < masks.size(); ++b) {
    if (masks[b].empty())
      continue;
    const Branch &br = spec.branches[b];
    std::ostringstream shape;
    shape << spec.channels << "x1x" << br.kernelH << "x" << br.kernelW << ", or empty for dense";
    checkSize(fn, "mask of branch " + std::to_string(b), masks[b].size(),
              spec.channels * br.windowSize(), shape.str());
  }
}

void checkDy(const char *fn, const KernelSpec &spec, const Shape &out,
             const std::vector<std::vector<float>> &dy) {
  const size_t expected = spec.perBranchOutputs ? spec.branches.size() : 1;
  if (dy.size() != expected)
    fail(fn, "got " + std::to_string(dy.size()) + " dy tensors, expected " +
                 std::to_string(expected) +
                 (spec.perBranchOutputs ? " (one per branch: spec.perBranchOutputs)"
                                        : " (one shared by all branches: summed output)"));
  for (size_t b = 0; b < dy.size(); ++b)
    checkSize(fn, "dy " + std::to_string(b), dy[b].size(), out.numel(), "output " + shapeText(out));
}

bool live(const std::vector<BranchMask> &masks, size_t b, int64_t index) {
  return masks.empty() || masks[b].empty() || masks[b][index] != 0;
}

int64_t at(const Shape &s, int64_t n, int64_t c, int64_t i, int64_t j) {
  return ((n * s.c + c) * s.h + i) * s.w + j;
}

bool inside(const Shape &s, int64_t i, int64_t j) { return i >= 0 && i < s.h && j >= 0 && j < s.w; }

/// The dy that branch b sees: its own, or the shared one.
const std::vector<float> &dyOf(const KernelSpec &spec, const std::vector<std::vector<float>> &dy,
                               size_t b) {
  return spec.perBranchOutputs ? dy[b] : dy.front();
}

} // namespace

std::vector<std::vector<float>> forward(const KernelSpec &spec, const Shape &inShape,
                                        const std::vector<float> &x, const Weights &weights,
                                        const std::vector<BranchMask> &masks,
                                        const std::vector<float> &bias) {
  const char *fn = "forward";
  const Geometry geometry = checkSpecAndShape(fn, spec, inShape);
  const Shape &in = geometry.in, &out = geometry.out;
  checkSize(fn, "x", x.size(), in.numel(), "input " + shapeText(in));
  checkWeights(fn, spec, weights);
  checkMasks(fn, spec, masks);
  if (spec.hasBias)
    checkSize(fn, "bias", bias.size(), spec.channels, "spec.channels");
  else if (!bias.empty())
    fail(fn, "bias has " + std::to_string(bias.size()) +
                 " elements but spec.hasBias is false; pass an empty bias or set hasBias");

  // One branch's contribution to y[n,c,i,j], in double.
  auto branchAt = [&](size_t b, int64_t n, int64_t c, int64_t i, int64_t j) {
    const Branch &br = spec.branches[b];
    double sum = 0.0;
    for (int u = 0; u < br.kernelH; ++u)
      for (int v = 0; v < br.kernelW; ++v) {
        const int64_t tap = (c * br.kernelH + u) * br.kernelW + v;
        const int64_t xi = i + u - br.padH, xj = j + v - br.padW;
        if (live(masks, b, tap) && inside(in, xi, xj))
          sum += static_cast<double>(weights[b][tap]) * x[at(in, n, c, xi, xj)];
      }
    return sum;
  };

  const size_t numBranches = spec.branches.size();
  std::vector<std::vector<float>> y(spec.perBranchOutputs ? numBranches : 1,
                                    std::vector<float>(out.numel()));
  for (int64_t n = 0; n < out.n; ++n)
    for (int64_t c = 0; c < out.c; ++c)
      for (int64_t i = 0; i < out.h; ++i)
        for (int64_t j = 0; j < out.w; ++j) {
          if (spec.perBranchOutputs) {
            for (size_t b = 0; b < numBranches; ++b)
              y[b][at(out, n, c, i, j)] = static_cast<float>(branchAt(b, n, c, i, j));
            continue;
          }
          double sum = spec.hasBias ? bias[c] : 0.0;
          for (size_t b = 0; b < numBranches; ++b)
            sum += branchAt(b, n, c, i, j);
          y[0][at(out, n, c, i, j)] = static_cast<float>(sum);
        }
  return y;
}

std::vector<float> backwardData(const KernelSpec &spec, const Shape &inShape,
                                const std::vector<std::vector<float>> &dy, const Weights &weights,
                                const std::vector<BranchMask> &masks) {
  const char *fn = "backwardData";
  const Geometry geometry = checkSpecAndShape(fn, spec, inShape);
  const Shape &in = geometry.in, &out = geometry.out;
  checkDy(fn, spec, out, dy);
  checkWeights(fn, spec, weights);
  checkMasks(fn, spec, masks);

  // x[p,q] fed y[i,j] through tap (u,v) where i = p - u + padH, j = q - v + padW.
  std::vector<float> dx(in.numel());
  for (int64_t n = 0; n < in.n; ++n)
    for (int64_t c = 0; c < in.c; ++c)
      for (int64_t p = 0; p < in.h; ++p)
        for (int64_t q = 0; q < in.w; ++q) {
          double sum = 0.0;
          for (size_t b = 0; b < spec.branches.size(); ++b) {
            const Branch &br = spec.branches[b];
            const std::vector<float> &g = dyOf(spec, dy, b);
            for (int u = 0; u < br.kernelH; ++u)
              for (int v = 0; v < br.kernelW; ++v) {
                const int64_t tap = (c * br.kernelH + u) * br.kernelW + v;
                const int64_t i = p - u + br.padH, j = q - v + br.padW;
                if (live(masks, b, tap) && inside(out, i, j))
                  sum += static_cast<double>(weights[b][tap]) * g[at(out, n, c, i, j)];
              }
          }
          dx[at(in, n, c, p, q)] = static_cast<float>(sum);
        }
  return dx;
}

Weights backwardWeight(const KernelSpec &spec, const Shape &inShape, const std::vector<float> &x,
                       const std::vector<std::vector<float>> &dy,
                       const std::vector<BranchMask> &masks) {
  const char *fn = "backwardWeight";
  const Geometry geometry = checkSpecAndShape(fn, spec, inShape);
  const Shape &in = geometry.in, &out = geometry.out;
  checkSize(fn, "x", x.size(), in.numel(), "input " + shapeText(in));
  checkDy(fn, spec, out, dy);
  checkMasks(fn, spec, masks);

  Weights dw(spec.branches.size());
  for (size_t b = 0; b < spec.branches.size(); ++b) {
    const Branch &br = spec.branches[b];
    const std::vector<float> &g = dyOf(spec, dy, b);
    dw[b].assign(spec.channels * br.windowSize(), 0.0f);
    for (int64_t c = 0; c < in.c; ++c)
      for (int u = 0; u < br.kernelH; ++u)
        for (int v = 0; v < br.kernelW; ++v) {
          const int64_t tap = (c * br.kernelH + u) * br.kernelW + v;
          if (!spec.denseWeightGrad && !live(masks, b, tap))
            continue;
          double sum = 0.0;
          for (int64_t n = 0; n < out.n; ++n)
            for (int64_t i = 0; i < out.h; ++i)
              for (int64_t j = 0; j < out.w; ++j) {
                const int64_t xi = i + u - br.padH, xj = j + v - br.padW;
                if (inside(in, xi, xj))
                  sum += static_cast<double>(g[at(out, n, c, i, j)]) * x[at(in, n, c, xi, xj)];
              }
          dw[b][tap] = static_cast<float>(sum);
        }
  }
  return dw;
}

std::vector<float> backwardBias(const KernelSpec &spec, const Shape &inShape,
                                const std::vector<std::vector<float>> &dy) {
  const char *fn = "backwardBias";
  const Shape out = checkSpecAndShape(fn, spec, inShape).out;
  checkDy(fn, spec, out, dy);

  std::vector<float> db(spec.channels);
  for (int64_t c = 0; c < out.c; ++c) {
    double sum = 0.0;
    for (const std::vector<float> &g : dy)
      for (int64_t n = 0; n < out.n; ++n)
        for (int64_t i = 0; i < out.h; ++i)
          for (int64_t j = 0; j < out.w; ++j)
            sum += g[at(out, n, c, i, j)];
    db[c] = static_cast<float>(sum);
  }
  return db;
}

} // namespace slak::reference

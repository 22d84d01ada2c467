// Runs the emitted OpenCL kernels on the OpenCL device (PoCL on the CPU in
// CI) over the codegen case matrix and compares forward, backward-data and
// backward-weight with the reference oracle. One program per case (spec),
// reused across its shapes and mask densities.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <random>
#include <sstream>

#include "codegen/BufferLayout.h"
#include "codegen/ElementCodec.h"
#include "codegen/KernelArguments.h"
#include "codegen/KernelEmitter.h"
#include "codegen/TapTable.h"
#include "codegen/reference/Reference.h"
#include "runtime/opencl/LkConvExecutor.h"
#include "tests/codegen/CodegenCases.h"

namespace slak::codegen::testing {
namespace {

using runtime::opencl::Context;
using runtime::opencl::LkConvExecutor;

std::shared_ptr<Context> openclContext() {
  static std::shared_ptr<Context> context;
  static std::string error;
  static bool tried = false;
  if (!tried) {
    tried = true;
    try {
      context = Context::create();
    } catch (const std::exception &e) {
      error = e.what();
    }
  }
  if (!context)
    std::printf("[SKIP] no OpenCL device: %s\n", error.c_str());
  return context;
}

/// Relative tolerance (of max |reference|) for results stored in `type`.
double tolerance(ElementType type) {
  switch (type) {
  case ElementType::F32:
    return 1e-4;
  case ElementType::F16:
    return 2e-3; // output rounding: half an ulp is 2^-11
  case ElementType::BF16:
    return 8e-3; // 2^-9
  }
  return 0;
}

/// Asserts |got - ref| <= tol * max|ref| everywhere (exactly 0 when ref is all
/// zero) and reports the worst element.
void expectClose(const std::string &what, const std::vector<float> &got,
                 const std::vector<float> &ref, double tol) {
  ASSERT_EQ(got.size(), ref.size()) << what;
  double scale = 0;
  for (float r : ref)
    scale = std::max(scale, static_cast<double>(std::fabs(r)));
  double worst = 0;
  size_t worstAt = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    const double err = std::fabs(static_cast<double>(got[i]) - ref[i]);
    if (!(err <= worst) || std::isnan(got[i])) {
      worst = std::isnan(got[i]) ? INFINITY : err;
      worstAt = i;
    }
  }
  const double allowed = tol * scale + 1e-30;
  EXPECT_LE(worst, allowed) << what << ": worst at element " << worstAt << " got " << got[worstAt]
                            << " expected " << ref[worstAt] << " (max |ref| " << scale << ")";
}

std::vector<float> concat(const std::vector<std::vector<float>> &parts) {
  std::vector<float> all;
  for (const auto &p : parts)
    all.insert(all.end(), p.begin(), p.end());
  return all;
}

std::vector<std::vector<float>> split(const std::vector<float> &all, size_t parts) {
  std::vector<std::vector<float>> out(parts);
  const size_t each = all.size() / parts;
  for (size_t i = 0; i < parts; ++i)
    out[i].assign(all.begin() + i * each, all.begin() + (i + 1) * each);
  return out;
}

/// Images of C x h x w between NCHW (the oracle's order) and the spec's
/// layout: `toKernel` reorders NCHW into it, else back to NCHW.
std::vector<float> relayout(const KernelSpec &spec, const std::vector<float> &v, int64_t h,
                            int64_t w, bool toKernel) {
  if (!spec.channelsLast())
    return v;
  KernelSpec nchw = spec;
  nchw.layout = DataLayout::NCHW;
  const ImageStrides from = imageStrides(toKernel ? nchw : spec, h, w);
  const ImageStrides to = imageStrides(toKernel ? spec : nchw, h, w);
  const int64_t images = static_cast<int64_t>(v.size()) / from.image;
  std::vector<float> out(v.size());
  for (int64_t n = 0; n < images; ++n)
    for (int64_t c = 0; c < spec.channels; ++c)
      for (int64_t y = 0; y < h; ++y)
        for (int64_t x = 0; x < w; ++x)
          out[n * to.image + c * to.channel + y * to.row + x * to.pixel] =
              v[n * from.image + c * from.channel + y * from.row + x * from.pixel];
  return out;
}

class Data {
public:
  Data(uint64_t seed, ElementType type) : rng_(seed), type_(type) {}
  /// Uniform in [-1, 1), rounded to the element type (so the oracle sees
  /// exactly what the kernel reads).
  std::vector<float> uniform(int64_t count) {
    std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
    std::vector<float> v(count);
    for (float &x : v)
      x = roundToElementType(dist(rng_), type_);
    return v;
  }
  BranchMask mask(int64_t count, double density) {
    std::bernoulli_distribution live(density);
    BranchMask m(count);
    for (uint8_t &b : m)
      b = live(rng_) ? 1 : 0;
    return m;
  }

private:
  std::mt19937_64 rng_;
  ElementType type_;
};

class OpenCLKernelTest : public ::testing::TestWithParam<CodegenCase> {};

TEST_P(OpenCLKernelTest, MatchesOracle) {
  const CodegenCase &tc = GetParam();
  const KernelSpec &spec = tc.spec;
  std::shared_ptr<Context> context = openclContext();
  if (!context)
    GTEST_SKIP() << "no OpenCL device";
  const EmittedKernels kernels = emitKernels(spec);
  LkConvExecutor executor(runtime::opencl::buildProgram(context, {kernels}), kernels);
  const size_t numBranches = spec.branches.size();
  const size_t numDy = spec.perBranchOutputs ? numBranches : 1;
  const double tol = tolerance(spec.elementType);

  for (const ImageShape &shape : tc.shapes) {
    for (double density : tc.densities) {
      std::ostringstream label;
      label << tc.name << " " << shape.n << "x" << spec.channels << "x" << shape.h << "x" << shape.w
            << " density " << density;
      SCOPED_TRACE(label.str());
      Data data(std::hash<std::string>{}(label.str()), spec.elementType);
      const reference::Shape in{shape.n, spec.channels, shape.h, shape.w};
      std::vector<BranchMask> masks;
      reference::Weights weights;
      for (const Branch &b : spec.branches) {
        // Masked positions keep non-zero weights: the kernels must skip them.
        weights.push_back(data.uniform(spec.channels * b.windowSize()));
        masks.push_back(b.dense ? BranchMask{}
                                : data.mask(spec.channels * b.windowSize(), density));
      }
      const TapTable table = buildTapTable(spec, masks);
      const std::vector<float> x = data.uniform(inputCount(spec, shape.n, shape.h, shape.w));
      const std::vector<float> bias =
          spec.hasBias ? data.uniform(spec.channels) : std::vector<float>{};
      const std::vector<float> dy = data.uniform(outputCount(spec, shape.n, shape.h, shape.w));
      const std::vector<float> allWeights = concat(weights);

      // The oracle works on NCHW; the kernels read and write the spec's layout.
      const int64_t ho = spec.outHeight(shape.h), wo = spec.outWidth(shape.w);
      const std::vector<float> xk = relayout(spec, x, shape.h, shape.w, true);
      const std::vector<float> dyk = relayout(spec, dy, ho, wo, true);

      const auto yRef = reference::forward(spec, in, x, weights, masks, bias);
      const auto y = executor.forward(shape.n, shape.h, shape.w, xk, allWeights, table, bias);
      expectClose("forward", relayout(spec, y, ho, wo, false), concat(yRef), tol);

      const auto dyParts = split(dy, numDy);
      const auto dxRef = reference::backwardData(spec, in, dyParts, weights, masks);
      const auto dx = executor.backwardData(shape.n, shape.h, shape.w, dyk, allWeights, table);
      expectClose("backward-data", relayout(spec, dx, shape.h, shape.w, false), dxRef, tol);

      const auto dwRef = reference::backwardWeight(spec, in, x, dyParts, masks);
      const auto dw = executor.backwardWeight(shape.n, shape.h, shape.w, xk, dyk, table);
      expectClose("backward-weight", dw, concat(dwRef), tol);
      // The two-phase reduction gives the same bits on every run.
      const auto dwAgain = executor.backwardWeight(shape.n, shape.h, shape.w, xk, dyk, table);
      EXPECT_EQ(0, std::memcmp(dw.data(), dwAgain.data(), dw.size() * sizeof(float)))
          << "backward-weight is not deterministic";
    }
  }
}

/// What `call` throws as std::invalid_argument, or "".
std::string invalidArgument(const std::function<void()> &call) {
  try {
    call();
  } catch (const std::invalid_argument &e) {
    return e.what();
  }
  return {};
}

/// A two-channel dense 3x3 layer (with a bias when asked) built for `context`.
struct ThreeByThree {
  KernelSpec spec;
  EmittedKernels kernels;
  LkConvExecutor executor;

  static KernelSpec specWith(bool bias) {
    KernelSpec spec;
    spec.channels = 2;
    spec.branches = {Branch::same(3, 3)};
    spec.hasBias = bias;
    return spec;
  }
  ThreeByThree(const std::shared_ptr<Context> &context, bool bias)
      : spec(specWith(bias)), kernels(emitKernels(spec)),
        executor(runtime::opencl::buildProgram(context, {kernels}), kernels) {}
};

TEST(LkConvExecutorTest, RejectsBuffersOfTheWrongSize) {
  std::shared_ptr<Context> context = openclContext();
  if (!context)
    GTEST_SKIP() << "no OpenCL device";
  ThreeByThree layer(context, true);
  LkConvExecutor &executor = layer.executor;
  const TapTable table = buildTapTable(layer.spec, {BranchMask{}});
  const std::vector<float> x(2 * 2 * 4 * 4, 1.0f), w(2 * 9, 1.0f), bias(2, 0.5f);
  auto message = invalidArgument;
  EXPECT_NE(message([&] {
              executor.forward(2, 4, 5, x, w, table, bias);
            }).find("x has 64 elements, expected 80"),
            std::string::npos);
  EXPECT_NE(message([&] {
              executor.forward(2, 4, 4, x, w, table, {});
            }).find("bias has 0 elements, expected 2"),
            std::string::npos);
  // The right sizes run: all-ones 3x3 over all-ones 4x4 gives 4 (corner)
  // to 9 (inside), plus the bias.
  const std::vector<float> y = executor.forward(2, 4, 4, x, w, table, bias);
  ASSERT_EQ(y.size(), x.size());
  EXPECT_EQ(y[0], 4.5f);
  EXPECT_EQ(y[5], 9.5f);
  EXPECT_EQ(y[1], 6.5f);
}

TEST(LkConvExecutorTest, RunsOnDeviceBuffersTheBinderSized) {
  std::shared_ptr<Context> context = openclContext();
  if (!context)
    GTEST_SKIP() << "no OpenCL device";
  ThreeByThree layer(context, false);
  const int64_t n = 1, h = 4, w = 4;
  const KernelBuffers<int64_t> need =
      bufferBytes(bindPass(layer.kernels, KernelKind::Forward, n, h, w));
  auto bytes = [&](KernelBuffer b) { return static_cast<size_t>(need[static_cast<int>(b)]); };
  const std::vector<float> ones(2 * 16, 1.0f);
  const int32_t offsets[3] = {0, 0, 0};
  using runtime::opencl::Buffer;
  Buffer x(context, bytes(KernelBuffer::X), ones.data());
  Buffer wt(context, bytes(KernelBuffer::Weights), ones.data());
  Buffer tapOffsets(context, sizeof offsets, offsets), taps(context, 4), bias(context, 4);
  Buffer y(context, bytes(KernelBuffer::Y));
  Buffer shortY(context, bytes(KernelBuffer::Y) - 4);
  KernelBuffers<cl_mem> buffers{};
  auto set = [&](KernelBuffer b, cl_mem mem) { buffers[static_cast<int>(b)] = mem; };
  set(KernelBuffer::X, x.mem());
  set(KernelBuffer::Weights, wt.mem());
  set(KernelBuffer::TapOffsets, tapOffsets.mem());
  set(KernelBuffer::Taps, taps.mem());
  set(KernelBuffer::Bias, bias.mem());
  set(KernelBuffer::Y, y.mem());
  auto run = [&] { layer.executor.run(KernelKind::Forward, n, h, w, buffers); };
  run();
  std::vector<float> out(2 * 16);
  y.read(out.data(), out.size() * sizeof(float));
  EXPECT_EQ(out[0], 4.0f); // corner: 2 x 2 taps in the image
  EXPECT_EQ(out[5], 9.0f); // inside

  // A y buffer one element short, or none, is refused before anything runs.
  set(KernelBuffer::Y, shortY.mem());
  EXPECT_NE(invalidArgument(run).find("needs a y buffer of at least 128 bytes, got 124"),
            std::string::npos)
      << invalidArgument(run);
  set(KernelBuffer::Y, nullptr);
  EXPECT_NE(invalidArgument(run).find("needs a y buffer of at least 128 bytes, got none"),
            std::string::npos)
      << invalidArgument(run);
}

std::string caseName(const ::testing::TestParamInfo<CodegenCase> &info) { return info.param.name; }

INSTANTIATE_TEST_SUITE_P(Matrix, OpenCLKernelTest, ::testing::ValuesIn(codegenCases()), caseName);

/// The real models' layers of 14x14 and smaller (their defaults, batch 1).
std::vector<CodegenCase> smallModelLayers() {
  std::vector<CodegenCase> small;
  for (const CodegenCase &c : modelLayerCases())
    if (c.shapes.front().h <= 14)
      small.push_back(c);
  return small;
}

INSTANTIATE_TEST_SUITE_P(ModelLayers, OpenCLKernelTest, ::testing::ValuesIn(smallModelLayers()),
                         caseName);

} // namespace
} // namespace slak::codegen::testing

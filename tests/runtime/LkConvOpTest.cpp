// The op beyond numerics on one backend: a finite-difference check of every
// gradient, the TORCH_LIBRARY registration (the dispatcher path Python
// uses), error messages, reuse of tap tables for unchanged masks, and the
// OpenCL program cache (binaries reused across "processes", corrupt or
// rejected binaries rebuilt).
#include <gtest/gtest.h>

#include <ATen/ATen.h>
#include <ATen/core/dispatch/Dispatcher.h>

#include <fstream>
#include <unistd.h>

#include "codegen/DefaultSchedule.h"
#include "codegen/KernelEmitter.h"
#include "runtime/Files.h"
#include "runtime/LkConvOp.h"
#include "runtime/LkConvBackend.h"
#include "tests/runtime/RuntimeTestSupport.h"

#ifdef SLAK_HAVE_OPENCL
#include "runtime/OpenCLProgramCache.h"
#endif

namespace slak::testing {
namespace {

using runtime::BackendKind;

at::Tensor rand(at::IntArrayRef shape) { return at::rand(shape, at::kFloat) * 2 - 1; }

/// lk_conv is linear in x, in each weight and in the bias, so a central
/// difference along any direction is exact up to f32 rounding:
///   <grad, v> == (L(p + v) - L(p - v)) / 2   with L = sum(y * g).
TEST(LkConvGradientTest, FiniteDifferencesMatchEveryGradient) {
  at::manual_seed(3);
  const at::Tensor x = rand({2, 5, 9, 10});
  std::vector<at::Tensor> w = {rand({5, 1, 11, 3}), rand({5, 1, 3, 11}), rand({5, 1, 3, 3})};
  const std::vector<at::Tensor> masks = {randomMask(w[0], 0.5, 1), at::Tensor(),
                                         randomMask(w[2], 0.7, 2)};
  const at::Tensor bias = rand({5});
  const at::Tensor g = rand({2, 5, 9, 10});
  auto loss = [&](const at::Tensor &xx, const std::vector<at::Tensor> &ww, const at::Tensor &bb) {
    return (lk_conv(xx, ww, masks, bb).to(at::kDouble) * g.to(at::kDouble)).sum();
  };

  at::Tensor xv = x.clone().requires_grad_(true), bv = bias.clone().requires_grad_(true);
  std::vector<at::Tensor> wv;
  for (const at::Tensor &t : w)
    wv.push_back(t.clone().requires_grad_(true));
  loss(xv, wv, bv).backward();

  at::NoGradGuard noGrad;
  auto check = [&](const at::Tensor &grad, const at::Tensor &direction,
                   const std::function<double(const at::Tensor &)> &lossAlong,
                   const std::string &what) {
    const double analytic = (grad.to(at::kDouble) * direction.to(at::kDouble)).sum().item<double>();
    const double numeric = (lossAlong(direction) - lossAlong(-direction)) / 2;
    EXPECT_NEAR(analytic, numeric, 1e-4 * (std::abs(numeric) + 1)) << what;
    EXPECT_GT(std::abs(numeric), 1e-3) << what << ": a direction with no effect tests nothing";
  };
  check(
      xv.grad(), rand(x.sizes()),
      [&](const at::Tensor &v) { return loss(x + v, w, bias).item<double>(); }, "dx");
  for (size_t b = 0; b < w.size(); ++b) {
    // Along the live taps only: dead taps must not move the loss at all.
    at::Tensor v = rand(w[b].sizes());
    if (masks[b].defined())
      v = v * masks[b];
    check(
        wv[b].grad(), v,
        [&](const at::Tensor &dv) {
          std::vector<at::Tensor> moved = w;
          moved[b] = w[b] + dv;
          return loss(x, moved, bias).item<double>();
        },
        "dW[" + std::to_string(b) + "]");
    if (masks[b].defined()) {
      std::vector<at::Tensor> moved = w;
      moved[b] = w[b] + (1 - masks[b]) * 10; // only dead taps change
      EXPECT_EQ(loss(x, moved, bias).item<double>(), loss(x, w, bias).item<double>())
          << "a masked tap changed the output of branch " << b;
    }
  }
  check(
      bv.grad(), rand({5}),
      [&](const at::Tensor &v) { return loss(x, w, bias + v).item<double>(); }, "dbias");
}

TEST(LkConvRegistrationTest, DispatcherOpMatchesTheCppApiWithAutograd) {
  const auto handle = c10::Dispatcher::singleton().findSchema({"slak::lk_conv", ""});
  ASSERT_TRUE(handle.has_value()) << "torch.ops.slak.lk_conv is not registered";
  std::ostringstream schema;
  schema << handle->schema();
  EXPECT_NE(schema.str().find("slak::lk_conv(Tensor x, Tensor[] weights, Tensor?[] masks, "
                              "Tensor? bias=None, bool per_branch=False"),
            std::string::npos)
      << schema.str();
  auto op = handle->typed<at::Tensor(
      const at::Tensor &, at::TensorList, const c10::List<std::optional<at::Tensor>> &,
      const std::optional<at::Tensor> &, bool, bool, at::IntArrayRef, c10::string_view)>();
  at::manual_seed(4);
  const at::Tensor x = rand({1, 3, 6, 7}).requires_grad_(true);
  const at::Tensor w0 = rand({3, 1, 5, 3}).requires_grad_(true);
  const at::Tensor w1 = rand({3, 1, 3, 5}).requires_grad_(true);
  const at::Tensor mask = randomMask(w0, 0.5, 9);
  c10::List<std::optional<at::Tensor>> masks;
  masks.push_back(mask);
  masks.push_back(std::nullopt);
  const at::Tensor y = op.call(x, {w0, w1}, masks, std::nullopt, true, false, {}, "auto");
  ASSERT_EQ(y.sizes(), at::IntArrayRef({2, 1, 3, 6, 7}));
  const at::Tensor expected =
      lk_conv(x, {w0, w1}, {mask, at::Tensor()}, std::nullopt, LkConvOptions().per_branch(true));
  expectClose(y, expected, 0, "dispatcher vs C++ API");
  // Explicit padding through the schema's flat int[] (same as "same" here).
  const at::Tensor padded =
      op.call(x, {w0, w1}, masks, std::nullopt, true, false, {2, 1, 1, 2}, "auto");
  expectClose(padded, expected, 0, "explicit same padding");
  y.sum().backward();
  ASSERT_TRUE(x.grad().defined());
  ASSERT_TRUE(w0.grad().defined());
  const TorchResult ref = torchReference(x, {w0, w1}, {mask, at::Tensor()}, std::nullopt, true,
                                         false, at::ones_like(y));
  expectClose(x.grad(), ref.dx, 1e-4, "dx through the dispatcher");
  expectClose(w0.grad(), ref.dw[0], 1e-4, "dW0 through the dispatcher");
}

TEST(LkConvErrorTest, MessagesNameTheArgumentTheValueAndTheExpectation) {
  const at::Tensor x = at::zeros({2, 5, 8, 8});
  const at::Tensor w = at::zeros({5, 1, 5, 3});
  const at::Tensor w2 = at::zeros({5, 1, 3, 5});
  auto has = [](const std::string &message, const std::string &part) {
    EXPECT_NE(message.find(part), std::string::npos)
        << "message '" << message << "' lacks '" << part << "'";
  };
  has(errorOf([&] {
        lk_conv(at::zeros({5, 8, 8}), {w});
      }),
      "x has rank 3 (shape [5, 8, 8]), expected a 4-D NCHW tensor");
  has(errorOf([&] { lk_conv(x.to(at::kDouble), {w}); }),
      "x has dtype Double, expected Float, Half or BFloat16");
  has(errorOf([&] { lk_conv(x, {}); }), "weights is empty");
  has(errorOf([&] {
        lk_conv(x, {w, at::zeros({6, 1, 3, 5})});
      }),
      "weights[1] has 6 channels (shape [6, 1, 3, 5]), expected 5");
  has(errorOf([&] {
        lk_conv(x, {at::zeros({5, 2, 5, 3})});
      }),
      "weights[0] has shape [5, 2, 5, 3], expected [C, 1, KH, KW]");
  has(errorOf([&] {
        lk_conv(x, {at::zeros({5, 1, 4, 3})});
      }),
      "weights[0] has kernel 4x3, expected odd sizes");
  has(errorOf([&] {
        lk_conv(x, {w, w2.to(at::kHalf)});
      }),
      "weights[1] has dtype Half, expected Float (the dtype of x)");
  // Meta tensors dispatch to the fake kernel, which only the Python package
  // registers (python/slak/_meta.py); without it LibTorch names the op.
  has(errorOf([&] { lk_conv(x, {w.to(at::kMeta)}); }), "slak::lk_conv");
  has(errorOf([&] { lk_conv(x, {w.to(at::kMeta)}); }), "Meta");
  has(errorOf([&] { lk_conv(x, {w, w2}, {at::ones_like(w)}); }), "masks has 1 entries, expected 2");
  has(errorOf([&] {
        lk_conv(x, {w, w2}, {at::ones_like(w2), at::Tensor()});
      }),
      "masks[0] has shape [5, 1, 3, 5], expected [5, 1, 5, 3]");
  has(errorOf([&] { lk_conv(x, {w}, {}, at::zeros({4})); }), "bias has shape [4], expected [5]");
  has(errorOf([&] { lk_conv(x, {w}, {}, at::zeros({5}), LkConvOptions().per_branch(true)); }),
      "a bias with per_branch outputs is ambiguous");
  has(errorOf([&] { lk_conv(x, {w}, {}, std::nullopt, LkConvOptions().with_backend("gpu")); }),
      "backend is 'gpu', expected one of 'auto', 'cpu', 'reference', 'opencl' or 'cuda'");
  has(errorOf([&] { lk_conv(x, {w}, {}, std::nullopt, LkConvOptions().with_backend("cuda")); }),
      "backend 'cuda' needs CUDA tensors, but x is on cpu");
  has(errorOf([&] {
        lk_conv(x, {w, w2}, {}, std::nullopt, LkConvOptions().with_paddings({{2, 1}, {0, 0}}));
      }),
      "gives a different output size than branch 0");
  has(errorOf([&] {
        lk_conv(x, {w, w2}, {}, std::nullopt, LkConvOptions().with_paddings({{2, 1}}));
      }),
      "padding has 1 (padH, padW) pairs, expected 2");
}

TEST(LkConvTapsTest, UnchangedMasksReuseTheirTapsAndChangedOnesRebuild) {
  // The CPU backend uploads the taps into its pipelines once per LayerTaps.
  if (std::string(runtime::cpuBackendName()) != "halide")
    GTEST_SKIP() << "the reference CPU backend uploads nothing";
  at::manual_seed(5);
  const at::Tensor x = rand({1, 4, 8, 8});
  const at::Tensor w = rand({4, 1, 7, 3});
  at::Tensor mask = randomMask(w, 0.5, 3);
  const at::Tensor y1 = lk_conv(x, {w}, {mask});
  const int64_t uploads = runtime::runtimeStats().tapUploads;
  const at::Tensor y2 = lk_conv(x, {w}, {mask});
  EXPECT_EQ(runtime::runtimeStats().tapUploads, uploads) << "same mask, same version: reused";
  expectClose(y2, y1, 0, "same masks");
  // In-place change: new version, new taps, new result.
  mask.zero_();
  const at::Tensor y3 = lk_conv(x, {w}, {mask});
  EXPECT_EQ(runtime::runtimeStats().tapUploads, uploads + 1);
  EXPECT_EQ(y3.abs().max().item<float>(), 0.0f) << "every tap masked: zero output";
  // A copy with the same values is another tensor: built again, same result.
  const at::Tensor y4 = lk_conv(x, {w}, {mask.clone()});
  expectClose(y4, y3, 0, "copied masks");
}

TEST(LkConvScheduleTest, GpuBackendsAskTheScheduleProvider) {
  if (!backendAvailable(BackendKind::OpenCL))
    GTEST_SKIP() << "no OpenCL device";
  int calls = 0;
  double density = 0;
  runtime::setScheduleProvider([&](const codegen::KernelSpec &spec, double d) {
    ++calls;
    density = d;
    codegen::Schedule s = codegen::defaultSchedule(spec, d);
    s.weightSplit = 3; // a schedule the default never picks
    return s;
  });
  at::manual_seed(8);
  const at::Tensor x = rand({1, 3, 7, 9}).requires_grad_(true);
  const at::Tensor w = rand({3, 1, 5, 5}).requires_grad_(true);
  const at::Tensor mask = randomMask(w, 0.4, 4);
  const at::Tensor y =
      lk_conv(x, {w}, {mask}, std::nullopt, LkConvOptions().with_backend("opencl"));
  y.sum().backward();
  runtime::setScheduleProvider(nullptr);
  EXPECT_EQ(calls, 1);
  EXPECT_NEAR(density, 0.4, 0.01);
  const TorchResult ref =
      torchReference(x, {w}, {mask}, std::nullopt, false, false, at::ones_like(y));
  expectClose(y, ref.y, 1e-4, "forward with a provided schedule");
  expectClose(w.grad(), ref.dw[0], 1e-4, "dW with weightSplit 3");
}

#ifdef SLAK_HAVE_OPENCL

TEST(OpenCLProgramCacheTest, BinariesAreReusedAndBadOnesRebuilt) {
  if (!backendAvailable(BackendKind::OpenCL))
    GTEST_SKIP() << "no OpenCL device";
  const std::string dir =
      runtime::joinPath(::testing::TempDir(), "slak_oclcache_" + std::to_string(::getpid()));
  runtime::removeTree(dir);
  codegen::KernelSpec spec;
  spec.channels = 3;
  spec.branches = {codegen::Branch::same(5, 3)};
  const codegen::EmittedKernels kernels = codegen::emitKernels(spec);
  const std::string source = codegen::assembleSource(codegen::GpuLanguage::OpenCL, {kernels});
  const std::string name = kernels.name(codegen::KernelKind::Forward);

  runtime::KernelCache first(dir);
  runtime::OpenCLProgramCache built(runtime::openclContext(), first);
  built.get(source)->kernel(name);
  EXPECT_EQ(built.stats().sourceBuilds, 1);
  built.get(source);
  EXPECT_EQ(built.stats().memoryHits, 1);
  const std::string path = first.entryPath("opencl", built.key(source, "-cl-std=CL1.2"));
  ASSERT_TRUE(runtime::fileExists(path)) << "no binary stored at " << path;

  // The next process loads the binary.
  runtime::KernelCache second(dir);
  runtime::OpenCLProgramCache loaded(runtime::openclContext(), second);
  auto program = loaded.get(source);
  EXPECT_EQ(loaded.stats().binaryLoads, 1);
  EXPECT_EQ(loaded.stats().sourceBuilds, 0);
  EXPECT_TRUE(program->fromBinary());
  EXPECT_NE(program->kernel(name), nullptr);

  // A corrupt file is detected by its checksum and rebuilt.
  {
    std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(100);
    f.put('\x5a');
  }
  runtime::KernelCache third(dir);
  runtime::OpenCLProgramCache rebuilt(runtime::openclContext(), third);
  rebuilt.get(source);
  EXPECT_EQ(third.stats().corrupt, 1);
  EXPECT_EQ(rebuilt.stats().sourceBuilds, 1);

  // A well-formed entry the device rejects is removed and rebuilt.
  third.store("opencl", built.key(source, "-cl-std=CL1.2"), "not a program binary");
  runtime::KernelCache fourth(dir);
  runtime::OpenCLProgramCache rejected(runtime::openclContext(), fourth);
  rejected.get(source)->kernel(name);
  EXPECT_EQ(rejected.stats().rejectedBinaries, 1);
  EXPECT_EQ(rejected.stats().sourceBuilds, 1);
  runtime::removeTree(dir);
}

TEST(OpenCLProgramCacheTest, LkConvReloadsItsProgramsFromDisk) {
  if (!backendAvailable(BackendKind::OpenCL))
    GTEST_SKIP() << "no OpenCL device";
  at::manual_seed(6);
  const at::Tensor x = rand({1, 3, 5, 6});
  const at::Tensor w = rand({3, 1, 9, 3});
  const LkConvOptions options = LkConvOptions().with_backend("opencl");
  const at::Tensor y1 = lk_conv(x, {w}, {}, std::nullopt, options);
  // Forget every compiled program: the next call must come from the disk
  // cache (this process's or an earlier run's), not from a compile.
  runtime::clearKernelRegistry();
  runtime::OpenCLProgramCache &programs = runtime::OpenCLProgramCache::global();
  programs.clearMemory();
  const auto before = programs.stats();
  const at::Tensor y2 = lk_conv(x, {w}, {}, std::nullopt, options);
  EXPECT_EQ(programs.stats().binaryLoads, before.binaryLoads + 1);
  EXPECT_EQ(programs.stats().sourceBuilds, before.sourceBuilds);
  expectClose(y2, y1, 0, "reloaded program");
}

#endif

} // namespace
} // namespace slak::testing

// The CUDA backend on a GPU (each test prints "[SKIP] no CUDA device" and
// skips elsewhere): the codegen case matrix (tests/codegen/CodegenCases.h)
// compiled by NVRTC for the device and run through the driver API against
// the oracle, lk_conv on a non-default stream, a kernel package's CUDA
// kernels, and a timing of the SLaK-T stage-1 layer against PyTorch's CUDA
// convolution (printed, never asserted). scripts/device-check.sh runs these.
#include <gtest/gtest.h>

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>
#include <c10/core/Stream.h>
#include <c10/core/StreamGuard.h>
#include <c10/core/impl/DeviceGuardImplInterface.h>
#include <torch/cuda.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <functional>
#include <random>
#include <sstream>
#include <unistd.h>

#include "codegen/BufferLayout.h"
#include "codegen/DefaultSchedule.h"
#include "codegen/ElementCodec.h"
#include "codegen/KernelEmitter.h"
#include "codegen/package/KernelPackage.h"
#include "codegen/reference/Reference.h"
#include "runtime/Files.h"
#include "runtime/KernelPackageLoader.h"
#include "runtime/LayerTaps.h"
#include "runtime/LkConvOp.h"
#include "runtime/LkConvBackend.h"
#include "runtime/cuda/CudaDriver.h"
#include "tests/codegen/CodegenCases.h"
#include "tests/runtime/RuntimeTestSupport.h"

namespace slak::testing {
namespace {

using codegen::Branch;
using codegen::ElementType;
using codegen::KernelKind;
using codegen::KernelSpec;
using runtime::BackendKind;

bool gpuOrSkip() { return backendAvailable(BackendKind::Cuda); }

at::ScalarType scalarType(ElementType type) {
  return type == ElementType::F32   ? at::kFloat
         : type == ElementType::F16 ? at::kHalf
                                    : at::kBFloat16;
}

double tolerance(ElementType type) {
  return type == ElementType::F32 ? 1e-4 : type == ElementType::F16 ? 2e-3 : 8e-3;
}

/// Rounded to the element type, so the oracle sees what the kernel reads.
std::vector<float> uniform(std::mt19937_64 &rng, int64_t count, ElementType type) {
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  std::vector<float> v(count);
  for (float &x : v)
    x = codegen::roundToElementType(dist(rng), type);
  return v;
}

at::Tensor onGpu(const std::vector<float> &v, ElementType type) {
  return at::tensor(at::ArrayRef<float>(v), at::kFloat)
      .to(at::Device(at::kCUDA, 0), scalarType(type))
      .contiguous();
}

std::vector<float> toHost(const at::Tensor &t) {
  const at::Tensor f = t.to(at::kCPU, at::kFloat).contiguous();
  return std::vector<float>(f.data_ptr<float>(), f.data_ptr<float>() + f.numel());
}

std::vector<float> concat(const std::vector<std::vector<float>> &parts) {
  std::vector<float> all;
  for (const auto &p : parts)
    all.insert(all.end(), p.begin(), p.end());
  return all;
}

void expectCloseVec(const std::vector<float> &got, const std::vector<float> &want, double tol,
                    const std::string &what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  expectClose(at::tensor(at::ArrayRef<float>(got)), at::tensor(at::ArrayRef<float>(want)), tol,
              what);
}

TEST(CudaRuntimeTest, CodegenMatrixOnTheGpuMatchesTheOracle) {
  if (!gpuOrSkip())
    GTEST_SKIP() << "no CUDA device";
  const auto &driver = runtime::cuda::CudaDriver::get();
  std::printf("device 0: %s (sm_%d), driver %d\n", driver.deviceName(0).c_str(),
              driver.computeCapability(0), driver.version());
  const std::vector<codegen::testing::CodegenCase> cases = codegen::testing::codegenCases();
  // One translation unit for the whole matrix: one NVRTC compile.
  std::vector<codegen::EmittedKernels> layers;
  for (const auto &c : cases)
    layers.push_back(codegen::emitKernels(c.spec));
  const std::string source = codegen::assembleSource(codegen::GpuLanguage::Cuda, layers);
  const auto start = std::chrono::steady_clock::now();
  int runs = 0;
  for (size_t i = 0; i < cases.size(); ++i) {
    const auto &tc = cases[i];
    const KernelSpec &spec = tc.spec;
    runtime::GpuKernelSource gpu{layers[i], source, "codegen matrix"};
    std::shared_ptr<runtime::LkConvKernel> kernel = runtime::makeCudaKernel(gpu, 0);
    const double tol = tolerance(spec.elementType);
    const size_t numDy = spec.perBranchOutputs ? spec.branches.size() : 1;
    for (const auto &shape : tc.shapes) {
      for (double density : tc.densities) {
        std::ostringstream label;
        label << tc.name << " " << shape.n << "x" << spec.channels << "x" << shape.h << "x"
              << shape.w << " density " << density;
        SCOPED_TRACE(label.str());
        std::mt19937_64 rng(std::hash<std::string>{}(label.str()));
        std::bernoulli_distribution live(density);
        const reference::Shape in{shape.n, spec.channels, shape.h, shape.w};
        reference::Weights weights;
        std::vector<codegen::BranchMask> masks;
        std::vector<codegen::KernelWindow> windows;
        for (const Branch &b : spec.branches) {
          weights.push_back(uniform(rng, spec.channels * b.windowSize(), spec.elementType));
          codegen::BranchMask m;
          if (!b.dense)
            for (int64_t k = 0; k < spec.channels * b.windowSize(); ++k)
              m.push_back(live(rng) ? 1 : 0);
          masks.push_back(m);
          windows.push_back({b.kernelH, b.kernelW});
        }
        runtime::LayerTaps taps(spec.channels, windows, masks);
        const std::vector<float> x =
            uniform(rng, codegen::inputCount(spec, shape.n, shape.h, shape.w), spec.elementType);
        const std::vector<float> bias =
            spec.hasBias ? uniform(rng, spec.channels, spec.elementType) : std::vector<float>{};
        const std::vector<float> dy =
            uniform(rng, codegen::outputCount(spec, shape.n, shape.h, shape.w), spec.elementType);
        std::vector<std::vector<float>> dyParts(numDy);
        const size_t each = dy.size() / numDy;
        for (size_t p = 0; p < numDy; ++p)
          dyParts[p].assign(dy.begin() + p * each, dy.begin() + (p + 1) * each);

        const int64_t ho = spec.outHeight(shape.h), wo = spec.outWidth(shape.w);
        std::vector<int64_t> yShape = {shape.n, spec.channels, ho, wo};
        if (spec.perBranchOutputs)
          yShape.insert(yShape.begin(), static_cast<int64_t>(spec.branches.size()));
        const at::Tensor xg =
            onGpu(x, spec.elementType).view({shape.n, spec.channels, shape.h, shape.w});
        const at::Tensor wg = onGpu(concat(weights), spec.elementType);
        const at::Tensor bg = spec.hasBias ? onGpu(bias, spec.elementType) : at::Tensor();
        const at::Tensor dyg = onGpu(dy, spec.elementType).view(yShape);
        at::Tensor y = at::empty(yShape, xg.options());
        kernel->forward(xg, wg, bg, taps, y);
        expectCloseVec(toHost(y), concat(reference::forward(spec, in, x, weights, masks, bias)),
                       tol, "forward");
        at::Tensor dx = at::empty_like(xg);
        kernel->backwardData(dyg, wg, taps, dx);
        expectCloseVec(toHost(dx), reference::backwardData(spec, in, dyParts, weights, masks), tol,
                       "backward-data");
        at::Tensor dw = at::empty({codegen::weightCount(spec)}, xg.options());
        kernel->backwardWeight(xg, dyg, taps, dw);
        const std::vector<float> dwHost = toHost(dw);
        expectCloseVec(dwHost, concat(reference::backwardWeight(spec, in, x, dyParts, masks)), tol,
                       "backward-weight");
        kernel->backwardWeight(xg, dyg, taps, dw);
        const std::vector<float> again = toHost(dw);
        EXPECT_EQ(0, std::memcmp(dwHost.data(), again.data(), again.size() * sizeof(float)))
            << "backward-weight is not deterministic";
        ++runs;
      }
    }
  }
  std::printf("%zu specs, %d runs in %.1f s (one NVRTC compile)\n", cases.size(), runs,
              std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
}

TEST(CudaRuntimeTest, LkConvRunsOnTheCurrentStream) {
  if (!gpuOrSkip())
    GTEST_SKIP() << "no CUDA device";
  at::manual_seed(21);
  const at::Tensor x = at::rand({4, 7, 20, 20}) - 0.5;
  const at::Tensor w0 = at::rand({7, 1, 13, 5}) - 0.5, w1 = at::rand({7, 1, 5, 13}) - 0.5;
  const at::Tensor mask = randomMask(w0, 0.4, 3);
  const at::Tensor expected = lk_conv(x, {w0, w1}, {mask, at::Tensor()});
  const at::Device gpu(at::kCUDA, 0);
  c10::impl::VirtualGuardImpl impl(c10::DeviceType::CUDA);
  const c10::Stream side = impl.getStreamFromGlobalPool(gpu, false);
  at::Tensor y;
  {
    c10::StreamGuard guard(side);
    y = lk_conv(x.to(gpu), {w0.to(gpu), w1.to(gpu)}, {mask, at::Tensor()});
    side.synchronize();
  }
  expectClose(y, expected, 1e-4, "forward on a side stream");
}

TEST(CudaRuntimeTest, KernelPackageRunsItsCudaKernels) {
  if (!gpuOrSkip())
    GTEST_SKIP() << "no CUDA device";
  KernelSpec spec;
  spec.channels = 5;
  spec.height = spec.width = 12;
  spec.branches = {Branch::same(11, 3, false), Branch::same(3, 11, false), Branch::same(3, 3)};
  spec.hasBias = true;
  spec.schedule = codegen::defaultSchedule(spec, 0.5);
  std::mt19937_64 rng(5);
  std::bernoulli_distribution live(0.5);
  codegen::PackagedOp op;
  op.name = "layer";
  op.scheduleOrigin = "default";
  op.kernels = codegen::emitKernels(spec);
  std::vector<codegen::BranchMask> masks;
  std::vector<at::Tensor> weightTensors, maskTensors;
  for (const Branch &b : spec.branches) {
    codegen::BranchMask m;
    if (!b.dense)
      for (int64_t k = 0; k < spec.channels * b.windowSize(); ++k)
        m.push_back(live(rng) ? 1 : 0);
    masks.push_back(m);
    op.weights.push_back(uniform(rng, spec.channels * b.windowSize(), ElementType::F32));
    weightTensors.push_back(at::tensor(at::ArrayRef<float>(op.weights.back()))
                                .view({spec.channels, 1, b.kernelH, b.kernelW}));
    maskTensors.push_back(
        m.empty()
            ? at::Tensor()
            : at::tensor(at::ArrayRef<uint8_t>(m)).view({spec.channels, 1, b.kernelH, b.kernelW}));
  }
  op.table = codegen::buildTapTable(spec, masks);
  op.bias = uniform(rng, spec.channels, ElementType::F32);
  const std::string dir =
      runtime::joinPath(::testing::TempDir(), "slak_cuda_package_" + std::to_string(::getpid()));
  runtime::removeTree(dir);
  codegen::writeKernelPackage(dir, {op}, "CudaRuntimeTest");
  const auto package = load_kernel_package(dir);
  const at::Tensor x = at::rand({2, 5, 12, 12}) - 0.5;
  const at::Tensor y = package->forward("layer", x.to(at::Device(at::kCUDA, 0)));
  EXPECT_TRUE(y.is_cuda());
  const at::Tensor bias = at::tensor(at::ArrayRef<float>(op.bias));
  const TorchResult ref =
      torchReference(x, weightTensors, maskTensors, bias, false, false, at::ones({2, 5, 12, 12}));
  expectClose(y, ref.y, 1e-4, "packaged CUDA forward");
  runtime::removeTree(dir);
}

/// Median milliseconds of `run` over `reps` runs after a warm-up.
double medianMs(const std::function<void()> &run, int reps = 15) {
  run();
  torch::cuda::synchronize();
  std::vector<double> times;
  for (int i = 0; i < reps; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    run();
    torch::cuda::synchronize();
    times.push_back(
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(times.begin(), times.end());
  return times[times.size() / 2];
}

TEST(CudaRuntimeTest, Stage1TimingAgainstPyTorch) {
  if (!gpuOrSkip())
    GTEST_SKIP() << "no CUDA device";
  // SLaK-T stage 1: C=124, 56x56, 51x5 + 5x51 + 5x5, batch 64; printed only.
  const at::Device gpu(at::kCUDA, 0);
  at::manual_seed(7);
  const int64_t n = 64, c = 124, hw = 56;
  const at::Tensor x = (at::rand({n, c, hw, hw}) - 0.5).to(gpu);
  std::vector<at::Tensor> w = {(at::rand({c, 1, 51, 5}) - 0.5).to(gpu),
                               (at::rand({c, 1, 5, 51}) - 0.5).to(gpu),
                               (at::rand({c, 1, 5, 5}) - 0.5).to(gpu)};
  at::NoGradGuard noGrad;
  auto torchForward = [&] {
    at::Tensor y = at::conv2d(x, w[0], {}, 1, {25, 2}, 1, c);
    y = y + at::conv2d(x, w[1], {}, 1, {2, 25}, 1, c);
    return y + at::conv2d(x, w[2], {}, 1, {2, 2}, 1, c);
  };
  const at::Tensor ours = lk_conv(x, w);
  expectClose(ours, torchForward(), 1e-4, "stage-1 forward vs PyTorch");
  const std::vector<at::Tensor> masks = {randomMask(w[0], 0.6, 1).to(gpu),
                                         randomMask(w[1], 0.6, 2).to(gpu), at::Tensor()};
  const double dense = medianMs([&] { lk_conv(x, w); });
  const double sparse = medianMs([&] { lk_conv(x, w, masks); });
  const double torchMs = medianMs([&] { torchForward(); });
  // FLOPs of in-image taps (2 per multiply-add), dense.
  double flops = 0;
  for (auto [kh, kw] : std::vector<std::pair<int, int>>{{51, 5}, {5, 51}, {5, 5}}) {
    double rowTaps = 0, colTaps = 0;
    for (int i = 0; i < hw; ++i)
      for (int u = 0; u < kh; ++u)
        rowTaps += (i + u - kh / 2 >= 0 && i + u - kh / 2 < hw);
    for (int j = 0; j < hw; ++j)
      for (int v = 0; v < kw; ++v)
        colTaps += (j + v - kw / 2 >= 0 && j + v - kw / 2 < hw);
    flops += 2.0 * n * c * rowTaps * colTaps;
  }
  std::printf("[timing] %s: SLaK-T stage 1 forward, N=%lld fp32: slak dense %.3f ms (%.0f "
              "GFLOP/s), slak 40%% sparse %.3f ms, PyTorch conv2d x3 %.3f ms (%.1fx)\n",
              runtime::cuda::CudaDriver::get().deviceName(0).c_str(), static_cast<long long>(n),
              dense, flops / dense / 1e6, sparse, torchMs, torchMs / dense);
}

} // namespace
} // namespace slak::testing

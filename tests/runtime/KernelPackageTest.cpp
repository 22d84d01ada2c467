// Kernel packages (the AOT path): readKernelPackage reads back what
// writeKernelPackage (slak-translate --emit-kernel-package) writes and
// rejects broken packages with messages naming the file and the problem;
// load_kernel_package serves the ops with the packaged kernels, tap tables,
// weights and bias, and refuses inputs the op was not compiled for.
#include <gtest/gtest.h>

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include <fstream>
#include <random>
#include <unistd.h>

#include "codegen/DefaultSchedule.h"
#include "codegen/KernelEmitter.h"
#include "codegen/TapTable.h"
#include "codegen/package/KernelPackage.h"
#include "runtime/Files.h"
#include "runtime/KernelPackageLoader.h"
#include "tests/runtime/RuntimeTestSupport.h"

namespace slak::testing {
namespace {

using codegen::Branch;
using codegen::KernelSpec;
using codegen::PackagedOp;
using runtime::BackendKind;

std::vector<float> uniform(std::mt19937 &rng, size_t count) {
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  std::vector<float> v(count);
  for (float &x : v)
    x = dist(rng);
  return v;
}

/// Op `name` with the kernels of `spec`, without constants.
PackagedOp emittedOp(const std::string &name, const std::string &scheduleOrigin,
                     const KernelSpec &spec) {
  PackagedOp op;
  op.name = name;
  op.scheduleOrigin = scheduleOrigin;
  op.kernels = codegen::emitKernels(spec);
  return op;
}

/// Three ops: a static sparse SLaK-like layer with constant weights, bias and
/// tap table; a dynamic-size dense f32 layer without constants; a sparse
/// layer whose tap table is built at run time.
std::vector<PackagedOp> packageOps() {
  std::mt19937 rng(42);
  std::vector<PackagedOp> ops;
  {
    KernelSpec spec;
    spec.channels = 6;
    spec.height = spec.width = 10;
    spec.branches = {Branch::same(9, 3, false), Branch::same(3, 9, false), Branch::same(3, 3)};
    spec.hasBias = true;
    spec.schedule = codegen::defaultSchedule(spec, 0.5);
    std::vector<codegen::BranchMask> masks;
    std::bernoulli_distribution live(0.5);
    for (const Branch &b : spec.branches) {
      codegen::BranchMask m;
      if (!b.dense)
        for (int i = 0; i < spec.channels * b.windowSize(); ++i)
          m.push_back(live(rng) ? 1 : 0);
      masks.push_back(m);
    }
    PackagedOp op = emittedOp("stage1.block0.large_kernel", "default", spec);
    op.table = codegen::buildTapTable(spec, masks);
    for (const Branch &b : spec.branches)
      op.weights.push_back(uniform(rng, spec.channels * b.windowSize()));
    op.bias = uniform(rng, spec.channels);
    ops.push_back(op);
  }
  {
    KernelSpec spec;
    spec.channels = 3;
    spec.branches = {Branch::same(5, 5)};
    spec.schedule = codegen::defaultSchedule(spec);
    ops.push_back(emittedOp("dense_dynamic", "model", spec));
  }
  {
    KernelSpec spec;
    spec.channels = 4;
    spec.height = spec.width = 8;
    spec.branches = {Branch::same(7, 3, false)};
    spec.schedule = codegen::defaultSchedule(spec, 0.2);
    ops.push_back(emittedOp("runtime_masks", "default", spec));
  }
  return ops;
}

class KernelPackageTest : public ::testing::Test {
protected:
  void SetUp() override {
    dir_ = runtime::joinPath(::testing::TempDir(),
                             "slak_package_" + std::to_string(::getpid()) + "_" +
                                 ::testing::UnitTest::GetInstance()->current_test_info()->name());
    runtime::removeTree(dir_);
    ops_ = packageOps();
    codegen::writeKernelPackage(dir_, ops_, "KernelPackageTest");
  }
  void TearDown() override { runtime::removeTree(dir_); }

  std::string file(const std::string &name) const { return runtime::joinPath(dir_, name); }
  nlohmann::json manifest() const {
    return nlohmann::json::parse(std::ifstream(file("manifest.json")));
  }
  void writeManifest(const nlohmann::json &j) const {
    std::ofstream(file("manifest.json"), std::ios::trunc) << j.dump(2);
  }
  std::string readError() const {
    try {
      codegen::readKernelPackage(dir_);
    } catch (const std::runtime_error &e) {
      return e.what();
    }
    return {};
  }

  std::string dir_;
  std::vector<PackagedOp> ops_;
};

TEST_F(KernelPackageTest, ReaderRoundTripsTheWriter) {
  const codegen::KernelPackage package = codegen::readKernelPackage(dir_);
  EXPECT_EQ(package.generator, "KernelPackageTest");
  EXPECT_EQ(package.version, codegen::kKernelPackageVersion);
  ASSERT_EQ(package.ops.size(), ops_.size());
  for (size_t i = 0; i < ops_.size(); ++i) {
    const PackagedOp &want = ops_[i], &got = package.ops[i];
    SCOPED_TRACE(want.name);
    EXPECT_EQ(got.name, want.name);
    EXPECT_EQ(got.scheduleOrigin, want.scheduleOrigin);
    EXPECT_EQ(got.kernels.spec.signature(), want.kernels.spec.signature());
    EXPECT_EQ(got.kernels.names, want.kernels.names);
    EXPECT_EQ(got.kernels.threads, want.kernels.threads);
    EXPECT_EQ(got.kernels.sharedBytes, want.kernels.sharedBytes);
    EXPECT_TRUE(got.kernels.body.empty());
    ASSERT_EQ(got.table.has_value(), want.table.has_value());
    if (want.table) {
      EXPECT_EQ(got.table->offsets, want.table->offsets);
      EXPECT_EQ(got.table->taps, want.table->taps);
    }
    EXPECT_EQ(got.weights, want.weights);
    EXPECT_EQ(got.bias, want.bias);
    // The launch geometry the runtime computes from the read spec is the writer's.
    const int64_t h = want.kernels.spec.height > 0 ? want.kernels.spec.height : 10;
    const int64_t w = want.kernels.spec.width > 0 ? want.kernels.spec.width : 10;
    for (int k = 0; k < codegen::kNumKernelKinds; ++k) {
      const auto kind = static_cast<codegen::KernelKind>(k);
      const codegen::LaunchGeometry a = got.kernels.geometry(kind, 2, h, w);
      const codegen::LaunchGeometry b = want.kernels.geometry(kind, 2, h, w);
      EXPECT_EQ(a.blocks, b.blocks);
      EXPECT_EQ(a.threads, b.threads);
      EXPECT_EQ(a.sharedBytes, b.sharedBytes);
    }
    EXPECT_NE(package.cudaSource.find(want.kernels.name(codegen::KernelKind::Forward)),
              std::string::npos);
  }
  EXPECT_NE(package.find("runtime_masks"), nullptr);
  EXPECT_EQ(package.find("nope"), nullptr);
}

TEST_F(KernelPackageTest, ReaderRejectsBrokenPackages) {
  auto has = [](const std::string &message, const std::string &part) {
    EXPECT_NE(message.find(part), std::string::npos) << "message: " << message;
  };
  const nlohmann::json good = manifest();

  nlohmann::json j = good;
  j["version"] = 2;
  writeManifest(j);
  has(readError(), "package version 2, this reader understands version 1");

  j = good;
  j["ops"][0]["signature"] = "lk_conv.v1 something else";
  writeManifest(j);
  has(readError(), "op 'stage1.block0.large_kernel': the recorded signature");

  j = good;
  j["ops"][0]["spec"]["branches"][0]["kernel"] = {4, 3};
  writeManifest(j);
  has(readError(), "invalid spec: branch 0 has kernel 4x3");

  j = good;
  j["ops"][0]["tap_table"]["offsets"]["count"] = 5;
  writeManifest(j);
  has(readError(), "tap table has 5 offsets, expected 19");

  j = good;
  j["ops"][1]["entry_points"]["forward"] = "slak_lk_missing_fwd";
  writeManifest(j);
  has(readError(), "entry point slak_lk_missing_fwd is missing from kernels.cu");

  j = good;
  j["ops"][2].erase("launch");
  writeManifest(j);
  has(readError(), "op 'runtime_masks': missing \"launch\"");

  writeManifest(good);
  ::truncate(file("data.bin").c_str(), 16);
  has(readError(), "lies outside data.bin (16 bytes)");

  std::ofstream(file("manifest.json"), std::ios::trunc) << "{ not json";
  has(readError(), "manifest.json is not valid JSON");

  has(errorOf([&] { load_kernel_package(dir_ + "/does-not-exist"); }),
      "does-not-exist/manifest.json: no such file");
}

TEST_F(KernelPackageTest, PackagedOpRunsWithItsWeightsBiasAndTaps) {
  const auto package = load_kernel_package(dir_);
  EXPECT_EQ(package->op_names(), (std::vector<std::string>{"stage1.block0.large_kernel",
                                                           "dense_dynamic", "runtime_masks"}));
  const PackagedOp &op = ops_[0];
  ASSERT_TRUE(package->has_weights(op.name));
  // The torch reference from the package's own numbers.
  std::vector<at::Tensor> weights, masks;
  for (size_t b = 0; b < op.weights.size(); ++b) {
    const Branch &br = op.kernels.spec.branches[b];
    weights.push_back(
        at::tensor(at::ArrayRef<float>(op.weights[b])).view({6, 1, br.kernelH, br.kernelW}));
    at::Tensor m = at::zeros({6, 1, br.kernelH, br.kernelW}, at::kByte);
    for (int64_t c = 0; c < 6; ++c)
      for (int64_t k = op.table->begin(b, c); k < op.table->end(b, c); ++k)
        m[c][0][codegen::TapTable::unpackRow(op.table->taps[k])]
         [codegen::TapTable::unpackCol(op.table->taps[k])] = 1;
    masks.push_back(m);
  }
  const at::Tensor bias = at::tensor(at::ArrayRef<float>(op.bias));
  at::manual_seed(17);
  const at::Tensor x = at::rand({2, 6, 10, 10}) * 2 - 1;
  const at::Tensor dy = at::rand({2, 6, 10, 10}) * 2 - 1;
  const TorchResult ref = torchReference(x, weights, masks, bias, false, false, dy);

  std::vector<BackendKind> kinds = {BackendKind::Cpu, BackendKind::Reference};
  if (backendAvailable(BackendKind::OpenCL))
    kinds.push_back(BackendKind::OpenCL);
  for (BackendKind kind : kinds) {
    SCOPED_TRACE(runtime::backendKindName(kind));
    const at::Tensor xg = x.clone().requires_grad_(true);
    const at::Tensor y =
        package->forward(op.name, xg, {}, std::nullopt, {}, runtime::backendKindName(kind));
    expectClose(y, ref.y, 1e-4, "packaged forward");
    y.backward(dy);
    expectClose(xg.grad(), ref.dx, 1e-4, "packaged dx");
  }
  // "auto" on a CPU tensor: the CPU backend, as for lk_conv.
  expectClose(package->forward(op.name, x), ref.y, 1e-4, "auto backend");
}

TEST_F(KernelPackageTest, RefusesInputsTheOpWasNotCompiledFor) {
  const auto package = load_kernel_package(dir_);
  auto has = [](const std::string &message, const std::string &part) {
    EXPECT_NE(message.find(part), std::string::npos) << "message: " << message;
  };
  const std::string op = "stage1.block0.large_kernel";
  has(errorOf([&] {
        package->forward(op, at::zeros({1, 6, 12, 10}));
      }),
      "op 'stage1.block0.large_kernel' was compiled for input [N, 6, 10, 10] Float, got x of "
      "shape [1, 6, 12, 10] Float");
  has(errorOf([&] {
        package->forward(op, at::zeros({1, 5, 10, 10}));
      }),
      "got x of shape [1, 5, 10, 10]");
  has(errorOf([&] {
        package->forward(op, at::zeros({1, 6, 10, 10}, at::kHalf));
      }),
      "got x of shape [1, 6, 10, 10] Half");
  has(errorOf([&] {
        package->forward("nope", at::zeros({1, 6, 10, 10}));
      }),
      "has no op 'nope'; its ops are: stage1.block0.large_kernel, dense_dynamic, runtime_masks");
  has(errorOf([&] {
        package->forward("dense_dynamic", at::zeros({1, 3, 5, 5}));
      }),
      "holds no weights (they were not constants): pass one weight per branch");
  has(errorOf([&] {
        package->forward("runtime_masks", at::zeros({1, 4, 8, 8}), {at::zeros({4, 1, 7, 3})});
      }),
      "builds its tap table at run time: pass one mask per branch");
  has(errorOf([&] { package->spec("nope"); }), "has no op 'nope'");
}

TEST_F(KernelPackageTest, GivenWeightsRuntimeMasksAndDynamicSizes) {
  const auto package = load_kernel_package(dir_);
  const std::string backend = backendAvailable(BackendKind::OpenCL) ? "opencl" : "cpu";
  at::manual_seed(18);
  // Dynamic sizes: one compiled op, two image sizes.
  const at::Tensor w = at::rand({3, 1, 5, 5}) - 0.5;
  for (int64_t size : {4, 9}) {
    const at::Tensor x = at::rand({1, 3, size, size + 1});
    const at::Tensor y = package->forward("dense_dynamic", x, {w}, std::nullopt, {}, backend);
    const TorchResult ref =
        torchReference(x, {w}, {}, std::nullopt, false, false, at::ones_like(y));
    expectClose(y, ref.y, 1e-4, "dynamic size " + std::to_string(size));
  }
  // Masks given at run time for an op without a packaged table.
  const at::Tensor w2 = (at::rand({4, 1, 7, 3}) - 0.5).requires_grad_(true);
  const at::Tensor mask = randomMask(w2, 0.3, 5);
  const at::Tensor x = at::rand({2, 4, 8, 8});
  const at::Tensor y = package->forward("runtime_masks", x, {w2}, std::nullopt, {mask}, backend);
  const TorchResult ref =
      torchReference(x, {w2}, {mask}, std::nullopt, false, false, at::ones_like(y));
  expectClose(y, ref.y, 1e-4, "runtime masks");
  y.sum().backward();
  expectClose(w2.grad(), ref.dw[0], 1e-4, "dW through a packaged op");
}

} // namespace
} // namespace slak::testing

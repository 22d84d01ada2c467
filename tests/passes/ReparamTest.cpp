// The rewrites of --slak-fuse-lk and --slak-specialize-sparsity are exact:
// the module before and after, run through the oracle on random inputs,
// agree to 1e-5 relative. Random SLaK blocks (odd channel counts, masks,
// per-branch batch norms with random statistics, conv biases).
#include "dialect/SlakDialect.h"
#include "dialect/SlakOps.h"
#include "passes/Passes.h"
#include "passes/ReferenceInterpreter.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/MLIRContext.h"
#include "mlir/Parser/Parser.h"
#include "mlir/Pass/PassManager.h"

#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <random>
#include <sstream>

using namespace mlir;
using namespace mlir::slak;

namespace {

struct BranchDesc {
  int kh, kw;
  bool mask, norm, bias;
  // Rows/cols at each border whose mask is all false (symmetric dead ring).
  int deadRows = 0, deadCols = 0;
};

struct BlockDesc {
  int channels, height, width, batch;
  std::vector<BranchDesc> branches;
  bool constantWeights = true;
  double density = 0.6;
};

/// Writes a function summing the branches of `desc` with random constants.
std::string blockModule(const BlockDesc &d, std::mt19937 &rng) {
  std::normal_distribution<double> normal(0.0, 1.0);
  std::uniform_real_distribution<double> uniform(0.5, 1.5), unit(0.0, 1.0);
  std::ostringstream os;
  os.precision(9);
  auto tensor = [&](std::vector<int> dims, const char *type) {
    std::ostringstream t;
    t << "tensor<";
    for (int dim : dims)
      t << dim << "x";
    t << type << ">";
    return t.str();
  };
  auto dense = [&](int count, const std::function<double()> &value) {
    std::ostringstream t;
    t.precision(9);
    t << "dense<[";
    for (int i = 0; i < count; ++i)
      t << (i ? ", " : "") << std::scientific << value();
    t << "]>";
    return t.str();
  };
  const std::string x = tensor({d.batch, d.channels, d.height, d.width}, "f32");
  const std::string vec = tensor({d.channels}, "f32");
  os << "func.func @block(%x: " << x;
  for (size_t b = 0; b < d.branches.size(); ++b)
    if (!d.constantWeights)
      os << ", %w" << b << ": "
         << tensor({d.channels, 1, d.branches[b].kh, d.branches[b].kw}, "f32");
  os << ") -> " << x << " {\n";
  for (size_t b = 0; b < d.branches.size(); ++b) {
    const BranchDesc &br = d.branches[b];
    const std::string w = tensor({d.channels, 1, br.kh, br.kw}, "f32");
    const std::string m = tensor({d.channels, 1, br.kh, br.kw}, "i1");
    const int n = d.channels * br.kh * br.kw;
    // Flat constants need a reshape-free form: use a 1-D literal with the
    // full type, which MLIR accepts only with matching nesting, so build the
    // nesting by hand.
    auto nested = [&](const std::vector<std::string> &flat) {
      std::ostringstream t;
      t << "dense<[";
      for (int c = 0; c < d.channels; ++c) {
        t << (c ? ", " : "") << "[[";
        for (int u = 0; u < br.kh; ++u) {
          t << (u ? ", " : "") << "[";
          for (int v = 0; v < br.kw; ++v)
            t << (v ? ", " : "") << flat[(c * br.kh + u) * br.kw + v];
          t << "]";
        }
        t << "]]";
      }
      t << "]>";
      return t.str();
    };
    if (d.constantWeights) {
      std::vector<std::string> values(n);
      for (auto &v : values) {
        std::ostringstream t;
        t.precision(9);
        t << std::scientific << 0.2 * normal(rng);
        v = t.str();
      }
      os << "  %w" << b << " = arith.constant " << nested(values) << " : " << w << "\n";
    }
    if (br.mask) {
      std::vector<std::string> bits(n);
      for (int c = 0; c < d.channels; ++c)
        for (int u = 0; u < br.kh; ++u)
          for (int v = 0; v < br.kw; ++v) {
            const bool dead = u < br.deadRows || u >= br.kh - br.deadRows || v < br.deadCols ||
                              v >= br.kw - br.deadCols;
            bits[(c * br.kh + u) * br.kw + v] = !dead && unit(rng) < d.density ? "true" : "false";
          }
      os << "  %m" << b << " = arith.constant " << nested(bits) << " : " << m << "\n";
    }
    if (br.bias)
      os << "  %bias" << b << " = arith.constant " << dense(d.channels, [&] { return normal(rng); })
         << " : " << vec << "\n";
    os << "  %c" << b << " = slak.dwconv2d %x, %w" << b;
    if (br.mask)
      os << " mask(%m" << b << " : " << m << ")";
    if (br.bias)
      os << " bias(%bias" << b << " : " << vec << ")";
    os << " : " << x << ", " << w << " -> " << x << "\n";
    if (br.norm) {
      os << "  %mean" << b << " = arith.constant "
         << dense(d.channels, [&] { return 0.3 * normal(rng); }) << " : " << vec << "\n";
      os << "  %var" << b << " = arith.constant " << dense(d.channels, [&] { return uniform(rng); })
         << " : " << vec << "\n";
      os << "  %gamma" << b << " = arith.constant "
         << dense(d.channels, [&] { return uniform(rng); }) << " : " << vec << "\n";
      os << "  %beta" << b << " = arith.constant "
         << dense(d.channels, [&] { return 0.3 * normal(rng); }) << " : " << vec << "\n";
      os << "  %n" << b << " = slak.batch_norm %c" << b << ", %mean" << b << ", %var" << b
         << ", %gamma" << b << ", %beta" << b << " {epsilon = 1.0e-3 : f32} : " << x << ", " << vec
         << "\n";
    }
  }
  auto term = [&](size_t b) {
    return std::string(d.branches[b].norm ? "%n" : "%c") + std::to_string(b);
  };
  std::string acc = term(0);
  for (size_t b = 1; b < d.branches.size(); ++b) {
    os << "  %s" << b << " = arith.addf " << acc << ", " << term(b) << " : " << x << "\n";
    acc = "%s" + std::to_string(b);
  }
  os << "  return " << acc << " : " << x << "\n}\n";
  return os.str();
}

class ReparamTest : public ::testing::Test {
protected:
  ReparamTest() {
    static const bool registered = (registerAllSlakPasses(), true);
    (void)registered;
    DialectRegistry registry;
    registry.insert<SlakDialect, func::FuncDialect, arith::ArithDialect, tensor::TensorDialect>();
    context.appendDialectRegistry(registry);
    context.loadAllAvailableDialects();
  }

  OwningOpRef<ModuleOp> parse(const std::string &text) {
    auto module = parseSourceString<ModuleOp>(text, &context);
    EXPECT_TRUE(module) << "failed to parse:\n" << text.substr(0, 2000);
    return module;
  }

  std::vector<RefTensor> run(ModuleOp module, ArrayRef<RefTensor> args) {
    auto func = *module.getOps<func::FuncOp>().begin();
    std::string error;
    FailureOr<std::vector<RefTensor>> out = interpret(func, args, error);
    EXPECT_TRUE(succeeded(out)) << error;
    return succeeded(out) ? *out : std::vector<RefTensor>{};
  }

  void transform(ModuleOp module, const std::string &pipeline) {
    PassManager pm(&context);
    std::string errors;
    llvm::raw_string_ostream os(errors);
    ASSERT_TRUE(succeeded(parsePassPipeline(pipeline, pm, os))) << errors;
    ASSERT_TRUE(succeeded(pm.run(module))) << pipeline;
  }

  /// Random arguments for the function (the input, then argument weights).
  std::vector<RefTensor> randomArgs(ModuleOp module, std::mt19937 &rng) {
    std::normal_distribution<double> normal(0.0, 1.0);
    auto func = *module.getOps<func::FuncOp>().begin();
    std::vector<RefTensor> args;
    for (Type type : func.getArgumentTypes()) {
      auto shaped = cast<RankedTensorType>(type);
      RefTensor t{std::vector<int64_t>(shaped.getShape().begin(), shaped.getShape().end()), {}};
      t.data.resize(shaped.getNumElements());
      for (double &v : t.data)
        v = normal(rng);
      args.push_back(std::move(t));
    }
    return args;
  }

  static void expectClose(const RefTensor &ref, const RefTensor &got, double rel) {
    ASSERT_EQ(ref.shape, got.shape);
    double scale = 0;
    for (double v : ref.data)
      scale = std::max(scale, std::abs(v));
    for (size_t i = 0; i < ref.data.size(); ++i)
      ASSERT_NEAR(ref.data[i], got.data[i], rel * std::max(scale, 1e-30)) << "element " << i;
  }

  /// Builds the block, runs `pipeline`, and compares both on random inputs.
  std::string checkExact(const BlockDesc &desc, const std::string &pipeline, unsigned seed) {
    std::mt19937 rng(seed);
    std::string text = blockModule(desc, rng);
    OwningOpRef<ModuleOp> before = parse(text), after = parse(text);
    if (!before || !after)
      return {};
    transform(*after, pipeline);
    for (int trial = 0; trial < 2; ++trial) {
      std::vector<RefTensor> args = randomArgs(*before, rng);
      std::vector<RefTensor> ref = run(*before, args), got = run(*after, args);
      EXPECT_EQ(ref.size(), 1u);
      EXPECT_EQ(got.size(), 1u);
      if (ref.size() == 1 && got.size() == 1)
        expectClose(ref[0], got[0], 1e-5);
    }
    std::string printed;
    llvm::raw_string_ostream os(printed);
    after->print(os);
    return printed;
  }

  MLIRContext context;
};

BlockDesc slakBlock(int channels, int h, int w, int m) {
  return BlockDesc{
      channels,
      h,
      w,
      2,
      {{m, 5, true, true, false}, {5, m, true, true, false}, {5, 5, true, true, false}}};
}

int countOf(const std::string &text, const std::string &what) {
  int n = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1))
    ++n;
  return n;
}

TEST_F(ReparamTest, InferFoldsAndMergesSlakBlockExactly) {
  std::string out = checkExact(slakBlock(5, 9, 11, 13), "slak-fuse-lk{mode=infer}", 1);
  EXPECT_EQ(countOf(out, "slak.lk_conv"), 1) << out;
  EXPECT_EQ(countOf(out, "slak.batch_norm"), 0) << out;
  // The 5x5 merged into the 13x5: two branches remain.
  EXPECT_NE(out.find("weights(%cst, %cst_0 : tensor<5x1x13x5xf32>, tensor<5x1x5x13xf32>)"),
            std::string::npos)
      << out;
}

TEST_F(ReparamTest, InferWithKernelLargerThanImageAndBiases) {
  BlockDesc d = slakBlock(3, 4, 6, 13);
  d.branches[0].bias = true;
  d.branches[2].bias = true;
  d.branches[1].norm = false;
  checkExact(d, "slak-fuse-lk{mode=infer}", 2);
}

TEST_F(ReparamTest, RepLKNetFoldMergesSmallIntoLarge) {
  BlockDesc d{7, 8, 8, 1, {{11, 11, false, true, false}, {5, 5, false, true, true}}};
  std::string out = checkExact(d, "slak-fuse-lk{mode=infer}", 3);
  EXPECT_NE(out.find("weights(%cst : tensor<7x1x11x11xf32>)"), std::string::npos) << out;
}

TEST_F(ReparamTest, TrainModeKeepsNumbers) {
  BlockDesc d = slakBlock(5, 7, 9, 13);
  d.branches[1].bias = true; // moves into its batch norm's mean
  std::string out = checkExact(d, "slak-fuse-lk{mode=train}", 4);
  EXPECT_NE(out.find("per_branch_outputs"), std::string::npos);
  EXPECT_EQ(countOf(out, "slak.batch_norm"), 3);
}

TEST_F(ReparamTest, ArgumentWeightsFuseWithoutFolding) {
  BlockDesc d = slakBlock(3, 6, 6, 7);
  d.constantWeights = false;
  std::string out = checkExact(d, "slak-fuse-lk{mode=infer}", 5);
  EXPECT_NE(out.find("per_branch_outputs"), std::string::npos);
}

TEST_F(ReparamTest, SpecializeTrimsAndTablesExactly) {
  // A 13x5 branch whose outer 3 rows and 1 column are dead everywhere.
  BlockDesc d = slakBlock(5, 9, 11, 13);
  d.branches[0].deadRows = 3;
  d.branches[0].deadCols = 1;
  d.density = 0.3;
  std::string out = checkExact(d, "slak-fuse-lk{mode=infer}, slak-specialize-sparsity", 6);
  // Trimmed 13x5: rows 3..9 stay (the merged 5x5 covers rows 4..8 and every
  // column), so 7x5.
  EXPECT_NE(out.find(": tensor<5x1x7x5xf32>, tensor<5x1x5x13xf32>)"), std::string::npos) << out;
  EXPECT_NE(out.find("form = table"), std::string::npos) << out;
  EXPECT_NE(out.find("tap_table = dense_resource"), std::string::npos) << out;
}

TEST_F(ReparamTest, SpecializeTrainModeWithMasksExactly) {
  BlockDesc d = slakBlock(3, 5, 7, 13);
  d.branches[1].deadRows = 1;
  d.density = 0.9; // some branches dense form, with masks folded
  checkExact(d, "slak-fuse-lk, slak-specialize-sparsity", 7);
}

TEST_F(ReparamTest, PipelineInferIsExact) {
  checkExact(slakBlock(4, 6, 6, 7), "slak-pipeline{mode=infer}", 8);
}

} // namespace

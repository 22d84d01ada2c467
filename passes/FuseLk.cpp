// --slak-fuse-lk: parallel depthwise branches of one input -> slak.lk_conv.
//
// The pass reads each sum of values (a tree of arith.addf, any association)
// as a list of terms, picks out the terms that are branches (a dwconv2d,
// optionally followed by a batch_norm, each used only by the sum), groups
// them by their input, and rebuilds the sum as fused ops plus the other terms.
#include "passes/Passes.h"

#include "passes/EraseDead.h"

#include "codegen/Reparam.h"

#include "dialect/ConstantData.h"
#include "dialect/SlakOps.h"
#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/IR/Builders.h"
#include "mlir/IR/BuiltinOps.h"
#include "llvm/ADT/MapVector.h"
#include "llvm/ADT/SetVector.h"

namespace mlir::slak {
#define GEN_PASS_DEF_SLAKFUSELK
#include "passes/Passes.h.inc"
} // namespace mlir::slak

using namespace mlir;
using namespace mlir::slak;

namespace {

/// One term of a sum that is a depthwise branch.
struct Branch {
  // Op handles are cheap values whose accessors are not const.
  mutable DwConv2dOp conv;
  mutable BatchNormOp norm; // null without a batch norm
  Value result() const { return norm ? norm.getResult() : conv.getResult(); }
};

bool usedOnlyOnce(Value value) { return value.hasOneUse(); }

/// The branch that `term` is, if any: dwconv2d or batch_norm(dwconv2d), each
/// used only by the next step.
std::optional<Branch> asBranch(Value term) {
  if (auto norm = term.getDefiningOp<BatchNormOp>()) {
    auto conv = norm.getInput().getDefiningOp<DwConv2dOp>();
    if (conv && usedOnlyOnce(conv.getResult()) && usedOnlyOnce(norm.getResult()))
      return Branch{conv, norm};
    return std::nullopt;
  }
  if (auto conv = term.getDefiningOp<DwConv2dOp>(); conv && usedOnlyOnce(conv.getResult()))
    return Branch{conv, nullptr};
  return std::nullopt;
}

/// Flattens the addf tree rooted at `root` into its terms; interior adds
/// (used only by their parent) are collected in `adds`.
void collectTerms(arith::AddFOp add, SmallVectorImpl<Value> &terms,
                  SmallVectorImpl<arith::AddFOp> &adds) {
  adds.push_back(add);
  for (Value operand : {add.getLhs(), add.getRhs()}) {
    auto inner = operand.getDefiningOp<arith::AddFOp>();
    if (inner && usedOnlyOnce(operand) && inner.getType() == add.getType())
      collectTerms(inner, terms, adds);
    else
      terms.push_back(operand);
  }
}

/// A root is an add that is not itself an interior node of a larger sum.
bool isRoot(arith::AddFOp add) {
  if (!isa<RankedTensorType>(add.getType()))
    return false;
  if (!add.getResult().hasOneUse())
    return true;
  auto parent = dyn_cast<arith::AddFOp>(*add.getResult().getUsers().begin());
  return !parent || parent.getType() != add.getType();
}

Value sumOf(OpBuilder &builder, Location loc, ArrayRef<Value> values) {
  Value sum = values.front();
  for (Value v : values.drop_front())
    sum = arith::AddFOp::create(builder, loc, sum, v);
  return sum;
}

/// A branch as the inference fold reads it, or why its numbers are not known.
FailureOr<::slak::codegen::ArrayFoldBranch> foldInput(const Branch &branch, int index,
                                                      std::string &why) {
  DwConv2dOp conv = branch.conv;
  const std::string name = "branch " + std::to_string(index);
  auto weight = readFloats(constantElements(conv.getWeight()));
  if (!weight) {
    why = "the weight of " + name + " is not a constant";
    return failure();
  }
  ::slak::codegen::ArrayFoldBranch in;
  in.weight = std::move(*weight);
  // Kernel sizes and paddings fit int: the dialect's verifiers cap them at 65535.
  in.window = {static_cast<int>(conv.getKernelH()), static_cast<int>(conv.getKernelW()),
               static_cast<int>(conv.getPadH()), static_cast<int>(conv.getPadW())};
  if (conv.getMask()) {
    auto mask = readBools(constantElements(conv.getMask()));
    if (!mask) {
      why = "the mask of " + name + " is not a constant";
      return failure();
    }
    in.mask.assign(mask->begin(), mask->end());
  }
  if (conv.getBias()) {
    auto bias = readFloats(constantElements(conv.getBias()));
    if (!bias) {
      why = "the bias of " + name + " is not a constant";
      return failure();
    }
    in.hasBias = true;
    in.bias = std::move(*bias);
  }
  if (BatchNormOp norm = branch.norm) {
    auto mean = readFloats(constantElements(norm.getMean()));
    auto var = readFloats(constantElements(norm.getVariance()));
    auto gamma = readFloats(constantElements(norm.getScale()));
    auto beta = readFloats(constantElements(norm.getShift()));
    if (!mean || !var || !gamma || !beta) {
      why = "the batch norm statistics of " + name + " are not constants";
      return failure();
    }
    in.hasNorm = true;
    in.norm = ::slak::codegen::ArrayFoldBranch::Norm{std::move(*gamma), std::move(*beta),
                                                     std::move(*mean), std::move(*var),
                                                     norm.getEpsilon().convertToDouble()};
  }
  return in;
}

struct FuseLkPass : public ::mlir::slak::impl::SlakFuseLkBase<FuseLkPass> {
  using SlakFuseLkBase::SlakFuseLkBase;

  void runOnOperation() override {
    if (mode != "train" && mode != "infer") {
      // At the location only: Operation::emitError would print the whole
      // module after a flag typo.
      mlir::emitError(getOperation()->getLoc())
          << "slak-fuse-lk: mode is '" << mode << "', expected 'train' or 'infer'";
      return signalPassFailure();
    }
    SmallVector<arith::AddFOp> roots;
    getOperation()->walk([&](arith::AddFOp add) {
      if (isRoot(add))
        roots.push_back(add);
    });
    for (arith::AddFOp root : roots)
      fuseSum(root);
  }

  void fuseSum(arith::AddFOp root) {
    SmallVector<Value> terms;
    SmallVector<arith::AddFOp> adds;
    collectTerms(root, terms, adds);

    // Group branches by their input, keeping first-seen order.
    llvm::MapVector<Value, SmallVector<Branch>> groups;
    SmallVector<Value> others;
    for (Value term : terms) {
      if (std::optional<Branch> branch = asBranch(term))
        groups[branch->conv.getInput()].push_back(*branch);
      else
        others.push_back(term);
    }
    bool anyFused = false;
    for (auto &group : groups) {
      anyFused |= group.second.size() >= 2;
      // Branches in program order, whatever the association of the adds.
      llvm::stable_sort(group.second, [](const Branch &a, const Branch &b) {
        return a.conv->getBlock() == b.conv->getBlock() && a.conv->isBeforeInBlock(b.conv);
      });
    }
    if (!anyFused)
      return;

    OpBuilder builder(root);
    Location loc = root.getLoc();
    SmallVector<Value> newTerms;
    SmallVector<Operation *> dead(adds.begin(), adds.end());
    for (auto &[input, branches] : groups) {
      if (branches.size() < 2) {
        newTerms.push_back(branches.front().result());
        continue;
      }
      newTerms.push_back(mode == "infer" ? fuseInfer(builder, input, branches)
                                         : fuseTrain(builder, input, branches));
      for (const Branch &branch : branches) {
        if (branch.norm)
          dead.push_back(branch.norm);
        dead.push_back(branch.conv);
      }
    }
    newTerms.append(others.begin(), others.end());
    Value sum = sumOf(builder, loc, newTerms);
    root.getResult().replaceAllUsesWith(sum);
    eraseWithDeadOperands(dead);
  }

  /// Fused op with masks, biases and batch norms kept as they are.
  Value fuseTrain(OpBuilder &builder, Value input, ArrayRef<Branch> branches) {
    Location loc = branches.front().conv.getLoc();
    auto type = cast<RankedTensorType>(branches.front().result().getType());
    SmallVector<Value> weights, masks;
    SmallVector<int64_t> paddings;
    bool anyMask = false, anyNorm = false;
    for (const Branch &branch : branches) {
      weights.push_back(branch.conv.getWeight());
      paddings.append({branch.conv.getPadH(), branch.conv.getPadW()});
      anyMask |= static_cast<bool>(branch.conv.getMask());
      anyNorm |= static_cast<bool>(branch.norm);
    }
    if (anyMask)
      for (const Branch &branch : branches) {
        if (Value mask = branch.conv.getMask()) {
          masks.push_back(mask);
          continue;
        }
        auto maskType = RankedTensorType::get(branch.conv.getWeight().getType().getShape(),
                                              builder.getI1Type());
        masks.push_back(arith::ConstantOp::create(
            builder, loc, DenseElementsAttr::get(maskType, builder.getBoolAttr(true))));
      }

    if (!anyNorm) {
      // One summed output; the conv biases add up.
      SmallVector<Value> biases;
      for (const Branch &branch : branches)
        if (Value bias = branch.conv.getBias())
          biases.push_back(bias);
      Value bias = biases.empty() ? Value() : sumOf(builder, loc, biases);
      auto op = LkConvOp::create(builder, loc, TypeRange{type}, input, weights, masks, bias,
                                 LkConvOp::paddingsAttr(builder, weights, paddings), nullptr,
                                 nullptr, nullptr, nullptr, nullptr);
      return op.getResult(0);
    }

    // Per-branch outputs, each through its own batch norm. A conv bias before
    // a batch norm moves into its mean: BN(z + b) = BN with mean - b.
    SmallVector<Type> types(branches.size(), type);
    auto op = LkConvOp::create(builder, loc, types, input, weights, masks, Value(),
                               LkConvOp::paddingsAttr(builder, weights, paddings),
                               builder.getUnitAttr(), nullptr, nullptr, nullptr, nullptr);
    SmallVector<Value> outputs;
    for (auto [i, branch] : llvm::enumerate(branches)) {
      Value out = op.getResult(i);
      Value bias = branch.conv.getBias();
      if (BatchNormOp norm = branch.norm) {
        Value mean = norm.getMean();
        if (bias)
          mean = arith::SubFOp::create(builder, loc, mean, bias);
        out = BatchNormOp::create(builder, norm.getLoc(), out.getType(), out, mean,
                                  norm.getVariance(), norm.getScale(), norm.getShift(),
                                  norm.getEpsilonAttr());
      } else if (bias) {
        // Only a branch without a batch norm keeps a bias here: it joins
        // the output through a one-branch op so the sum stays in the dialect.
        out = addBias(builder, loc, out, bias);
      }
      outputs.push_back(out);
    }
    return sumOf(builder, loc, outputs);
  }

  /// y + bias[c] as a depthwise 1x1 conv with unit weight.
  Value addBias(OpBuilder &builder, Location loc, Value y, Value bias) {
    auto type = cast<RankedTensorType>(y.getType());
    auto weightType = RankedTensorType::get({type.getDimSize(1), 1, 1, 1}, type.getElementType());
    Value one = arith::ConstantOp::create(
        builder, loc,
        DenseElementsAttr::get(weightType, builder.getFloatAttr(type.getElementType(), 1.0)));
    return DwConv2dOp::create(builder, loc, type, y, one, Value(), bias, nullptr, nullptr, nullptr);
  }

  /// Structural re-parameterisation: one summed op with folded, merged
  /// constant weights and one bias; train form with a remark if not constant.
  Value fuseInfer(OpBuilder &builder, Value input, ArrayRef<Branch> branches) {
    Location loc = branches.front().conv.getLoc();
    auto type = cast<RankedTensorType>(branches.front().result().getType());
    const int64_t channels = type.getDimSize(1);
    std::vector<::slak::codegen::ArrayFoldBranch> inputs;
    for (auto [i, branch] : llvm::enumerate(branches)) {
      std::string why;
      FailureOr<::slak::codegen::ArrayFoldBranch> in = foldInput(branch, static_cast<int>(i), why);
      if (failed(in)) {
        branch.conv.emitRemark() << "slak-fuse-lk: fused without folding batch norms or "
                                    "merging kernels: "
                                 << why;
        return fuseTrain(builder, input, branches);
      }
      inputs.push_back(std::move(*in));
    }
    // Masks are multiplied into the weights; the sparsity pass reads the zeros.
    ::slak::codegen::ArrayFoldedLayer folded =
        ::slak::codegen::foldLayer(channels, std::move(inputs), nullptr);
    const std::vector<double> bias =
        folded.hasBias ? folded.bias : std::vector<double>(channels, 0.0);

    SmallVector<Value> weights;
    SmallVector<int64_t> paddings;
    for (size_t b = 0; b < folded.weights.size(); ++b) {
      const ::slak::codegen::KernelWindow &w = folded.windows[b];
      auto weightType =
          RankedTensorType::get({channels, 1, w.kernelH, w.kernelW}, type.getElementType());
      weights.push_back(
          arith::ConstantOp::create(builder, loc, makeFloats(weightType, folded.weights[b])));
      paddings.append({w.padH, w.padW});
    }
    auto biasType = RankedTensorType::get({channels}, type.getElementType());
    Value biasValue = arith::ConstantOp::create(builder, loc, makeFloats(biasType, bias));
    auto op = LkConvOp::create(builder, loc, TypeRange{type}, input, weights, ValueRange{},
                               biasValue, LkConvOp::paddingsAttr(builder, weights, paddings),
                               nullptr, nullptr, nullptr, nullptr, nullptr);
    return op.getResult(0);
  }
};

} // namespace

#include "passes/ReferenceInterpreter.h"

#include "codegen/reference/Reference.h"
#include "dialect/ConstantData.h"
#include "dialect/SlakOps.h"
#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "llvm/ADT/DenseMap.h"
#include "llvm/ADT/TypeSwitch.h"

#include <cmath>

using namespace mlir;
namespace codegen = ::slak::codegen;
namespace reference = ::slak::reference;

namespace mlir::slak {
namespace {

class Interpreter {
public:
  explicit Interpreter(std::string &error) : error(error) {}

  FailureOr<std::vector<RefTensor>> run(func::FuncOp func, ArrayRef<RefTensor> args) {
    Block &body = func.getBody().front();
    if (args.size() != body.getNumArguments())
      return fail(func, "takes " + std::to_string(body.getNumArguments()) + " arguments, got " +
                            std::to_string(args.size()));
    for (auto [arg, value] : llvm::zip(body.getArguments(), args))
      values[arg] = value;
    for (Operation &op : body) {
      if (auto ret = dyn_cast<func::ReturnOp>(op)) {
        std::vector<RefTensor> results;
        for (Value v : ret.getOperands())
          results.push_back(values.lookup(v));
        return results;
      }
      if (failed(step(&op)))
        return failure();
    }
    return fail(func, "has no return");
  }

private:
  std::string &error;
  llvm::DenseMap<Value, RefTensor> values;

  LogicalResult fail(Operation *op, const std::string &why) {
    error = op->getName().getStringRef().str() + ": " + why;
    return failure();
  }

  static std::vector<int64_t> shapeOf(Value v) {
    auto type = cast<RankedTensorType>(v.getType());
    return std::vector<int64_t>(type.getShape().begin(), type.getShape().end());
  }

  LogicalResult step(Operation *op) {
    return llvm::TypeSwitch<Operation *, LogicalResult>(op)
        .Case<arith::ConstantOp>([&](auto c) { return constant(c); })
        .Case<arith::AddFOp>(
            [&](auto o) { return elementwise(o, [](double a, double b) { return a + b; }); })
        .Case<arith::SubFOp>(
            [&](auto o) { return elementwise(o, [](double a, double b) { return a - b; }); })
        .Case<arith::MulFOp>(
            [&](auto o) { return elementwise(o, [](double a, double b) { return a * b; }); })
        .Case<arith::SelectOp>([&](auto o) { return select(o); })
        .Case<tensor::ExtractSliceOp>([&](auto o) { return extractSlice(o); })
        .Case<DwConv2dOp>([&](auto o) { return dwconv(o); })
        .Case<BatchNormOp>([&](auto o) { return batchNorm(o); })
        .Case<LkConvOp>([&](auto o) { return lkConv(o); })
        .Default([&](Operation *o) { return fail(o, "is not supported by the interpreter"); });
  }

  LogicalResult constant(arith::ConstantOp op) {
    auto attr = dyn_cast<ElementsAttr>(op.getValue());
    if (!attr)
      return fail(op, "only tensor constants are supported");
    RefTensor t{shapeOf(op.getResult()), {}};
    if (auto floats = readFloats(attr)) {
      t.data = std::move(*floats);
    } else if (auto bools = readBools(attr)) {
      t.data.assign(bools->begin(), bools->end());
    } else {
      return fail(op, "cannot read the constant's elements");
    }
    values[op.getResult()] = std::move(t);
    return success();
  }

  template <typename Op, typename Fn> LogicalResult elementwise(Op op, Fn fn) {
    const RefTensor &a = values[op.getLhs()];
    const RefTensor &b = values[op.getRhs()];
    if (a.shape != b.shape)
      return fail(op, "operands of different shapes");
    RefTensor r{a.shape, std::vector<double>(a.data.size())};
    for (size_t i = 0; i < r.data.size(); ++i)
      r.data[i] = fn(a.data[i], b.data[i]);
    values[op.getResult()] = std::move(r);
    return success();
  }

  LogicalResult select(arith::SelectOp op) {
    const RefTensor &c = values[op.getCondition()];
    const RefTensor &a = values[op.getTrueValue()];
    const RefTensor &b = values[op.getFalseValue()];
    if (c.data.size() != a.data.size())
      return fail(op, "only elementwise tensor selects are supported");
    RefTensor r{a.shape, std::vector<double>(a.data.size())};
    for (size_t i = 0; i < r.data.size(); ++i)
      r.data[i] = c.data[i] != 0 ? a.data[i] : b.data[i];
    values[op.getResult()] = std::move(r);
    return success();
  }

  LogicalResult extractSlice(tensor::ExtractSliceOp op) {
    const RefTensor &src = values[op.getSource()];
    if (!op.hasUnitStride() || src.shape.size() != 4 ||
        ShapedType::isDynamicShape(op.getStaticOffsets()) ||
        ShapedType::isDynamicShape(op.getStaticSizes()))
      return fail(op, "only static, unit-stride, rank-4 slices are supported");
    ArrayRef<int64_t> off = op.getStaticOffsets(), size = op.getStaticSizes();
    RefTensor r{std::vector<int64_t>(size.begin(), size.end()), {}};
    for (int64_t a = 0; a < size[0]; ++a)
      for (int64_t b = 0; b < size[1]; ++b)
        for (int64_t c = 0; c < size[2]; ++c)
          for (int64_t d = 0; d < size[3]; ++d)
            r.data.push_back(
                src.data[(((a + off[0]) * src.shape[1] + b + off[1]) * src.shape[2] + c + off[2]) *
                             src.shape[3] +
                         d + off[3]]);
    values[op.getResult()] = std::move(r);
    return success();
  }

  LogicalResult batchNorm(BatchNormOp op) {
    const RefTensor &x = values[op.getInput()];
    const RefTensor &mean = values[op.getMean()], &var = values[op.getVariance()],
                    &scale = values[op.getScale()], &shift = values[op.getShift()];
    const double eps = op.getEpsilon().convertToDouble();
    const int64_t channels = x.shape[1], plane = x.shape[2] * x.shape[3];
    RefTensor r{x.shape, x.data};
    for (size_t i = 0; i < r.data.size(); ++i) {
      const int64_t c = (i / plane) % channels;
      r.data[i] =
          (r.data[i] - mean.data[c]) * scale.data[c] / std::sqrt(var.data[c] + eps) + shift.data[c];
    }
    values[op.getResult()] = std::move(r);
    return success();
  }

  static std::vector<float> toFloats(const std::vector<double> &v) {
    return std::vector<float>(v.begin(), v.end());
  }

  /// Runs the oracle for one input and a list of branches.
  LogicalResult convolve(Operation *op, Value input, ValueRange weights,
                         const std::vector<codegen::BranchMask> &masks, Value bias,
                         ArrayRef<std::pair<int64_t, int64_t>> paddings, bool perBranch) {
    const RefTensor &x = values[input];
    codegen::KernelSpec spec;
    spec.channels = x.shape[1];
    spec.height = x.shape[2];
    spec.width = x.shape[3];
    spec.perBranchOutputs = perBranch;
    spec.hasBias = static_cast<bool>(bias);
    reference::Weights w;
    for (auto [i, weight] : llvm::enumerate(weights)) {
      const RefTensor &t = values[weight];
      spec.branches.push_back(codegen::Branch{
          static_cast<int>(t.shape[2]), static_cast<int>(t.shape[3]),
          static_cast<int>(paddings[i].first), static_cast<int>(paddings[i].second), true});
      w.push_back(toFloats(t.data));
    }
    std::string invalid = spec.validate();
    if (!invalid.empty())
      return fail(op, invalid);
    reference::Shape shape{x.shape[0], x.shape[1], x.shape[2], x.shape[3]};
    std::vector<std::vector<float>> outs =
        reference::forward(spec, shape, toFloats(x.data), w, masks,
                           bias ? toFloats(values[bias].data) : std::vector<float>{});
    for (auto [result, out] : llvm::zip(op->getResults(), outs))
      values[result] = RefTensor{shapeOf(result), std::vector<double>(out.begin(), out.end())};
    return success();
  }

  static codegen::BranchMask maskOf(const RefTensor &t) {
    codegen::BranchMask m(t.data.size());
    for (size_t i = 0; i < m.size(); ++i)
      m[i] = t.data[i] != 0;
    return m;
  }

  LogicalResult dwconv(DwConv2dOp op) {
    std::vector<codegen::BranchMask> masks = {op.getMask() ? maskOf(values[op.getMask()])
                                                           : codegen::BranchMask{}};
    return convolve(op, op.getInput(), ValueRange{op.getWeight()}, masks, op.getBias(),
                    {{op.getPadH(), op.getPadW()}}, false);
  }

  LogicalResult lkConv(LkConvOp op) {
    const int64_t channels = op.getInput().getType().getDimSize(1);
    std::vector<codegen::BranchMask> masks(op.getNumBranches());
    SmallVector<std::pair<int64_t, int64_t>> paddings;
    for (unsigned b = 0; b < op.getNumBranches(); ++b) {
      paddings.push_back({op.getPadH(b), op.getPadW(b)});
      if (!op.getMasks().empty())
        masks[b] = maskOf(values[op.getMasks()[b]]);
    }
    if (ElementsAttr tableAttr = op.getTapTableAttr()) {
      // The table decides, as it does in generated kernels.
      std::optional<std::vector<int32_t>> table = readInt32s(tableAttr);
      if (!table)
        return fail(op, "cannot read the tap table");
      const int64_t heads = op.getNumBranches() * channels + 1;
      for (unsigned b = 0; b < op.getNumBranches(); ++b) {
        const int64_t kh = op.getKernelH(b), kw = op.getKernelW(b);
        masks[b].assign(channels * kh * kw, 0);
        for (int64_t c = 0; c < channels; ++c)
          for (int32_t k = (*table)[b * channels + c]; k < (*table)[b * channels + c + 1]; ++k) {
            const int32_t tap = (*table)[heads + k];
            masks[b][(c * kh + (tap >> 16)) * kw + (tap & 0xffff)] = 1;
          }
      }
    }
    return convolve(op, op.getInput(), op.getWeights(), masks, op.getBias(), paddings,
                    op.getPerBranchOutputs());
  }
};

} // namespace

FailureOr<std::vector<RefTensor>> interpret(func::FuncOp func, ArrayRef<RefTensor> args,
                                            std::string &error) {
  return Interpreter(error).run(func, args);
}

} // namespace mlir::slak

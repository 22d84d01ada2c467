// Verifiers and helpers of the slak ops. Every message names the operand,
// the value found and the value expected.
#include "dialect/SlakOps.h"

#include "dialect/ConstantData.h"

#include "mlir/IR/Builders.h"
#include "mlir/IR/BuiltinTypes.h"
#include "mlir/IR/TypeUtilities.h"

#include "llvm/ADT/STLExtras.h"

#include <limits>
#include <string>

using namespace mlir;
using namespace mlir::slak;

namespace {

std::string shapeText(ArrayRef<int64_t> shape) {
  std::string text;
  llvm::raw_string_ostream os(text);
  llvm::interleave(
      shape, os, [&](int64_t d) { ShapedType::isDynamic(d) ? os << "?" : os << d; }, "x");
  return text;
}

bool isSupportedElementType(Type type) { return type.isF32() || type.isF16() || type.isBF16(); }

constexpr int64_t kMaxInputDim = std::numeric_limits<int32_t>::max();
/// Taps are encoded as (row << 16) | column.
constexpr int64_t kMaxKernelSize = 65535;

/// The input: a rank-4 NCHW tensor with a static channel count and a
/// supported element type.
LogicalResult verifyInput(Operation *op, RankedTensorType input) {
  if (input.getRank() != 4)
    return op->emitOpError() << "input must be a rank-4 NCHW tensor, found rank " << input.getRank()
                             << " (" << input << ")";
  if (input.isDynamicDim(1))
    return op->emitOpError() << "input channel dimension must be static, found " << input;
  if (!isSupportedElementType(input.getElementType()))
    return op->emitOpError() << "input element type " << input.getElementType()
                             << " is not supported; expected f32, f16 or bf16";
  // The kernels take channels, height and width as 32-bit ints; the
  // verifiers' own size arithmetic then cannot overflow either.
  const char *names[] = {"batch", "channel", "height", "width"};
  for (int d = 1; d < 4; ++d)
    if (!input.isDynamicDim(d) && input.getDimSize(d) > kMaxInputDim)
      return op->emitOpError() << "input " << names[d] << " dimension " << input.getDimSize(d)
                               << " is too large, at most " << kMaxInputDim << " is supported";
  return success();
}

/// A per-channel parameter (bias, batch-norm statistics): tensor<C x T>.
LogicalResult verifyChannelVector(Operation *op, StringRef name, RankedTensorType value,
                                  RankedTensorType input) {
  const int64_t channels = input.getDimSize(1);
  if (value.getRank() != 1 || value.getDimSize(0) != channels)
    return op->emitOpError() << name << " must have shape " << channels << ", found "
                             << shapeText(value.getShape());
  if (value.getElementType() != input.getElementType())
    return op->emitOpError() << name << " element type " << value.getElementType()
                             << " does not match input element type " << input.getElementType();
  return success();
}

/// A depthwise weight tensor<C x 1 x KH x KW x T> with odd KH, KW.
LogicalResult verifyWeight(Operation *op, StringRef name, RankedTensorType weight,
                           RankedTensorType input) {
  if (weight.getRank() != 4 || weight.getDimSize(1) != 1 || !weight.hasStaticShape())
    return op->emitOpError() << name << " must have static shape C x 1 x KH x KW, found "
                             << shapeText(weight.getShape());
  const int64_t channels = input.getDimSize(1);
  if (weight.getDimSize(0) != channels)
    return op->emitOpError() << name << " has " << weight.getDimSize(0) << " channels, expected "
                             << channels << " (the input's channel count)";
  const int64_t kh = weight.getDimSize(2), kw = weight.getDimSize(3);
  if (kh % 2 == 0 || kw % 2 == 0)
    return op->emitOpError() << name << " has kernel size " << kh << "x" << kw
                             << ", expected odd sizes on both axes (a centred window)";
  if (kh > kMaxKernelSize || kw > kMaxKernelSize)
    return op->emitOpError() << name << " has kernel size " << kh << "x" << kw << ", at most "
                             << kMaxKernelSize << " per axis is supported (taps are 16-bit)";
  if (weight.getElementType() != input.getElementType())
    return op->emitOpError() << name << " element type " << weight.getElementType()
                             << " does not match input element type " << input.getElementType();
  return success();
}

/// A sparsity mask: the weight's shape with i1 elements.
LogicalResult verifyMask(Operation *op, StringRef name, RankedTensorType mask,
                         RankedTensorType weight) {
  if (mask.getShape() != weight.getShape())
    return op->emitOpError() << name << " has shape " << shapeText(mask.getShape()) << ", expected "
                             << shapeText(weight.getShape()) << " (the weight's shape)";
  if (!mask.getElementType().isInteger(1))
    return op->emitOpError() << name << " has element type " << mask.getElementType()
                             << ", expected i1";
  return success();
}

LogicalResult verifyPadding(Operation *op, StringRef name, int64_t ph, int64_t pw, int64_t kh,
                            int64_t kw) {
  if (ph < 0 || pw < 0 || ph >= kh || pw >= kw)
    return op->emitOpError() << name << " [" << ph << ", " << pw
                             << "] is larger than the kernel allows: expected 0 <= padding < "
                                "kernel size ("
                             << kh << "x" << kw << "), \"same\" is [" << kh / 2 << ", " << kw / 2
                             << "]";
  return success();
}

LogicalResult verifyUnitVector(Operation *op, StringRef name, ArrayRef<int64_t> values) {
  if (values.size() != 2 || values[0] != 1 || values[1] != 1) {
    auto diag = op->emitOpError() << name << " [";
    llvm::interleaveComma(values, diag);
    return diag << "] is not supported: slak ops compute " << name
                << " [1, 1] only (SLaK's large kernels are stride 1, dilation 1)";
  }
  return success();
}

/// Output shape of a branch: N x C x (H + 2ph - KH + 1) x (W + 2pw - KW + 1).
SmallVector<int64_t> outputShape(RankedTensorType input, int64_t kh, int64_t kw, int64_t ph,
                                 int64_t pw) {
  SmallVector<int64_t> shape(input.getShape());
  if (!input.isDynamicDim(2))
    shape[2] = shape[2] + 2 * ph - kh + 1;
  if (!input.isDynamicDim(3))
    shape[3] = shape[3] + 2 * pw - kw + 1;
  return shape;
}

LogicalResult verifyResult(Operation *op, StringRef name, RankedTensorType result,
                           ArrayRef<int64_t> expected, Type elementType) {
  if (failed(verifyCompatibleShape(result.getShape(), expected)))
    return op->emitOpError() << name << " has shape " << shapeText(result.getShape())
                             << ", expected " << shapeText(expected);
  if (result.getElementType() != elementType)
    return op->emitOpError() << name << " element type " << result.getElementType()
                             << " does not match input element type " << elementType;
  return success();
}

int64_t paddingOr(std::optional<ArrayRef<int64_t>> padding, size_t index, int64_t kernel) {
  return padding && padding->size() > index ? (*padding)[index] : kernel / 2;
}

/// The four per-channel parameter types of batch_norm: one type when they
/// agree (the usual case), else all four, so that the verifier can say which
/// one is wrong.
ParseResult parseChannelParamTypes(OpAsmParser &parser, Type &mean, Type &variance, Type &scale,
                                   Type &shift) {
  if (parser.parseType(mean))
    return failure();
  variance = scale = shift = mean;
  if (succeeded(parser.parseOptionalComma()))
    return failure(parser.parseType(variance) || parser.parseComma() || parser.parseType(scale) ||
                   parser.parseComma() || parser.parseType(shift));
  return success();
}

void printChannelParamTypes(OpAsmPrinter &printer, Operation *, Type mean, Type variance,
                            Type scale, Type shift) {
  printer << mean;
  if (variance != mean || scale != mean || shift != mean)
    printer << ", " << variance << ", " << scale << ", " << shift;
}

} // namespace

//===----------------------------------------------------------------------===//
// slak.dwconv2d
//===----------------------------------------------------------------------===//

int64_t DwConv2dOp::getKernelH() { return getWeight().getType().getDimSize(2); }
int64_t DwConv2dOp::getKernelW() { return getWeight().getType().getDimSize(3); }
int64_t DwConv2dOp::getPadH() { return paddingOr(getPadding(), 0, getKernelH()); }
int64_t DwConv2dOp::getPadW() { return paddingOr(getPadding(), 1, getKernelW()); }

LogicalResult DwConv2dOp::verify() {
  Operation *op = getOperation();
  auto input = getInput().getType();
  auto weight = getWeight().getType();
  if (failed(verifyInput(op, input)) || failed(verifyWeight(op, "weight", weight, input)))
    return failure();
  if (getMask() && failed(verifyMask(op, "mask", getMask().getType(), weight)))
    return failure();
  if (getBias() && failed(verifyChannelVector(op, "bias", getBias().getType(), input)))
    return failure();
  if (auto padding = getPadding(); padding && padding->size() != 2)
    return emitOpError() << "padding has " << padding->size()
                         << " entries, expected 2 ([pad_h, pad_w])";
  if (failed(verifyPadding(op, "padding", getPadH(), getPadW(), getKernelH(), getKernelW())) ||
      failed(verifyUnitVector(op, "stride", getStride())) ||
      failed(verifyUnitVector(op, "dilation", getDilation())))
    return failure();
  return verifyResult(op, "result", getOutput().getType(),
                      outputShape(input, getKernelH(), getKernelW(), getPadH(), getPadW()),
                      input.getElementType());
}

//===----------------------------------------------------------------------===//
// slak.batch_norm
//===----------------------------------------------------------------------===//

LogicalResult BatchNormOp::verify() {
  Operation *op = getOperation();
  auto input = getInput().getType();
  if (failed(verifyInput(op, input)))
    return failure();
  const StringRef names[] = {"mean", "variance", "scale", "shift"};
  const Value values[] = {getMean(), getVariance(), getScale(), getShift()};
  for (auto [name, value] : llvm::zip_equal(names, values))
    if (failed(verifyChannelVector(op, name, cast<RankedTensorType>(value.getType()), input)))
      return failure();
  const float epsilon = getEpsilon().convertToFloat();
  if (!(epsilon > 0.0f))
    return emitOpError() << "epsilon must be positive, found " << epsilon;
  return success();
}

//===----------------------------------------------------------------------===//
// slak.lk_conv
//===----------------------------------------------------------------------===//

int64_t LkConvOp::getKernelH(unsigned b) {
  return cast<RankedTensorType>(getWeights()[b].getType()).getDimSize(2);
}
int64_t LkConvOp::getKernelW(unsigned b) {
  return cast<RankedTensorType>(getWeights()[b].getType()).getDimSize(3);
}
int64_t LkConvOp::getPadH(unsigned b) { return paddingOr(getPaddings(), 2 * b, getKernelH(b)); }
int64_t LkConvOp::getPadW(unsigned b) { return paddingOr(getPaddings(), 2 * b + 1, getKernelW(b)); }

LogicalResult LkConvOp::verify() {
  Operation *op = getOperation();
  auto input = getInput().getType();
  if (failed(verifyInput(op, input)))
    return failure();
  const unsigned numBranches = getNumBranches();
  if (numBranches == 0)
    return emitOpError() << "needs at least one branch weight, found none";
  if (!getMasks().empty() && getMasks().size() != numBranches)
    return emitOpError() << "has " << getMasks().size() << " masks for " << numBranches
                         << " branches; give one mask per branch or none";
  if (auto paddings = getPaddings(); paddings && paddings->size() != 2 * numBranches)
    return emitOpError() << "paddings has " << paddings->size() << " entries, expected "
                         << 2 * numBranches << " ([pad_h, pad_w] for each of " << numBranches
                         << " branches)";

  SmallVector<int64_t> firstShape;
  for (unsigned b = 0; b < numBranches; ++b) {
    std::string name = "weight of branch " + std::to_string(b);
    auto weight = cast<RankedTensorType>(getWeights()[b].getType());
    if (failed(verifyWeight(op, name, weight, input)))
      return failure();
    if (!getMasks().empty() &&
        failed(verifyMask(op, "mask for branch " + std::to_string(b),
                          cast<RankedTensorType>(getMasks()[b].getType()), weight)))
      return failure();
    const int64_t kh = getKernelH(b), kw = getKernelW(b), ph = getPadH(b), pw = getPadW(b);
    if (failed(verifyPadding(op, "padding of branch " + std::to_string(b), ph, pw, kh, kw)))
      return failure();
    SmallVector<int64_t> shape = outputShape(input, kh, kw, ph, pw);
    if (b == 0) {
      firstShape = shape;
    } else if (shape != firstShape) {
      return emitOpError() << "branch " << b << " (kernel " << kh << "x" << kw << ", padding ["
                           << ph << ", " << pw << "]) gives output shape " << shapeText(shape)
                           << " but branch 0 gives " << shapeText(firstShape)
                           << "; all branches must give the same output size";
    }
  }

  const bool perBranch = getPerBranchOutputs();
  if (perBranch && getBias())
    return emitOpError() << "takes no bias with per_branch_outputs (each branch's batch norm "
                            "carries its shift); drop the bias or the per_branch_outputs flag";
  if (getBias() && failed(verifyChannelVector(op, "bias", getBias().getType(), input)))
    return failure();
  const unsigned expectedResults = perBranch ? numBranches : 1;
  if (getNumResults() != expectedResults)
    return emitOpError() << "has " << getNumResults() << " results, expected " << expectedResults
                         << (perBranch ? " (one per branch with per_branch_outputs)"
                                       : " (the summed output)");
  for (auto [i, result] : llvm::enumerate(getOutputs()))
    if (failed(verifyResult(op, "result " + std::to_string(i),
                            cast<RankedTensorType>(result.getType()), firstShape,
                            input.getElementType())))
      return failure();

  if (auto taps = getTapsAttr()) {
    if (taps.getBranches().size() != numBranches)
      return emitOpError() << "#slak.taps describes " << taps.getBranches().size()
                           << " branches, expected " << numBranches;
    for (auto [b, attr] : llvm::enumerate(taps.getBranches())) {
      auto branch = cast<BranchTapsAttr>(attr);
      if (branch.getKernelH() != getKernelH(b) || branch.getKernelW() != getKernelW(b))
        return emitOpError() << "#slak.taps branch " << b << " has kernel " << branch.getKernelH()
                             << "x" << branch.getKernelW() << ", expected " << getKernelH(b) << "x"
                             << getKernelW(b) << " (the weight's window)";
    }
    if (auto order = taps.getChannelOrder(); order && order.size() != input.getDimSize(1))
      return emitOpError() << "#slak.taps channel_order has " << order.size()
                           << " entries, expected " << input.getDimSize(1) << " (the channels)";
  }
  if (failed(verifyTapTable()))
    return failure();
  if (ScheduleAttr attr = getScheduleAttr(); attr && attr.getSchedule().stageInput) {
    const ::slak::codegen::Schedule schedule = attr.getSchedule();
    // The staged input tile covers the output tile plus the halo of the
    // largest window; no GPU gives a block more than 227 KiB of shared memory.
    int64_t haloH = 0, haloW = 0;
    for (unsigned b = 0; b < numBranches; ++b) {
      haloH = std::max(haloH, getKernelH(b) - 1);
      haloW = std::max(haloW, getKernelW(b) - 1);
    }
    // Tiles up to 2^31 and halos up to 2^16 (verified above): the sides
    // cannot overflow, their product can, so check the sides first.
    constexpr int64_t kMaxSharedBytes = 227 * 1024;
    const int64_t rows = int64_t{schedule.tileH} + haloH, cols = int64_t{schedule.tileW} + haloW;
    if (rows > kMaxSharedBytes || cols > kMaxSharedBytes || rows * cols * 4 > kMaxSharedBytes)
      return emitOpError() << "#slak.schedule tile [" << schedule.tileH << ", " << schedule.tileW
                           << "] with stage_input needs "
                           << (rows > kMaxSharedBytes || cols > kMaxSharedBytes
                                   ? std::to_string(rows) + " x " + std::to_string(cols) + " x 4"
                                   : std::to_string(rows * cols * 4))
                           << " bytes of shared memory for the tile and its halo, more than "
                           << kMaxSharedBytes << "; use a smaller tile or stage_input = false";
  }
  return success();
}

DenseI64ArrayAttr LkConvOp::paddingsAttr(Builder &builder, ValueRange weights,
                                         ArrayRef<int64_t> paddings) {
  for (auto [b, weight] : llvm::enumerate(weights)) {
    auto type = cast<RankedTensorType>(weight.getType());
    if (paddings[2 * b] != type.getDimSize(2) / 2 || paddings[2 * b + 1] != type.getDimSize(3) / 2)
      return builder.getDenseI64ArrayAttr(paddings);
  }
  return nullptr;
}

LogicalResult LkConvOp::verifyTapTable() {
  ElementsAttr table = getTapTableAttr();
  if (!table)
    return success();
  const int64_t channels = getInput().getType().getDimSize(1);
  const int64_t heads = getNumBranches() * channels + 1;
  auto type = dyn_cast<RankedTensorType>(table.getType());
  if (!type || type.getRank() != 1 || !type.getElementType().isInteger(32))
    return emitOpError() << "tap_table must be a 1-D i32 tensor, found " << table.getType();
  if (type.getDimSize(0) < heads)
    return emitOpError() << "tap_table has " << type.getDimSize(0) << " entries, expected at least "
                         << heads << " (B*C+1 offsets)";
  std::optional<std::vector<int32_t>> values = readInt32s(table);
  if (!values)
    return success(); // an elided or external blob: checked where it is loaded
  const int64_t numTaps = type.getDimSize(0) - heads;
  if ((*values)[0] != 0 || (*values)[heads - 1] != numTaps)
    return emitOpError() << "tap_table offsets run from " << (*values)[0] << " to "
                         << (*values)[heads - 1] << ", expected 0 to " << numTaps
                         << " (the number of taps)";
  // All offsets first: from 0 to the tap count without a decrease, every
  // channel's range lies inside the taps. (Checked per channel while walking
  // the taps, an offset past the end was read first.)
  for (int64_t b = 0; b < getNumBranches(); ++b)
    for (int64_t c = 0; c < channels; ++c)
      if ((*values)[b * channels + c + 1] < (*values)[b * channels + c])
        return emitOpError() << "tap_table offsets decrease at branch " << b << " channel " << c;
  for (int64_t b = 0; b < getNumBranches(); ++b)
    for (int64_t c = 0; c < channels; ++c) {
      const int64_t begin = (*values)[b * channels + c], end = (*values)[b * channels + c + 1];
      for (int64_t k = begin; k < end; ++k) {
        const int32_t tap = (*values)[heads + k];
        if ((tap >> 16) >= getKernelH(b) || (tap & 0xffff) >= getKernelW(b) || tap < 0)
          return emitOpError() << "tap_table entry " << k << " of branch " << b << " channel " << c
                               << " is (" << (tap >> 16) << ", " << (tap & 0xffff)
                               << "), outside the " << getKernelH(b) << "x" << getKernelW(b)
                               << " window";
      }
    }
  return success();
}

#define GET_OP_CLASSES
#include "dialect/SlakOps.cpp.inc"

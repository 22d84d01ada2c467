// --slak-specialize-sparsity: tap tables, trimmed windows, dense-or-table
// form and channel order for each slak.lk_conv, from constant masks (or the
// zeros of constant weights). The table itself is built by codegen's
// MLIR-free builder, the same one the runtime uses for live masks.
#include "passes/Passes.h"

#include "passes/EraseDead.h"

#include "codegen/KernelSpec.h"
#include "codegen/TapTable.h"
#include "dialect/ConstantData.h"
#include "dialect/SlakOps.h"
#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/IR/Builders.h"
#include "mlir/IR/BuiltinDialect.h"
#include "mlir/IR/DialectResourceBlobManager.h"

#include <algorithm>
#include <cstdio>
#include <numeric>

namespace mlir::slak {
#define GEN_PASS_DEF_SLAKSPECIALIZESPARSITY
#include "passes/Passes.h.inc"
} // namespace mlir::slak

using namespace mlir;
using namespace mlir::slak;

namespace {

std::string shortText(double value) {
  char text[32];
  std::snprintf(text, sizeof(text), "%g", value);
  return text;
}

/// What the pass knows about one branch while rewriting it.
struct BranchState {
  Value weight, mask; // mask may be null (dense, or zeros of a constant weight)
  int64_t kh, kw, ph, pw;
  ::slak::codegen::BranchMask live; // C*kh*kw bytes; empty = every tap live
};

::slak::codegen::KernelSpec specOf(int64_t channels, ArrayRef<BranchState> branches) {
  ::slak::codegen::KernelSpec spec;
  spec.channels = channels;
  for (const BranchState &b : branches)
    spec.branches.push_back(::slak::codegen::Branch{static_cast<int>(b.kh), static_cast<int>(b.kw),
                                                    static_cast<int>(b.ph), static_cast<int>(b.pw),
                                                    b.live.empty()});
  return spec;
}

/// rows [r0, r0 + kh) x cols [c0, c0 + kw) of a C x 1 x KH x KW tensor.
template <typename T>
std::vector<T> sliceWindow(const std::vector<T> &values, int64_t channels, int64_t KH, int64_t KW,
                           int64_t r0, int64_t c0, int64_t kh, int64_t kw) {
  std::vector<T> out;
  out.reserve(channels * kh * kw);
  for (int64_t c = 0; c < channels; ++c)
    for (int64_t u = 0; u < kh; ++u)
      for (int64_t v = 0; v < kw; ++v)
        out.push_back(values[(c * KH + r0 + u) * KW + c0 + v]);
  return out;
}

struct SpecializeSparsityPass
    : public ::mlir::slak::impl::SlakSpecializeSparsityBase<SpecializeSparsityPass> {
  using SlakSpecializeSparsityBase::SlakSpecializeSparsityBase;

  int tableCount = 0;

  void runOnOperation() override {
    if (!(densityThreshold >= 0.0 && densityThreshold <= 1.0)) {
      // At the location only: Operation::emitError would print the whole
      // module after a flag typo.
      mlir::emitError(getOperation()->getLoc())
          << "slak-specialize-sparsity: density-threshold is " << shortText(densityThreshold)
          << ", expected a value in [0, 1]";
      return signalPassFailure();
    }
    SmallVector<LkConvOp> ops;
    getOperation()->walk([&](LkConvOp op) { ops.push_back(op); });
    for (LkConvOp op : ops)
      specialize(op);
  }

  void specialize(LkConvOp op) {
    OpBuilder builder(op);
    Location loc = op.getLoc();
    const int64_t channels = op.getInput().getType().getDimSize(1);
    const bool hasMasks = !op.getMasks().empty();

    // Live taps per branch: constant masks, else the zeros of constant weights.
    SmallVector<BranchState> branches;
    bool known = true;
    for (unsigned b = 0; b < op.getNumBranches(); ++b) {
      BranchState state{op.getWeights()[b],
                        hasMasks ? op.getMasks()[b] : Value(),
                        op.getKernelH(b),
                        op.getKernelW(b),
                        op.getPadH(b),
                        op.getPadW(b),
                        {}};
      if (hasMasks) {
        auto mask = readBools(constantElements(state.mask));
        known &= mask.has_value();
        if (mask)
          state.live.assign(mask->begin(), mask->end());
      } else if (auto weight = readFloats(constantElements(state.weight))) {
        state.live.resize(weight->size());
        for (size_t i = 0; i < weight->size(); ++i)
          state.live[i] = (*weight)[i] != 0.0;
      }
      branches.push_back(std::move(state));
    }
    if (!known) {
      op.setRuntimeSparse(true);
      return;
    }

    if (trim)
      trimBranches(builder, loc, channels, branches);
    if (!op.getPerBranchOutputs())
      dropEmptyBranches(channels, branches);

    ::slak::codegen::KernelSpec spec = specOf(channels, branches);
    std::vector<::slak::codegen::BranchMask> masks;
    for (const BranchState &b : branches)
      masks.push_back(b.live);
    ::slak::codegen::TapTable table = ::slak::codegen::buildTapTable(spec, masks);

    // Constant weights take their masks in (zeros are then the mask); a
    // non-constant weight keeps its mask, which stays the op's semantics.
    for (BranchState &b : branches)
      if (b.mask && foldMaskIntoConstantWeight(builder, loc, b))
        b.mask = nullptr;

    SmallVector<Attribute> stats;
    for (unsigned b = 0; b < branches.size(); ++b) {
      ::slak::codegen::BranchTapStats s = ::slak::codegen::branchTapStats(spec, table, b);
      const bool tableForm = s.density < densityThreshold;
      if (!tableForm && branches[b].mask)
        zeroMaskedWeights(builder, loc, branches[b]);
      stats.push_back(BranchTapsAttr::get(builder.getContext(), branches[b].kh, branches[b].kw,
                                          s.minPerChannel, s.maxPerChannel,
                                          APFloat(s.meanPerChannel), APFloat(s.density), s.rowBegin,
                                          s.rowEnd, s.colBegin, s.colEnd, tableForm));
    }

    // Heaviest channels first, so that a wave's blocks do similar work.
    SmallVector<int64_t> load(channels, 0);
    for (unsigned b = 0; b < branches.size(); ++b)
      for (int64_t c = 0; c < channels; ++c)
        load[c] += table.count(b, c);
    SmallVector<int32_t> order(channels);
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(),
                     [&](int32_t a, int32_t b) { return load[a] > load[b]; });

    std::vector<int32_t> flat(table.offsets);
    flat.insert(flat.end(), table.taps.begin(), table.taps.end());
    ElementsAttr tableAttr =
        makeInt32Resource(builder.getContext(), "slak_taps_" + std::to_string(tableCount++), flat);
    StringRef key = cast<DenseResourceElementsAttr>(tableAttr).getRawHandle().getKey();

    // Rewrite the op's operands: trimmed windows, dropped branches, folded
    // masks (the masks that remain cover every branch, all-true where dense).
    SmallVector<Value> weights;
    SmallVector<int64_t> paddings;
    bool keepMasks = false;
    for (const BranchState &b : branches) {
      weights.push_back(b.weight);
      paddings.append({b.ph, b.pw});
      keepMasks |= static_cast<bool>(b.mask);
    }
    SmallVector<Value> newMasks;
    if (keepMasks)
      for (const BranchState &b : branches)
        newMasks.push_back(b.mask ? b.mask : maskConstant(builder, loc, channels, b));
    auto fused = LkConvOp::create(
        builder, loc, op.getResultTypes(), op.getInput(), weights, newMasks, op.getBias(),
        LkConvOp::paddingsAttr(builder, weights, paddings), op.getPerBranchOutputsAttr(), nullptr,
        TapsAttr::get(builder.getContext(), builder.getArrayAttr(stats), builder.getStringAttr(key),
                      builder.getDenseI32ArrayAttr(order)),
        tableAttr, op.getScheduleAttr());
    op.replaceAllUsesWith(fused.getResults());
    eraseWithDeadOperands({op.getOperation()});
  }

  /// Trims all-zero border rows and columns symmetrically, so the window
  /// stays odd and centred and the output size does not change.
  void trimBranches(OpBuilder &builder, Location loc, int64_t channels,
                    SmallVectorImpl<BranchState> &branches) {
    for (BranchState &b : branches) {
      if (b.live.empty())
        continue;
      int64_t rowBegin = b.kh, rowEnd = 0, colBegin = b.kw, colEnd = 0;
      for (int64_t c = 0; c < channels; ++c)
        for (int64_t u = 0; u < b.kh; ++u)
          for (int64_t v = 0; v < b.kw; ++v)
            if (b.live[(c * b.kh + u) * b.kw + v]) {
              rowBegin = std::min(rowBegin, u);
              rowEnd = std::max(rowEnd, u + 1);
              colBegin = std::min(colBegin, v);
              colEnd = std::max(colEnd, v + 1);
            }
      if (rowEnd == 0)
        continue; // no live tap at all: dropped or kept whole
      // Padding bounds the trim too: a window must keep 0 <= pad.
      const int64_t dr = std::min({rowBegin, b.kh - rowEnd, b.ph}),
                    dc = std::min({colBegin, b.kw - colEnd, b.pw});
      if (dr == 0 && dc == 0)
        continue;
      const int64_t kh = b.kh - 2 * dr, kw = b.kw - 2 * dc;
      b.weight = sliceWeight(builder, loc, b.weight, dr, dc, kh, kw);
      if (b.mask)
        b.mask = sliceWeight(builder, loc, b.mask, dr, dc, kh, kw);
      b.live = sliceWindow(b.live, channels, b.kh, b.kw, dr, dc, kh, kw);
      b.kh = kh;
      b.kw = kw;
      b.ph -= dr;
      b.pw -= dc;
    }
  }

  /// A window of a C x 1 x KH x KW value: a new constant when it is one,
  /// else a tensor.extract_slice.
  Value sliceWeight(OpBuilder &builder, Location loc, Value value, int64_t r0, int64_t c0,
                    int64_t kh, int64_t kw) {
    auto type = cast<RankedTensorType>(value.getType());
    const int64_t channels = type.getDimSize(0), KH = type.getDimSize(2), KW = type.getDimSize(3);
    auto sliced = RankedTensorType::get({channels, 1, kh, kw}, type.getElementType());
    ElementsAttr attr = constantElements(value);
    if (type.getElementType().isInteger(1)) {
      if (auto bools = readBools(attr)) {
        std::vector<uint8_t> window = sliceWindow(*bools, channels, KH, KW, r0, c0, kh, kw);
        SmallVector<bool> bits(window.begin(), window.end());
        return arith::ConstantOp::create(builder, loc, DenseElementsAttr::get(sliced, bits));
      }
    } else if (auto floats = readFloats(attr)) {
      return arith::ConstantOp::create(
          builder, loc, makeFloats(sliced, sliceWindow(*floats, channels, KH, KW, r0, c0, kh, kw)));
    }
    SmallVector<OpFoldResult> offsets = {builder.getIndexAttr(0), builder.getIndexAttr(0),
                                         builder.getIndexAttr(r0), builder.getIndexAttr(c0)};
    SmallVector<OpFoldResult> sizes = {builder.getIndexAttr(channels), builder.getIndexAttr(1),
                                       builder.getIndexAttr(kh), builder.getIndexAttr(kw)};
    SmallVector<OpFoldResult> strides(4, builder.getIndexAttr(1));
    return tensor::ExtractSliceOp::create(builder, loc, sliced, value, offsets, sizes, strides);
  }

  /// Branches with no live tap in any channel add nothing to a sum.
  void dropEmptyBranches(int64_t channels, SmallVectorImpl<BranchState> &branches) {
    auto isEmpty = [&](const BranchState &b) {
      return !b.live.empty() &&
             std::none_of(b.live.begin(), b.live.end(), [](uint8_t v) { return v != 0; });
    };
    if (branches.size() > 1 && !std::all_of(branches.begin(), branches.end(), isEmpty))
      branches.erase(std::remove_if(branches.begin(), branches.end(), isEmpty), branches.end());
  }

  /// W * mask as a new constant when the weight is one.
  bool foldMaskIntoConstantWeight(OpBuilder &builder, Location loc, BranchState &b) {
    auto weight = readFloats(constantElements(b.weight));
    if (!weight)
      return false;
    for (size_t i = 0; i < weight->size(); ++i)
      (*weight)[i] *= b.live[i];
    b.weight = arith::ConstantOp::create(
        builder, loc, makeFloats(cast<RankedTensorType>(b.weight.getType()), *weight));
    return true;
  }

  /// The dense form multiplies every window position, so masked weights
  /// must be zero: select(mask, w, 0).
  void zeroMaskedWeights(OpBuilder &builder, Location loc, BranchState &b) {
    auto type = cast<RankedTensorType>(b.weight.getType());
    Value zero = arith::ConstantOp::create(
        builder, loc,
        DenseElementsAttr::get(type, builder.getFloatAttr(type.getElementType(), 0.0)));
    b.weight = arith::SelectOp::create(builder, loc, b.mask, b.weight, zero);
  }

  Value maskConstant(OpBuilder &builder, Location loc, int64_t channels, const BranchState &b) {
    auto type = RankedTensorType::get({channels, 1, b.kh, b.kw}, builder.getI1Type());
    SmallVector<bool> bits;
    if (b.live.empty())
      bits.assign(channels * b.kh * b.kw, true);
    else
      bits.assign(b.live.begin(), b.live.end());
    return arith::ConstantOp::create(builder, loc, DenseElementsAttr::get(type, bits));
  }
};

} // namespace

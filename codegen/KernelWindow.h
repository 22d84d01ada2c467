// KernelWindow: the geometry of one branch of a large-kernel layer, a
// KH x KW depthwise window and its padding (the offset of the window's
// centre), shared by the fold (codegen/Reparam.h), the runtime's taps
// (runtime/LayerTaps.h) and the models' layer options. codegen::Branch is
// the same window inside a KernelSpec, with how its taps are stored.
#pragma once

#include <cstdint>
#include <optional>
#include <utility>

namespace slak::codegen {

struct KernelWindow {
  int kernelH = 1, kernelW = 1;
  int padH = 0, padW = 0;

  /// A window with "same" padding (KH/2, KW/2).
  static KernelWindow same(int kh, int kw) { return {kh, kw, kh / 2, kw / 2}; }
  int64_t area() const { return static_cast<int64_t>(kernelH) * kernelW; }
  /// Where `inner` lies inside this window (row and column offset of its
  /// top-left tap), or nothing when it does not nest.
  std::optional<std::pair<int64_t, int64_t>> offsetOf(const KernelWindow &inner) const {
    const int64_t dh = padH - inner.padH, dw = padW - inner.padW;
    if (dh < 0 || dw < 0 || dh + inner.kernelH > kernelH || dw + inner.kernelW > kernelW)
      return std::nullopt;
    return std::make_pair(dh, dw);
  }
};

} // namespace slak::codegen

#include "codegen/DefaultSchedule.h"

#include <algorithm>
#include <stdexcept>

#include "codegen/KernelPlan.h"

namespace slak::codegen {
namespace {

int tileWidthFor(int64_t width) { return width >= 24 ? 32 : width >= 12 ? 16 : 8; }

/// The tiles are as small as they go and a kernel still does not fit: the
/// plan's advice to lower them cannot help, so say what does.
std::invalid_argument noScheduleFits(const std::string &err) {
  return std::invalid_argument(
      "defaultSchedule: no schedule fits this layer, not even with the smallest tiles (" + err +
      "); the kernels stage a tile plus the halo of the largest window in shared memory, so "
      "windows this large are not supported: use smaller kernels");
}

} // namespace

Schedule defaultSchedule(const KernelSpec &specIn, double sparseDensity) {
  KernelSpec spec = specIn;
  spec.schedule = Schedule{};
  if (std::string err = spec.validate(); !err.empty())
    throw std::invalid_argument("defaultSchedule: invalid spec: " + err);
  const int64_t h = spec.height > 0 ? spec.height : 56;
  const int64_t w = spec.width > 0 ? spec.width : 56;
  // The forward tiles the output, backward-data the input; they differ only
  // with non-"same" padding. Use the larger.
  const int64_t rows = std::max<int64_t>(h, spec.outHeight(h));
  const int64_t cols = std::max<int64_t>(w, spec.outWidth(w));
  int maxKernelH = 1;
  for (const Branch &b : spec.branches)
    maxKernelH = std::max(maxKernelH, b.kernelH);

  Schedule &s = spec.schedule;
  s.blockW = tileWidthFor(cols);
  // Two columns per thread where the image is wider than a block row: one
  // more input load per step feeds R more FMAs.
  const int colsPerThread = cols > s.blockW ? 2 : 1;
  s.tileW = s.blockW * colsPerThread;
  // Tall windows reuse each loaded input row across more output rows.
  int rowsPerThread = maxKernelH >= 15 ? 8 : 4;
  while (rowsPerThread > 2 && rowsPerThread >= 2 * rows)
    rowsPerThread /= 2;
  s.blockH = std::max(1, 128 / s.blockW);
  while (s.blockH > 1 && (s.blockH / 2) * rowsPerThread >= rows)
    s.blockH /= 2;
  // At least a warp per block where the image allows.
  while (s.blockH * s.blockW < 32 && rowsPerThread > 1) {
    rowsPerThread /= 2;
    s.blockH *= 2;
  }
  s.tileH = s.blockH * rowsPerThread;

  // The masked walk loads every window row but skips dead taps' FMAs: it
  // beats one load per FMA of the tap table once ~30% of the taps live.
  s.maskedWalk = sparseDensity >= 0.3;

  s.weightTileW = tileWidthFor(cols);
  s.weightTileH = rows >= 8 ? 8 : 4;
  s.weightThreads = 256;
  // Taps per thread in the blocked backward-weight: each step costs P FMAs
  // plus about two loads; a window of KH rows needs ceil(KH / P) blocks.
  int bestCost = -1;
  for (int p = 1; p <= 8; ++p) {
    int cost = 0;
    for (const Branch &b : spec.branches)
      cost += b.kernelW * ((b.kernelH + p - 1) / p) * (p + 2);
    if (bestCost < 0 || cost <= bestCost) {
      bestCost = cost;
      s.weightRowsPerThread = p;
    }
  }
  s.weightSplit =
      static_cast<int>(std::clamp<int64_t>((1024 + spec.channels - 1) / spec.channels, 1, 32));

  // Shrink the tiles until every kernel's shared memory fits: the conv
  // tiles while forward or backward-data overflows, then the weight tiles.
  for (KernelPlan plan = planKernels(spec); !plan.sharedMemoryError().empty();
       plan = planKernels(spec)) {
    if (!plan.convFits()) {
      if (s.tileH > s.blockH && s.tileH / s.blockH > 1) {
        s.tileH = s.blockH * (s.tileH / s.blockH / 2);
      } else if (s.blockH > 1) {
        s.blockH /= 2;
        s.tileH /= 2;
      } else if (s.tileW > s.blockW) {
        s.tileW = s.blockW;
      } else if (s.blockW > 8) {
        s.blockW /= 2;
        s.tileW /= 2;
      } else if (s.stageTaps) {
        s.stageTaps = false;
      } else {
        throw noScheduleFits(plan.sharedMemoryError());
      }
    } else if (s.weightTileH > 1) {
      s.weightTileH /= 2;
    } else if (s.weightTileW > 8) {
      s.weightTileW /= 2;
    } else {
      throw noScheduleFits(plan.sharedMemoryError());
    }
  }
  return s;
}

} // namespace slak::codegen

#include "codegen/halide/CpuSchedule.h"

#include <algorithm>
#include <sstream>

namespace slak::codegen::cpu {

std::string CpuSchedule::validate() const {
  auto positive = [](const char *name, int value, int limit) -> std::string {
    if (value <= 0 || value > limit)
      return std::string("cpu schedule ") + name + " is " + std::to_string(value) +
             ", expected 1.." + std::to_string(limit);
    return {};
  };
  if (vectorWidth != 4 && vectorWidth != 8 && vectorWidth != 16)
    return "cpu schedule vectorWidth is " + std::to_string(vectorWidth) + ", expected 4, 8 or 16";
  for (const std::string &err :
       {positive("tileRows", tileRows, 64), positive("tileVectors", tileVectors, 16),
        positive("weightTaps", weightTaps, 32), positive("weightVectors", weightVectors, 16),
        positive("tapBlock", tapBlock, 8)})
    if (!err.empty())
      return err;
  // Past the register file the tile spills to the stack: still correct, but
  // certainly not what anyone wants, so the tuner never has to try it.
  if (tileRows * tileVectors > 64)
    return "cpu schedule tile " + std::to_string(tileRows) + "x" + std::to_string(tileVectors) +
           " holds " + std::to_string(tileRows * tileVectors) +
           " vectors, at most 64 are allowed (32 registers on AVX-512)";
  return {};
}

std::string CpuSchedule::str() const {
  std::ostringstream os;
  os << "vec=" << vectorWidth << " tile=" << tileRows << "x" << tileVectors
     << " transposeWide=" << transposeWide << " mergeTaps=" << mergeTaps
     << " alignLoads=" << alignLoads << " wtaps=" << weightTaps << " wvec=" << weightVectors;
  if (tapBlock != 1)
    os << " tapBlock=" << tapBlock;
  return os.str();
}

namespace {

/// Rows per tile for a tile row of `vectors` vectors: as many as fit in about
/// 28 accumulator registers (capped at 8 so that row trimming stays fine),
/// preferring a count that divides the image height.
int pickTileRows(int vectors, int64_t height) {
  const int most = std::max(1, std::min(8, 28 / vectors));
  int best = most;
  int64_t bestRows = (height + most - 1) / most * most;
  for (int rows = most - 1; rows >= std::max(1, most - 3); --rows) {
    const int64_t padded = (height + rows - 1) / rows * rows;
    if (padded < bestRows) {
      best = rows;
      bestRows = padded;
    }
  }
  return best;
}

} // namespace

CpuSchedule defaultCpuSchedule(const KernelSpec &spec, int64_t height, int64_t width) {
  if (spec.height > 0)
    height = spec.height;
  if (spec.width > 0)
    width = spec.width;
  CpuSchedule s;
  s.vectorWidth = 8;
  const int64_t outW = std::max<int64_t>(1, spec.branches.empty() ? width : spec.outWidth(width));
  const int64_t outH =
      std::max<int64_t>(1, spec.branches.empty() ? height : spec.outHeight(height));
  // Transposed planes have the image height as their width; use the wider.
  const int64_t span = std::max(outW, outH);
  s.tileVectors =
      static_cast<int>(std::min<int64_t>(7, (span + s.vectorWidth - 1) / s.vectorWidth));
  s.tileRows = pickTileRows(s.tileVectors, std::min(outH, outW));
  s.weightVectors = s.tileVectors;
  s.weightTaps = 12;
  return s;
}

} // namespace slak::codegen::cpu

#include "codegen/halide/CpuSchedule.h"

#include <algorithm>

namespace slak::codegen::cpu {

namespace {

/// Accumulator vectors of one tile: past the register file the tile spills
/// to the stack (still correct, never what anyone wants, so the tuner never
/// has to try it).
constexpr int kMaxTileVectors = 64;

std::string crossCheck(const ScheduleTable<CpuSchedule> &table, const CpuSchedule &s,
                       FieldSpelling) {
  if (s.tileRows * s.tileVectors > kMaxTileVectors)
    return std::string(table.structName) + " tile " + std::to_string(s.tileRows) + "x" +
           std::to_string(s.tileVectors) + " holds " + std::to_string(s.tileRows * s.tileVectors) +
           " vectors, at most " + std::to_string(kMaxTileVectors) +
           " are allowed (32 registers on AVX-512)";
  return {};
}

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

/// Taps per channels-last backward-weight block: its blocks are runs of
/// consecutive columns of one tap row, so as many as the narrowest tap row
/// holds (rows of wide branches on transposed planes run along the kernel's
/// height), at most 8.
int weightRunTaps(const KernelSpec &spec, bool transposeWide) {
  int taps = 8;
  for (const Branch &b : spec.branches) {
    const int64_t row = transposeWide && b.kernelW > b.kernelH ? b.kernelH : b.kernelW;
    taps = static_cast<int>(std::min<int64_t>(taps, std::max<int64_t>(1, row)));
  }
  return taps;
}

/// Pixels per backward-weight strip: 8 or 7, whichever pads a row of
/// `width` pixels less (8 on a tie).
int weightStripPixels(int64_t width) {
  auto padded = [&](int64_t sv) { return (width + sv - 1) / sv * sv; };
  return padded(7) < padded(8) ? 7 : 8;
}

} // namespace

const ScheduleTable<CpuSchedule> &cpuScheduleFields() {
  using S = CpuSchedule;
  const FieldRange tileVectors{1, 16};
  static const ScheduleTable<CpuSchedule> table{
      "cpu schedule",
      "CPU schedule",
      "",
      {
          intField("vec", "vector_width", &S::vectorWidth, "vectorWidth", FieldRange{4, 16, true},
                   "float lanes per vector"),
          pairField("tile", "tile", &S::tileRows, "tileRows", &S::tileVectors, "tileVectors",
                    FieldRange{1, 64}, "register tile: rows x vectors", 0, &tileVectors),
          flagField("transposeWide", "transpose_wide", &S::transposeWide, "transposeWide",
                    "wide branches on transposed planes"),
          flagField("mergeTaps", "merge_taps", &S::mergeTaps, "mergeTaps",
                    "fold taps of branches at the same offset"),
          flagField("alignLoads", "align_loads", &S::alignLoads, "alignLoads",
                    "shifted plane copies for aligned loads"),
          intField("wtaps", "weight_taps", &S::weightTaps, "weightTaps", FieldRange{1, 32},
                   "backward-weight taps accumulated at once"),
          intField("wvec", "weight_vectors", &S::weightVectors, "weightVectors", FieldRange{1, 16},
                   "backward-weight dy strip in vectors"),
          intField("tapBlock", "tap_block", &S::tapBlock, "tapBlock", FieldRange{1, 8},
                   "taps of one column per input-row load", kTextOmitsDefault),
          flagField("channelsLast", "channels_last", &S::channelsLast, "channelsLast",
                    "vectorise across channels (pixel vectors of vec channels)", kTextOmitsDefault),
      },
      crossCheck,
  };
  return table;
}

std::string CpuSchedule::validate() const { return validateSchedule(cpuScheduleFields(), *this); }

std::string CpuSchedule::str() const { return scheduleText(cpuScheduleFields(), *this); }

int hostVectorFloats() {
#if defined(__x86_64__) || defined(__i386__)
  static const int floats = __builtin_cpu_supports("avx512f") ? 16 : 8;
  return floats;
#else
  return 4;
#endif
}

CpuSchedule defaultCpuSchedule(const KernelSpec &spec, int64_t height, int64_t width) {
  return defaultCpuSchedule(spec, height, width, hostVectorFloats());
}

CpuSchedule defaultCpuSchedule(const KernelSpec &spec, int64_t height, int64_t width,
                               int hostFloats) {
  if (spec.height > 0)
    height = spec.height;
  if (spec.width > 0)
    width = spec.width;
  CpuSchedule s;
  const int64_t inSpan = std::max<int64_t>(1, std::max(height, width));
  if (spec.channels >= 32 && inSpan < 64) {
    // Images up to 63 px with many channels: vectorise across channels.
    // Measured on SLaK-T's four stages (1 thread, AVX-512, forward): a tile
    // of 7 pixels; where it spans the whole row, one row and single taps,
    // all branches in one merged walk (no transposed plane: 1.4 ms vs 1.6 ms
    // at 7x7 with M=13); else 2 rows with tap blocks of 2 and wide branches
    // transposed. Against the width-vectorised NCHW pipelines: 5.5 vs 8.3 ms
    // at 14x14, 11.2 vs 18.2 ms at 28x28, 28.8 vs 32.4 ms at 56x56 (and
    // 1.12x over the three training passes there; RepLKNet's 31x31 and
    // ConvNeXt's 7x7 at 56x56: 1.13x, 1.15x). Larger tiles or blocks run
    // out of the 32 vector registers.
    const int64_t outW = std::max<int64_t>(1, spec.branches.empty() ? width : spec.outWidth(width));
    // Without AVX-512 (16 vector registers of 8 floats): 8 lanes and one
    // row of 7 accumulators, so the tile and its loads stay in registers.
    const bool wide = hostFloats >= 16;
    s.channelsLast = true;
    s.vectorWidth = wide ? 16 : 8;
    s.tileVectors = static_cast<int>(std::min<int64_t>(7, outW));
    const bool wholeRow = s.tileVectors >= outW;
    s.tileRows = wholeRow || !wide ? 1 : 2;
    s.tapBlock = wholeRow || !wide ? 1 : 2;
    s.transposeWide = !wholeRow;
    // Backward-weight, measured on SLaK-T's stages (2 threads, batch 8,
    // density 0.6): runs of 5 taps in strips of 8 / 7 / 7 / 7 pixels, 16.8 /
    // 6.1 / 2.5 / 1.4 ms, against 20.6 / 7.8 / 3.1 / 1.35 ms for blocks of 8
    // taps in (du, dv) order with 4-pixel strips.
    s.weightTaps = weightRunTaps(spec, s.transposeWide);
    s.weightVectors = weightStripPixels(outW);
    return s;
  }
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

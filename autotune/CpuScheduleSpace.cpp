#include "autotune/CpuScheduleSpace.h"

#include <algorithm>

namespace slak::autotune {
namespace {

bool anyWide(const KernelSpec &spec) {
  for (const codegen::Branch &b : spec.branches)
    if (b.kernelW > b.kernelH)
      return true;
  return false;
}

// Tile heights of the conv space: every height up to 8, then tall tiles of
// one or two vectors (e.g. 28x1 on a 56-wide image: seven exact 8-wide
// columns, each input vector reused by the tap rows of 28 outputs in L1).
constexpr int kTileRows[] = {1, 2, 3, 4, 5, 6, 7, 8, 10, 12, 14, 16, 20, 24, 28};

} // namespace

codegen::cpu::Pass cpuPassOf(KernelKind kind) {
  switch (kind) {
  case KernelKind::Forward:
    return codegen::cpu::Pass::Forward;
  case KernelKind::BackwardData:
    return codegen::cpu::Pass::BackwardData;
  default:
    return codegen::cpu::Pass::BackwardWeight;
  }
}

std::vector<CpuSchedule> cpuScheduleSpace(const KernelSpec &spec, const Workload &w,
                                          const CpuDevice &cpu, SchedulePart part,
                                          const CpuSchedule &base) {
  const int64_t oh = spec.outHeight(w.height), ow = spec.outWidth(w.width);
  // Transposed planes run along the image height.
  const int64_t span = std::max({oh, ow, w.height, w.width});
  std::vector<int> widths = {8};
  if (cpu.maxVectorBits >= 512)
    widths.push_back(16);
  if (span < 8)
    widths.insert(widths.begin(), 4);
  const std::vector<bool> transposes =
      anyWide(spec) ? std::vector<bool>{true, false} : std::vector<bool>{base.transposeWide};
  const std::vector<bool> aligns = {true, false};
  // Keep the accumulators and a few temporaries in vector registers.
  const int registers = cpu.vectorRegisters;
  // Vectorised across channels where a layer has a vector's worth of them
  // (alignLoads has no effect there: one value of it).
  std::vector<bool> layouts = {false};
  if (spec.channels >= 8)
    layouts.push_back(true);
  std::vector<CpuSchedule> out;
  for (bool cl : layouts)
    for (int v : widths)
      for (bool tw : transposes)
        for (bool align : aligns) {
          if (cl && (v < 8 || align != base.alignLoads))
            continue;
          CpuSchedule s = base;
          s.channelsLast = cl;
          s.vectorWidth = v;
          s.transposeWide = tw;
          s.alignLoads = align;
          if (part == SchedulePart::Conv) {
            const std::vector<bool> merges = spec.perBranchOutputs
                                                 ? std::vector<bool>{base.mergeTaps}
                                                 : std::vector<bool>{true, false};
            for (bool merge : merges)
              for (int block : {1, 2, 3, 4})
                for (int tv = 1; tv <= 8; ++tv)
                  for (int r : kTileRows) {
                    // A tap block keeps up to min(P, R) loaded rows per vector live.
                    const int live = block > 1 ? tv * std::min(block, r) : 0;
                    if (r * tv + live > registers - 4)
                      continue;
                    if (tv > 1 && tv * (cl ? 1 : v) > 2 * span)
                      continue;
                    if (block > 1 && r > 8)
                      continue;
                    s.mergeTaps = merge;
                    s.tapBlock = block;
                    s.tileRows = r;
                    s.tileVectors = tv;
                    if (s.validate().empty())
                      out.push_back(s);
                  }
          } else {
            // Channels-last blocks are runs of one tap row: also the row
            // widths of common kernels (5, 7).
            for (int k : {1, 2, 3, 4, 5, 6, 7, 8, 12, 16, 20, 24, 28})
              for (int sv = 1; sv <= 8; ++sv) {
                if (k + sv + 2 > registers)
                  continue;
                if (sv > 1 && sv * (cl ? 1 : v) > 2 * span)
                  continue;
                s.weightTaps = k;
                s.weightVectors = sv;
                if (s.validate().empty())
                  out.push_back(s);
              }
          }
        }
  return out;
}

} // namespace slak::autotune

#include "codegen/TapTable.h"

#include <algorithm>
#include <limits>
#include <stdexcept>
#include <string>

namespace slak::codegen {

TapTable buildTapTable(const KernelSpec &spec, const std::vector<BranchMask> &masks) {
  if (masks.size() != spec.branches.size())
    throw std::invalid_argument("buildTapTable: " + std::to_string(masks.size()) + " masks for " +
                                std::to_string(spec.branches.size()) +
                                " branches; pass one (possibly empty = dense) mask per branch");
  TapTable table;
  table.channels = spec.channels;
  table.numBranches = static_cast<int>(spec.branches.size());
  table.offsets.reserve(table.numBranches * spec.channels + 1);
  table.offsets.push_back(0);
  for (int b = 0; b < table.numBranches; ++b) {
    const Branch &branch = spec.branches[b];
    const BranchMask &mask = masks[b];
    const int64_t window = branch.windowSize();
    if (!mask.empty() && static_cast<int64_t>(mask.size()) != spec.channels * window)
      throw std::invalid_argument("buildTapTable: mask of branch " + std::to_string(b) + " has " +
                                  std::to_string(mask.size()) + " entries, expected " +
                                  std::to_string(spec.channels * window) + " (C*KH*KW)");
    for (int64_t c = 0; c < spec.channels; ++c) {
      for (int u = 0; u < branch.kernelH; ++u)
        for (int v = 0; v < branch.kernelW; ++v)
          if (mask.empty() || mask[c * window + u * branch.kernelW + v])
            table.taps.push_back(TapTable::pack(u, v));
      table.offsets.push_back(static_cast<int32_t>(table.taps.size()));
    }
  }
  return table;
}

BranchTapStats branchTapStats(const KernelSpec &spec, const TapTable &table, int branch) {
  BranchTapStats stats;
  const Branch &b = spec.branches.at(branch);
  stats.minPerChannel = std::numeric_limits<int64_t>::max();
  int64_t total = 0;
  stats.rowBegin = b.kernelH;
  stats.colBegin = b.kernelW;
  for (int64_t c = 0; c < spec.channels; ++c) {
    const int64_t n = table.count(branch, c);
    stats.minPerChannel = std::min(stats.minPerChannel, n);
    stats.maxPerChannel = std::max(stats.maxPerChannel, n);
    total += n;
    for (int64_t k = table.begin(branch, c); k < table.end(branch, c); ++k) {
      const int u = TapTable::unpackRow(table.taps[k]), v = TapTable::unpackCol(table.taps[k]);
      stats.rowBegin = std::min(stats.rowBegin, u);
      stats.rowEnd = std::max(stats.rowEnd, u + 1);
      stats.colBegin = std::min(stats.colBegin, v);
      stats.colEnd = std::max(stats.colEnd, v + 1);
    }
  }
  if (total == 0) {
    stats.minPerChannel = 0;
    stats.rowBegin = stats.colBegin = 0;
  }
  // A layer without channels has no taps: 0, not 0/0 (a NaN has no text
  // form in #slak.branch_taps).
  const int64_t window = spec.channels * b.windowSize();
  stats.meanPerChannel = spec.channels > 0 ? static_cast<double>(total) / spec.channels : 0.0;
  stats.density = window > 0 ? static_cast<double>(total) / window : 0.0;
  return stats;
}

} // namespace slak::codegen

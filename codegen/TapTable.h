// TapTable: the live window positions of every (branch, channel) of a layer,
// in a flat CSR form that kernels read directly (and that the runtime
// re-uploads when masks change, without recompiling).
//
//   offsets[b * C + c] .. offsets[b * C + c + 1]  index into `taps`
//   taps[k] = (u << 16) | v   for window row u, column v (u, v < 65536)
// Weights stay dense: the weight of a tap is W_b[c, u, v].
#pragma once

#include "codegen/KernelSpec.h"

#include <cstdint>
#include <vector>

namespace slak::codegen {

struct TapTable {
  int64_t channels = 0;
  int numBranches = 0;
  std::vector<int32_t> offsets; // numBranches * channels + 1 entries
  std::vector<int32_t> taps;

  static int32_t pack(int u, int v) { return (u << 16) | v; }
  static int unpackRow(int32_t tap) { return tap >> 16; }
  static int unpackCol(int32_t tap) { return tap & 0xffff; }
  int64_t begin(int branch, int64_t channel) const { return offsets[branch * channels + channel]; }
  int64_t end(int branch, int64_t channel) const {
    return offsets[branch * channels + channel + 1];
  }
  int64_t count(int branch, int64_t channel) const {
    return end(branch, channel) - begin(branch, channel);
  }
};

/// Per-branch mask: `channels * kernelH * kernelW` bytes, non-zero = live,
/// laid out like the weight [C, 1, KH, KW]. An empty mask means dense.
using BranchMask = std::vector<uint8_t>;

/// Builds the table for all branches of `spec` (row-major tap order within a
/// channel). masks.size() must equal the number of branches.
TapTable buildTapTable(const KernelSpec &spec, const std::vector<BranchMask> &masks);

/// Statistics of one branch's live taps (for `#slak.taps` and logs).
struct BranchTapStats {
  int64_t minPerChannel = 0;
  int64_t maxPerChannel = 0;
  double meanPerChannel = 0;
  double density = 0; // live / (C * KH * KW)
  // Smallest window [rowBegin, rowEnd) x [colBegin, colEnd) holding every
  // live tap of every channel (all-zero borders trimmed).
  int rowBegin = 0, rowEnd = 0, colBegin = 0, colEnd = 0;
};
BranchTapStats branchTapStats(const KernelSpec &spec, const TapTable &table, int branch);

} // namespace slak::codegen

// TapPlan: the live taps of a layer regrouped the way the CPU pipelines walk
// them (pure C++, no Halide). Branches that read the same input plane in the
// same orientation form a group; within a group every channel's taps are
// sorted by row offset, so the taps that can reach a band of output rows are
// one contiguous range (that is how out-of-image taps are skipped), and
// masked taps are simply absent (that is how sparsity turns into speed).
//
// Offsets are relative: a group computes out(i, j) += w * in(i + du, j + dv)
// in its own orientation. Transposed groups (wide branches, e.g. 5x51) swap
// rows and columns so that their long axis runs along rows too.
#pragma once

#include "codegen/KernelSpec.h"
#include "codegen/TapTable.h"
#include "codegen/halide/CpuSchedule.h"

#include <cstdint>
#include <utility>
#include <vector>

namespace slak::codegen::cpu {

enum class Pass { Forward, BackwardData, BackwardWeight };
const char *passName(Pass pass); // "forward", "backward-data", "backward-weight"

struct TapGroup {
  /// Input plane the group reads: forward and backward-weight read x (slot 0)
  /// and, for backward-weight, dy of slot `slot`; backward-data reads dy of
  /// slot `slot` (0 when dy is shared by all branches, else the branch).
  int slot = 0;
  bool transposed = false;
  std::vector<int> branches;
  /// Taps of channel c (of channel block c in a plan with channelBlock > 1)
  /// are [channelBegin[c], channelBegin[c + 1]), sorted by
  /// (du, dv). With tapBlock P > 1 (forward / backward-data) they come in
  /// blocks of P taps (du0 + p, dv), p = 0..P-1, of one column (taps
  /// without a source are dead: weight 0); blocks are sorted by (du0, dv)
  /// and every channel holds a multiple of P taps.
  int tapBlock = 1;
  std::vector<int32_t> channelBegin;
  std::vector<int32_t> du, dv;
  // Weight sources: planned tap sourceTap[s] gets W_b[sourceIndex[s]] added,
  // b = sourceBranch[s], index into the dense [C, 1, KH, KW] weight. Merged
  // taps have several sources; backward-weight scatters tap t back to its
  // single source.
  std::vector<int32_t> sourceTap, sourceIndex;
  std::vector<int16_t> sourceBranch;
  // The source's channel within its block: the vector lane that tap
  // sourceTap[s] weighs with it (0 with a tap list per channel).
  std::vector<int16_t> sourceLane;
  // Bounds of du / dv over all taps (all 0 when the group has no tap).
  int duMin = 0, duMax = 0, dvMin = 0, dvMax = 0;
  int64_t maxPerChannel = 0;

  int64_t numTaps() const { return static_cast<int64_t>(du.size()); }
};

struct TapPlan {
  Pass pass = Pass::Forward;
  /// One output per group (forward with per-branch outputs) instead of their sum.
  bool outputPerGroup = false;
  /// Number of distinct input planes read (dy tensors for backward passes).
  int numSlots = 1;
  /// Channels per tap list: 1, or the vector width of a channels-last
  /// schedule, whose pipelines walk one tap list per block of that many
  /// channels: the union of their live taps (a tap is live when any channel
  /// of the block needs it; the others weigh it 0). The last block may hold
  /// fewer channels.
  int channelBlock = 1;
  int64_t numBlocks(int64_t channels) const { return (channels + channelBlock - 1) / channelBlock; }
  std::vector<TapGroup> groups;
};

/// Groups the live taps of `spec` for one pass over inputs of inH x inW.
/// `table` lists the live taps of sparse branches (Branch::dense = false); it
/// may be null when every branch is dense. Taps that can never touch the
/// image at this size are dropped (their contribution, and their weight
/// gradient, is exactly zero). Throws std::invalid_argument on a bad spec or table.
TapPlan planTaps(const KernelSpec &spec, const CpuSchedule &schedule, Pass pass,
                 const TapTable *table, int64_t inH, int64_t inW);

/// The groups each conv pipeline call computes (forward, backward-data): one
/// call per group when the plan has an output per group, else one for all.
std::vector<std::vector<int>> pipelineRuns(const TapPlan &plan);

/// Tap blocks [first, second) of one channel that reach band `band` of a
/// conv group's tile rows (tileRows R, blocks of P taps): `du0` holds the
/// first row offset of each block, sorted; the read plane has planeH rows.
std::pair<int64_t, int64_t> blocksReachingBand(const std::vector<int32_t> &du0, int64_t band, int R,
                                               int P, int64_t planeH);

/// A channels-last backward-weight block: up to K consecutive columns of one
/// tap row, starting at (du, dv); columns without a live tap are computed
/// and dropped.
struct TapRun {
  int du = 0, dv = 0;
  /// Its live taps: [firstTap, endTap) of the group's tap lists.
  int64_t firstTap = 0, endTap = 0;
  /// The dy rows [rowBegin, rowEnd) whose input row i + du lies in the
  /// xH-row image.
  int64_t rowBegin = 0, rowEnd = 0;
};

/// The runs of channel block `block` of `g` (taps sorted by (du, dv)), for
/// dy images of dyH rows over xH-row inputs.
std::vector<TapRun> weightTapRuns(const TapGroup &g, int64_t block, int K, int64_t dyH, int64_t xH);

/// The dy rows [first, second) that backward-weight block b (taps
/// [b * K, b * K + K) of channel c of `g`) reaches: rows i whose input row
/// i + du lies in the xH-row image for some tap of the block.
std::pair<int64_t, int64_t> weightBlockRows(const TapGroup &g, int64_t c, int64_t b, int K,
                                            int64_t dyH, int64_t xH);

} // namespace slak::codegen::cpu

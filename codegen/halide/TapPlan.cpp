#include "codegen/halide/TapPlan.h"

#include "codegen/EnumNames.h"

#include <algorithm>
#include <limits>
#include <stdexcept>
#include <string>

namespace slak::codegen::cpu {

namespace {
constexpr Named<Pass> kPassNames[] = {{"forward", Pass::Forward},
                                      {"backward-data", Pass::BackwardData},
                                      {"backward-weight", Pass::BackwardWeight}};
} // namespace

const char *passName(Pass pass) { return nameOf(kPassNames, pass); }

namespace {

[[noreturn]] void fail(const std::string &what) {
  throw std::invalid_argument("planTaps: " + what);
}

void checkTable(const KernelSpec &spec, const TapTable &table) {
  const int64_t numBranches = static_cast<int64_t>(spec.branches.size());
  if (table.numBranches != numBranches || table.channels != spec.channels)
    fail("tap table is for " + std::to_string(table.numBranches) + " branches x " +
         std::to_string(table.channels) + " channels, expected " + std::to_string(numBranches) +
         " x " + std::to_string(spec.channels) + "; rebuild it with buildTapTable(spec, masks)");
  if (static_cast<int64_t>(table.offsets.size()) != numBranches * spec.channels + 1)
    fail("tap table has " + std::to_string(table.offsets.size()) + " offsets, expected " +
         std::to_string(numBranches * spec.channels + 1));
  if (table.offsets.front() != 0 || table.offsets.back() != static_cast<int32_t>(table.taps.size()))
    fail("tap table offsets do not span its " + std::to_string(table.taps.size()) + " taps");
  for (size_t i = 1; i < table.offsets.size(); ++i)
    if (table.offsets[i] < table.offsets[i - 1])
      fail("tap table offsets decrease at entry " + std::to_string(i));
  for (int b = 0; b < numBranches; ++b) {
    const Branch &br = spec.branches[b];
    for (int64_t k = table.begin(b, 0); k < table.end(b, spec.channels - 1); ++k) {
      const int u = TapTable::unpackRow(table.taps[k]), v = TapTable::unpackCol(table.taps[k]);
      if (u >= br.kernelH || v >= br.kernelW)
        fail("tap (" + std::to_string(u) + ", " + std::to_string(v) + ") of branch " +
             std::to_string(b) + " lies outside its " + std::to_string(br.kernelH) + "x" +
             std::to_string(br.kernelW) + " window");
    }
  }
}

struct GroupRecipe {
  int slot = 0;
  bool transposed = false;
  std::vector<int> branches;
};

bool isWide(const Branch &b) { return b.kernelW > b.kernelH; }

/// Which branches go together, in the order the pipelines need: transposed
/// groups first (the summed pipeline chains them, then the untransposed ones).
std::vector<GroupRecipe> recipes(const KernelSpec &spec, const CpuSchedule &schedule, Pass pass,
                                 bool &outputPerGroup) {
  const int numBranches = static_cast<int>(spec.branches.size());
  const bool perBranchInput = spec.perBranchOutputs && pass != Pass::Forward;
  outputPerGroup = spec.perBranchOutputs && pass == Pass::Forward;
  std::vector<GroupRecipe> out;
  if (outputPerGroup || perBranchInput) {
    for (int b = 0; b < numBranches; ++b) {
      GroupRecipe r;
      r.slot = perBranchInput ? b : 0;
      r.transposed = schedule.transposeWide && isWide(spec.branches[b]);
      r.branches = {b};
      out.push_back(r);
    }
    if (!outputPerGroup) // the summed chain wants transposed groups first
      std::stable_partition(out.begin(), out.end(),
                            [](const GroupRecipe &r) { return r.transposed; });
    return out;
  }
  GroupRecipe wide, other;
  wide.transposed = true;
  for (int b = 0; b < numBranches; ++b) {
    if (schedule.transposeWide && isWide(spec.branches[b]))
      wide.branches.push_back(b);
    else
      other.branches.push_back(b);
  }
  if (!wide.branches.empty())
    out.push_back(wide);
  if (!other.branches.empty())
    out.push_back(other);
  return out;
}

struct Candidate {
  int32_t du, dv;
  int32_t sourceIndex;
  int16_t sourceBranch;
  int16_t sourceLane;
};

} // namespace

TapPlan planTaps(const KernelSpec &spec, const CpuSchedule &schedule, Pass pass,
                 const TapTable *table, int64_t inH, int64_t inW) {
  if (std::string err = spec.validate(); !err.empty())
    fail("invalid spec: " + err);
  if (std::string err = schedule.validate(); !err.empty())
    fail(err);
  if (inH <= 0 || inW <= 0)
    fail("input size " + std::to_string(inH) + "x" + std::to_string(inW) + " is empty");
  const int64_t outH = spec.outHeight(inH), outW = spec.outWidth(inW);
  if (outH <= 0 || outW <= 0)
    fail("input " + std::to_string(inH) + "x" + std::to_string(inW) +
         " gives an empty output; it must be at least kernel - 2 * padding");
  const bool needTable = std::any_of(spec.branches.begin(), spec.branches.end(),
                                     [](const Branch &b) { return !b.dense; }) &&
                         !(pass == Pass::BackwardWeight && spec.denseWeightGrad);
  if (needTable && table == nullptr)
    fail("the spec has sparse branches but no tap table was given");
  if (table != nullptr && needTable)
    checkTable(spec, *table);

  // Sizes of the plane a group reads and of the plane it writes (or, for
  // backward-weight, of the dy positions it sums over), untransposed.
  const bool flipped = pass == Pass::BackwardData;
  const int64_t readH = flipped ? outH : inH, readW = flipped ? outW : inW;
  const int64_t writeH = flipped ? inH : outH, writeW = flipped ? inW : outW;

  TapPlan plan;
  plan.pass = pass;
  std::vector<GroupRecipe> groupRecipes = recipes(spec, schedule, pass, plan.outputPerGroup);
  plan.numSlots =
      (spec.perBranchOutputs && pass != Pass::Forward) ? static_cast<int>(spec.branches.size()) : 1;
  const bool merge = schedule.mergeTaps && pass != Pass::BackwardWeight && !plan.outputPerGroup;

  // Vertical tap blocks for the conv passes (backward-weight walks single taps).
  const bool blocked = schedule.tapBlock > 1 && pass != Pass::BackwardWeight;
  const int P = blocked ? schedule.tapBlock : 1;

  // One tap list per channel, or per block of channels (channels-last).
  plan.channelBlock = schedule.channelsLast ? schedule.vectorWidth : 1;
  const int L = plan.channelBlock;
  const int64_t units = plan.numBlocks(spec.channels);

  std::vector<Candidate> candidates;
  for (const GroupRecipe &recipe : groupRecipes) {
    TapGroup g;
    g.tapBlock = P;
    g.slot = recipe.slot;
    g.transposed = recipe.transposed;
    g.branches = recipe.branches;
    g.channelBegin.reserve(units + 1);
    g.channelBegin.push_back(0);
    // Offsets that reach the read plane from some written position.
    const int64_t rowsIn = recipe.transposed ? readW : readH;
    const int64_t colsIn = recipe.transposed ? readH : readW;
    const int64_t rowsOut = recipe.transposed ? writeW : writeH;
    const int64_t colsOut = recipe.transposed ? writeH : writeW;
    int duMin = std::numeric_limits<int>::max(), duMax = std::numeric_limits<int>::min();
    int dvMin = duMin, dvMax = duMax;
    for (int64_t unit = 0; unit < units; ++unit) {
      candidates.clear();
      for (int64_t c = unit * L; c < std::min<int64_t>(spec.channels, unit * L + L); ++c)
        for (int b : recipe.branches) {
          const Branch &br = spec.branches[b];
          auto add = [&](int u, int v) {
            int du = u - br.padH, dv = v - br.padW;
            if (flipped) {
              du = -du;
              dv = -dv;
            }
            if (recipe.transposed)
              std::swap(du, dv);
            if (du < -(rowsOut - 1) || du > rowsIn - 1 || dv < -(colsOut - 1) || dv > colsIn - 1)
              return; // never inside the image at this size
            candidates.push_back({du, dv,
                                  static_cast<int32_t>((c * br.kernelH + u) * br.kernelW + v),
                                  static_cast<int16_t>(b), static_cast<int16_t>(c - unit * L)});
          };
          const bool allTaps = br.dense || (pass == Pass::BackwardWeight && spec.denseWeightGrad);
          if (allTaps) {
            for (int u = 0; u < br.kernelH; ++u)
              for (int v = 0; v < br.kernelW; ++v)
                add(u, v);
          } else {
            for (int64_t k = table->begin(b, c); k < table->end(b, c); ++k)
              add(TapTable::unpackRow(table->taps[k]), TapTable::unpackCol(table->taps[k]));
          }
        }
      auto before = [](const Candidate &a, const Candidate &b) {
        if (a.du != b.du)
          return a.du < b.du;
        return a.dv != b.dv ? a.dv < b.dv : a.sourceBranch < b.sourceBranch;
      };
      if (!std::is_sorted(candidates.begin(), candidates.end(), before))
        std::stable_sort(candidates.begin(), candidates.end(), before);
      // This channel's planned taps (merged where asked) and their sources.
      // The channels of a block share one tap per (offset, branch) or, when
      // merging, per offset.
      std::vector<int32_t> tdu, tdv, sTap, sIndex;
      std::vector<int16_t> sBranch, sLane, tBranch;
      for (const Candidate &cand : candidates) {
        const bool same = !tdu.empty() && tdu.back() == cand.du && tdv.back() == cand.dv &&
                          (merge || tBranch.back() == cand.sourceBranch);
        if (!same) {
          tdu.push_back(cand.du);
          tdv.push_back(cand.dv);
          tBranch.push_back(cand.sourceBranch);
        }
        sTap.push_back(static_cast<int32_t>(tdu.size() - 1));
        sIndex.push_back(cand.sourceIndex);
        sBranch.push_back(cand.sourceBranch);
        sLane.push_back(cand.sourceLane);
      }
      if (blocked && !tdu.empty()) {
        // Greedy vertical blocks per column: a block starts at the first
        // live row not yet covered and spans P rows; blocks sorted by (du0, dv).
        std::vector<int32_t> order(tdu.size());
        for (size_t t = 0; t < order.size(); ++t)
          order[t] = static_cast<int32_t>(t);
        std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) {
          return tdv[a] != tdv[b] ? tdv[a] < tdv[b] : tdu[a] < tdu[b];
        });
        struct Block {
          int32_t du0, dv;
          std::vector<int32_t> member; // P entries: old tap index or -1
        };
        std::vector<Block> blocks;
        for (int32_t t : order) {
          // Unmerged taps of two branches at one offset go to separate blocks.
          if (blocks.empty() || blocks.back().dv != tdv[t] || tdu[t] >= blocks.back().du0 + P ||
              blocks.back().member[tdu[t] - blocks.back().du0] >= 0)
            blocks.push_back({tdu[t], tdv[t], std::vector<int32_t>(P, -1)});
          blocks.back().member[tdu[t] - blocks.back().du0] = t;
        }
        std::stable_sort(blocks.begin(), blocks.end(), [](const Block &a, const Block &b) {
          return a.du0 != b.du0 ? a.du0 < b.du0 : a.dv < b.dv;
        });
        std::vector<int32_t> newIndex(tdu.size());
        std::vector<int32_t> bdu, bdv;
        for (const Block &b : blocks)
          for (int p = 0; p < P; ++p) {
            if (b.member[p] >= 0)
              newIndex[b.member[p]] = static_cast<int32_t>(bdu.size());
            bdu.push_back(b.du0 + p);
            bdv.push_back(b.dv);
          }
        for (int32_t &t : sTap)
          t = newIndex[t];
        tdu = std::move(bdu);
        tdv = std::move(bdv);
      }
      const int64_t first = g.numTaps();
      for (size_t t = 0; t < tdu.size(); ++t) {
        g.du.push_back(tdu[t]);
        g.dv.push_back(tdv[t]);
        duMin = std::min(duMin, tdu[t]);
        duMax = std::max(duMax, tdu[t]);
        dvMin = std::min(dvMin, tdv[t]);
        dvMax = std::max(dvMax, tdv[t]);
      }
      for (size_t k = 0; k < sTap.size(); ++k) {
        g.sourceTap.push_back(static_cast<int32_t>(first + sTap[k]));
        g.sourceIndex.push_back(sIndex[k]);
        g.sourceBranch.push_back(sBranch[k]);
        g.sourceLane.push_back(sLane[k]);
      }
      g.maxPerChannel = std::max(g.maxPerChannel, g.numTaps() - first);
      g.channelBegin.push_back(static_cast<int32_t>(g.numTaps()));
    }
    if (g.du.empty()) {
      duMin = duMax = dvMin = dvMax = 0;
    }
    g.duMin = duMin;
    g.duMax = duMax;
    g.dvMin = dvMin;
    g.dvMax = dvMax;
    plan.groups.push_back(std::move(g));
  }
  return plan;
}

std::vector<std::vector<int>> pipelineRuns(const TapPlan &plan) {
  std::vector<std::vector<int>> runs;
  if (plan.outputPerGroup) {
    for (size_t g = 0; g < plan.groups.size(); ++g)
      runs.push_back({static_cast<int>(g)});
    return runs;
  }
  runs.emplace_back();
  for (size_t g = 0; g < plan.groups.size(); ++g)
    runs.back().push_back(static_cast<int>(g));
  return runs;
}

std::pair<int64_t, int64_t> blocksReachingBand(const std::vector<int32_t> &du0, int64_t band, int R,
                                               int P, int64_t planeH) {
  const int64_t lo = -(band * R + R - 1) - (P - 1), hi = planeH - 1 - band * R;
  const auto first = std::lower_bound(du0.begin(), du0.end(), lo);
  const auto last = std::upper_bound(first, du0.end(), hi);
  return {first - du0.begin(), last - du0.begin()};
}

std::vector<TapRun> weightTapRuns(const TapGroup &g, int64_t block, int K, int64_t dyH,
                                  int64_t xH) {
  std::vector<TapRun> runs;
  for (int64_t t = g.channelBegin[block]; t < g.channelBegin[block + 1]; ++t) {
    if (runs.empty() || runs.back().du != g.du[t] || g.dv[t] - runs.back().dv >= K) {
      TapRun r;
      r.du = g.du[t];
      r.dv = g.dv[t];
      r.firstTap = t;
      r.rowBegin = std::max<int64_t>(0, -r.du);
      r.rowEnd = std::max(r.rowBegin, std::min<int64_t>(dyH, xH - r.du));
      runs.push_back(r);
    }
    runs.back().endTap = t + 1;
  }
  return runs;
}

std::pair<int64_t, int64_t> weightBlockRows(const TapGroup &g, int64_t c, int64_t b, int K,
                                            int64_t dyH, int64_t xH) {
  const int64_t first = g.channelBegin[c], count = g.channelBegin[c + 1] - first;
  int duLo = std::numeric_limits<int>::max(), duHi = std::numeric_limits<int>::min();
  for (int64_t k = 0; k < K && b * K + k < count; ++k) {
    duLo = std::min(duLo, g.du[first + b * K + k]);
    duHi = std::max(duHi, g.du[first + b * K + k]);
  }
  const int64_t lo = std::max<int64_t>(0, -duHi);
  const int64_t hi = std::min<int64_t>(dyH, xH - duLo);
  return {lo, std::max(lo, hi)};
}

} // namespace slak::codegen::cpu

#include "codegen/halide/TapPlan.h"

#include <algorithm>
#include <limits>
#include <stdexcept>
#include <string>

namespace slak::codegen::cpu {

const char *passName(Pass pass) {
  switch (pass) {
  case Pass::Forward:
    return "forward";
  case Pass::BackwardData:
    return "backward-data";
  case Pass::BackwardWeight:
    return "backward-weight";
  }
  return "?";
}

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

  std::vector<Candidate> candidates;
  for (const GroupRecipe &recipe : groupRecipes) {
    TapGroup g;
    g.slot = recipe.slot;
    g.transposed = recipe.transposed;
    g.branches = recipe.branches;
    g.channelBegin.reserve(spec.channels + 1);
    g.channelBegin.push_back(0);
    // Offsets that reach the read plane from some written position.
    const int64_t rowsIn = recipe.transposed ? readW : readH;
    const int64_t colsIn = recipe.transposed ? readH : readW;
    const int64_t rowsOut = recipe.transposed ? writeW : writeH;
    const int64_t colsOut = recipe.transposed ? writeH : writeW;
    int duMin = std::numeric_limits<int>::max(), duMax = std::numeric_limits<int>::min();
    int dvMin = duMin, dvMax = duMax;
    for (int64_t c = 0; c < spec.channels; ++c) {
      candidates.clear();
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
          candidates.push_back({du, dv, static_cast<int32_t>((c * br.kernelH + u) * br.kernelW + v),
                                static_cast<int16_t>(b)});
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
        return a.du != b.du ? a.du < b.du : a.dv < b.dv;
      };
      if (!std::is_sorted(candidates.begin(), candidates.end(), before))
        std::stable_sort(candidates.begin(), candidates.end(), before);
      const int64_t first = g.numTaps();
      for (const Candidate &cand : candidates) {
        const bool same =
            merge && g.numTaps() > first && g.du.back() == cand.du && g.dv.back() == cand.dv;
        if (!same) {
          g.du.push_back(cand.du);
          g.dv.push_back(cand.dv);
          duMin = std::min(duMin, cand.du);
          duMax = std::max(duMax, cand.du);
          dvMin = std::min(dvMin, cand.dv);
          dvMax = std::max(dvMax, cand.dv);
        }
        g.sourceTap.push_back(static_cast<int32_t>(g.numTaps() - 1));
        g.sourceIndex.push_back(cand.sourceIndex);
        g.sourceBranch.push_back(cand.sourceBranch);
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

} // namespace slak::codegen::cpu

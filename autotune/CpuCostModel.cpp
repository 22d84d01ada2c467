#include "autotune/CpuCostModel.h"

#include <algorithm>
#include <map>
#include <sstream>
#include <stdexcept>
#include <tuple>
#include <vector>

#include "autotune/CpuScheduleSpace.h"
#include "codegen/halide/TapPlan.h"

namespace slak::autotune {
namespace {

using codegen::cpu::Pass;
using codegen::cpu::TapGroup;
using codegen::cpu::TapPlan;

int64_t ceilDiv(int64_t a, int64_t b) { return (a + b - 1) / b; }
int64_t roundUp(int64_t a, int64_t b) { return ceilDiv(a, b) * b; }

/// Extra load slots per vector loaded at a random float offset: each
/// datapath-wide piece that straddles a 64-byte line costs one more.
double lineSplitFraction(int lanes, const CpuDevice &d) {
  const int piece = std::min(lanes, d.datapathBits / 32);
  return (piece - 1.0) / 16.0;
}

// Cycles of loop control around each tap and each tile / strip.
constexpr double kTapOverheadInstructions = 6;
constexpr double kFmaLatency = 4;

/// The slowest of a loop body's limits (FMA throughput, loads, issue,
/// latency): its cycles, with `bound` set to the limit's name.
struct Limit {
  double cycles;
  const char *name;
};
double slowest(std::initializer_list<Limit> limits, const char *&bound) {
  const Limit *worst = limits.begin();
  for (const Limit &l : limits)
    if (l.cycles > worst->cycles)
      worst = &l;
  bound = worst->name;
  return worst->cycles;
}

} // namespace

std::string CpuPrediction::str() const {
  std::ostringstream os;
  os.precision(3);
  os << ms << " ms (" << bound << "-bound, " << tapTileCycles << " cycles per tap x tile, "
     << work / 1e6 << "M vector FMAs, copies "
     << copyCycles / std::max(1.0, innerCycles + copyCycles) * 100 << "%)";
  return os.str();
}

struct CpuCostModel::Plans {
  std::map<std::tuple<int, bool, bool, int>, TapPlan> plans;
};

CpuCostModel::CpuCostModel(const KernelSpec &spec, const Workload &workload, const CpuDevice &cpu)
    : spec_(spec), workload_(workload), cpu_(cpu), plans_(std::make_unique<Plans>()) {
  if (std::string err = checkWorkload(spec, workload); !err.empty())
    throw std::invalid_argument("CpuCostModel: " + err);
  table_ = randomTapTable(spec, workload.density, workload.seed);
}

CpuCostModel::~CpuCostModel() = default;

CpuPrediction CpuCostModel::predict(const CpuSchedule &s, KernelKind kind) {
  const Pass pass = cpuPassOf(kind);
  const auto key = std::make_tuple(static_cast<int>(pass), s.transposeWide, s.mergeTaps,
                                   pass == Pass::BackwardWeight ? 1 : s.tapBlock);
  auto it = plans_->plans.find(key);
  if (it == plans_->plans.end())
    it = plans_->plans
             .emplace(key,
                      codegen::cpu::planTaps(spec_, s, pass, spec_.anySparse() ? &table_ : nullptr,
                                             workload_.height, workload_.width))
             .first;
  const TapPlan &plan = it->second;
  const CpuDevice &d = cpu_;
  const int V = s.vectorWidth;
  // Aligned loads (shifted plane copies) never straddle a line.
  // Channels-last pipelines load whole pixel vectors (aligned, no shifted
  // copies); one task per block of V channels, and a tile column or strip
  // element is one pixel (V channels) instead of V pixels.
  const bool cl = s.channelsLast;
  const int pixelsPerVector = cl ? 1 : V;
  const double split = s.alignLoads || cl ? 0.0 : lineSplitFraction(V, cpu_);
  const int A = std::max(8, V);
  // Shifted copies a plane needs: one per distinct alignment of its taps.
  auto copiesFor = [&](const std::vector<const TapGroup *> &groups) {
    if (!s.alignLoads || cl)
      return 0;
    int dvMin = 0;
    for (const TapGroup *g : groups)
      dvMin = std::min(dvMin, g->dvMin);
    std::vector<bool> used(A, false);
    for (const TapGroup *g : groups)
      for (int32_t dv : g->dv)
        used[((dv - dvMin) % A + A) % A] = true;
    return static_cast<int>(std::count(used.begin(), used.end(), true));
  };
  const int64_t N = workload_.batch;
  const int64_t C = plan.numBlocks(spec_.channels); // tap lists: channels or channel blocks
  const int64_t H = workload_.height, W = workload_.width;
  const int64_t OH = spec_.outHeight(H), OW = spec_.outWidth(W);
  CpuPrediction p;
  double cycles = 0; // summed over all tasks
  int64_t tasks = 0;

  if (pass != Pass::BackwardWeight) {
    const int R = s.tileRows, TV = s.tileVectors, CW = TV * pixelsPerVector;
    const int P = plan.groups.empty() ? 1 : plan.groups.front().tapBlock;
    const int vec = R * TV;
    // A block of P taps keeps the R + P - 1 input rows it loads (per tile
    // vector) live while they feed its taps.
    const int spilled =
        std::max(0, vec + 3 + (P > 1 ? TV * std::min(P, R) : 0) - d.vectorRegisters);
    // Cycles per tap block (P taps) and register tile, with `loadRate`
    // lanes loaded per clock.
    auto tapCycles = [&](double loadRate, const char *&bound) {
      const double fma = P * vec * V / d.fmaLanesPerCycle;
      const double loaded = (R + P - 1) * TV;
      const double loads = (loaded * V * (1 + split) + P * V + 2.0 * spilled * V) / loadRate;
      const double issue =
          (P * vec + (P > 1 ? loaded : 0) + kTapOverheadInstructions + 2.0 * spilled) /
          d.issuePerCycle;
      return slowest({{fma, "fma"}, {loads, "load"}, {issue, "issue"}, {kFmaLatency, "latency"}},
                     bound);
    };
    p.tapTileCycles = tapCycles(d.loadLanesPerCycle, p.bound);
    const bool bwd = pass == Pass::BackwardData;
    const int64_t readH = bwd ? OH : H, readW = bwd ? OW : W;
    const int64_t writeH = bwd ? H : OH, writeW = bwd ? W : OW;
    double inner = 0, copies = 0, work = 0;
    for (const std::vector<int> &run : codegen::cpu::pipelineRuns(plan)) {
      bool hasN = false, hasT = false;
      for (int g : run)
        (plan.groups[g].transposed ? hasT : hasN) = true;
      for (size_t m = 0; m < run.size(); ++m) {
        const TapGroup &g = plan.groups[run[m]];
        std::vector<const TapGroup *> samePlane;
        for (int o : run)
          if (plan.groups[o].transposed == g.transposed)
            samePlane.push_back(&plan.groups[o]);
        // ConvPipeline::computedRows / computedCols.
        int64_t rows, cols;
        if (!g.transposed) {
          rows = roundUp(writeH, R);
          cols = roundUp(writeW, CW);
        } else {
          rows = roundUp(roundUp(hasN ? roundUp(writeW, CW) : writeW, 8), R);
          cols = roundUp(roundUp(hasN ? roundUp(writeH, R) : writeH, 8), CW);
        }
        const int64_t bands = rows / R, tileCols = cols / CW;
        const int64_t planeH = g.transposed ? readW : readH;
        // Tap blocks that reach each band (blocks sorted by first row).
        double tapBands = 0;
        std::vector<int32_t> du0;
        for (int64_t c = 0; c < C; ++c) {
          du0.clear();
          for (int64_t t = g.channelBegin[c]; t < g.channelBegin[c + 1]; t += P)
            du0.push_back(g.du[t]);
          for (int64_t t = 0; t < bands; ++t) {
            const auto [first, last] = codegen::cpu::blocksReachingBand(du0, t, R, P, planeH);
            tapBands += static_cast<double>(last - first);
          }
        }
        // A band's taps read rows [band - duMax, band + R - duMin) of the
        // padded plane (of every shifted copy): beyond L1, loads come from L2.
        const int64_t stride = roundUp(cols + (g.dvMax - g.dvMin), A);
        const double bandBytes =
            4.0 * (R + g.duMax - g.duMin) * stride * std::max(1, copiesFor(samePlane));
        const double hit = std::min(1.0, static_cast<double>(d.l1Bytes) / bandBytes);
        const double loadRate =
            1.0 / (hit / d.loadLanesPerCycle + (1.0 - hit) / d.l2LoadLanesPerCycle);
        const char *bound = "";
        const double tap = tapCycles(loadRate, bound);
        if (m == 0) {
          p.tapTileCycles = tap;
          p.bound = bound;
        }
        inner += tapBands * tileCols * tap * N;
        work += tapBands * tileCols * vec * P * N;
        // Per tile: initialise (from the previous group's plane unless it is
        // the first) and store the accumulators.
        const bool chained = m > 0;
        const double tile = vec * (chained ? 2.0 : 1.0) * V / d.loadLanesPerCycle + vec + 8;
        inner += static_cast<double>(bands) * tileCols * tile * C * N;
      }
      // Padded flat planes (zero fill + copy), their shifted copies,
      // transposed inputs and the transposed sum turned back, per (n, c).
      for (bool transposed : {false, true}) {
        std::vector<const TapGroup *> readers;
        for (int g : run)
          if (plan.groups[g].transposed == transposed)
            readers.push_back(&plan.groups[g]);
        if (readers.empty())
          continue;
        const int64_t h = transposed ? readW : readH, w = transposed ? readH : readW;
        const int64_t plane = (h + 2 * R) * roundUp(w + 64, A);
        copies += (plane * 1.0 + h * w * (transposed && !cl ? 4.0 : 2.0)) / pixelsPerVector;
        copies += copiesFor(readers) * plane / V * 1.5;
      }
      if (hasT && hasN)
        copies += cl ? 0.0 : writeH * writeW / V * 4.0;
    }
    copies *= static_cast<double>(N * C);
    cycles = inner + copies;
    p.innerCycles = inner;
    p.copyCycles = copies;
    p.work = work;
    tasks = N * C;
  } else {
    const int K = s.weightTaps, SV = s.weightVectors, SW = SV * pixelsPerVector;
    const int spilled = std::max(0, K + SV + 2 - d.vectorRegisters);
    // Splits cost at the full vector width here (measured on Zen 4:
    // 512-bit strips lose ~1.3x).
    const double split = s.alignLoads || cl ? 0.0 : (V - 1.0) / 16.0;
    // Channels-last blocks are runs of K columns of one tap row: the K x SV
    // multiply-adds share SV + K - 1 x loads (codegen/halide/TapPlan.h
    // weightTapRuns); the width-vectorised blocks load x once per tap.
    const double xLoads = cl ? SV + K - 1.0 : K * SV * (1 + split);
    auto stripCycles = [&](double loadRate, const char *&bound) {
      const double fma = K * SV * V / d.fmaLanesPerCycle;
      const double loads = (SV + xLoads + 2.0 * spilled) * V / loadRate;
      const double issue =
          (K * SV + SV + (cl ? xLoads : 0.0) + 5 + 2.0 * spilled) / d.issuePerCycle;
      const double chain = SV * kFmaLatency; // each accumulator takes SV FMAs in a row
      return slowest({{fma, "fma"}, {loads, "load"}, {issue, "issue"}, {chain, "latency"}}, bound);
    };
    p.tapTileCycles = stripCycles(d.loadLanesPerCycle, p.bound);
    double inner = 0, copies = 0, work = 0;
    for (const TapGroup &g : plan.groups) {
      const int64_t xH = g.transposed ? W : H, xW = g.transposed ? H : W;
      const int64_t dyH = g.transposed ? OW : OH, dyW = g.transposed ? OH : OW;
      const int64_t strips = ceilDiv(dyW, SW);
      double rowStrips = 0, blocks = 0;
      for (int64_t c = 0; c < C; ++c) {
        if (cl) {
          for (const codegen::cpu::TapRun &r : codegen::cpu::weightTapRuns(g, c, K, dyH, xH)) {
            rowStrips += (r.rowEnd - r.rowBegin) * strips;
            blocks += 1;
          }
          continue;
        }
        const int64_t first = g.channelBegin[c], count = g.channelBegin[c + 1] - first;
        for (int64_t b = 0; b * K < count; ++b) {
          const auto [lo, hi] = codegen::cpu::weightBlockRows(g, c, b, K, dyH, xH);
          rowStrips += (hi - lo) * strips;
          blocks += 1;
        }
      }
      // A block walks all dy rows over the x rows its taps reach (in every
      // shifted copy): beyond L1, loads come from L2.
      const int copiesNeeded = std::max(1, copiesFor({&g}));
      const int64_t stride = roundUp(strips * SW + (g.dvMax - g.dvMin), A);
      const double blockBytes = 4.0 * ((xH + K) * stride * copiesNeeded + dyH * strips * SW);
      const double hit = std::min(1.0, static_cast<double>(d.l1Bytes) / blockBytes);
      const double loadRate =
          1.0 / (hit / d.loadLanesPerCycle + (1.0 - hit) / d.l2LoadLanesPerCycle);
      const char *bound = "";
      const double strip = stripCycles(loadRate, bound);
      if (&g == &plan.groups.front()) {
        p.tapTileCycles = strip;
        p.bound = bound;
      }
      inner += rowStrips * strip * N;
      work += rowStrips * K * SV * N;
      inner += blocks * N * (K * V / 2.0 + 20); // lane sums of the partials
      const int64_t plane = (xH + 2 * K) * roundUp(xW + 64, A);
      copies += (plane + xH * xW * 2.0 + dyH * roundUp(dyW, SW) * 2.0) / pixelsPerVector *
                (g.transposed && !cl ? 2.0 : 1.0) * N * C;
      copies += copiesFor({&g}) * plane / V * 1.5 * N * C;
    }
    cycles = inner + copies;
    p.innerCycles = inner;
    p.copyCycles = copies;
    p.work = work;
    tasks = C;
  }
  // Tasks are spread over the threads; the last round may be partly idle.
  const int threads = std::max(1, d.threads);
  const double balance =
      static_cast<double>(ceilDiv(tasks, threads) * threads) / std::max<int64_t>(1, tasks);
  p.ms = cycles / threads * balance / (d.clockGHz * 1e6);
  p.innerCycles /= threads;
  p.copyCycles /= threads;
  return p;
}

} // namespace slak::autotune

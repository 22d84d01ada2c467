#include "autotune/CpuTuning.h"

#include <algorithm>
#include <cmath>
#include <random>
#include <sstream>
#include <stdexcept>

#include "codegen/halide/CpuLkConv.h"
#include "codegen/halide/TapPlan.h"

namespace slak::autotune {
namespace {

using codegen::cpu::Pass;
using codegen::cpu::TapGroup;
using codegen::cpu::TapPlan;

int64_t ceilDiv(int64_t a, int64_t b) { return (a + b - 1) / b; }
int64_t roundUp(int64_t a, int64_t b) { return ceilDiv(a, b) * b; }

Pass passOf(KernelKind kind) {
  switch (kind) {
  case KernelKind::Forward:
    return Pass::Forward;
  case KernelKind::BackwardData:
    return Pass::BackwardData;
  default:
    return Pass::BackwardWeight;
  }
}

bool anyWide(const KernelSpec &spec) {
  for (const codegen::Branch &b : spec.branches)
    if (b.kernelW > b.kernelH)
      return true;
  return false;
}

/// Extra load slots per vector loaded at a random float offset: each
/// datapath-wide piece that straddles a 64-byte line costs one more.
double lineSplitFraction(int lanes, const CpuDevice &d) {
  const int piece = std::min(lanes, d.datapathBits / 32);
  return (piece - 1.0) / 16.0;
}

// Tile heights of the conv space: every height up to 8, then tall tiles of
// one or two vectors (e.g. 28x1 on a 56-wide image: seven exact 8-wide
// columns, each input vector reused by the tap rows of 28 outputs in L1).
constexpr int kTileRows[] = {1, 2, 3, 4, 5, 6, 7, 8, 10, 12, 14, 16, 20, 24, 28};

// Cycles of loop control around each tap and each tile / strip.
constexpr double kTapOverheadInstructions = 6;
constexpr double kFmaLatency = 4;

} // namespace

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
  std::vector<CpuSchedule> out;
  for (int v : widths)
    for (bool tw : transposes)
      for (bool align : aligns) {
        CpuSchedule s = base;
        s.vectorWidth = v;
        s.transposeWide = tw;
        s.alignLoads = align;
        if (part == SchedulePart::Conv) {
          const std::vector<bool> merges = spec.perBranchOutputs ? std::vector<bool>{base.mergeTaps}
                                                                 : std::vector<bool>{true, false};
          for (bool merge : merges)
            for (int block : {1, 2, 3, 4})
              for (int tv = 1; tv <= 8; ++tv)
                for (int r : kTileRows) {
                  // A tap block keeps up to min(P, R) loaded rows per vector live.
                  const int live = block > 1 ? tv * std::min(block, r) : 0;
                  if (r * tv + live > registers - 4)
                    continue;
                  if (tv > 1 && tv * v > 2 * span)
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
          for (int k : {1, 2, 4, 6, 8, 12, 16, 20, 24, 28})
            for (int sv = 1; sv <= 8; ++sv) {
              if (k + sv + 2 > registers)
                continue;
              if (sv > 1 && sv * v > 2 * span)
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
  const Pass pass = passOf(kind);
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
  const double split = s.alignLoads ? 0.0 : lineSplitFraction(V, cpu_);
  const int A = std::max(8, V);
  // Shifted copies a plane needs: one per distinct alignment of its taps.
  auto copiesFor = [&](const std::vector<const TapGroup *> &groups) {
    if (!s.alignLoads)
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
  const int64_t N = workload_.batch, C = spec_.channels;
  const int64_t H = workload_.height, W = workload_.width;
  const int64_t OH = spec_.outHeight(H), OW = spec_.outWidth(W);
  CpuPrediction p;
  double cycles = 0; // summed over all tasks
  int64_t tasks = 0;

  if (pass != Pass::BackwardWeight) {
    const int R = s.tileRows, TV = s.tileVectors, CW = s.tileWidth();
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
      double tap = fma;
      bound = "fma";
      if (loads > tap)
        tap = loads, bound = "load";
      if (issue > tap)
        tap = issue, bound = "issue";
      if (kFmaLatency > tap)
        tap = kFmaLatency, bound = "latency";
      return tap;
    };
    p.tapTileCycles = tapCycles(d.loadLanesPerCycle, p.bound);
    const bool bwd = pass == Pass::BackwardData;
    const int64_t readH = bwd ? OH : H, readW = bwd ? OW : W;
    const int64_t writeH = bwd ? H : OH, writeW = bwd ? W : OW;
    std::vector<std::vector<int>> runs;
    if (plan.outputPerGroup)
      for (size_t g = 0; g < plan.groups.size(); ++g)
        runs.push_back({static_cast<int>(g)});
    else {
      runs.emplace_back();
      for (size_t g = 0; g < plan.groups.size(); ++g)
        runs.back().push_back(static_cast<int>(g));
    }
    double inner = 0, copies = 0, work = 0;
    for (const std::vector<int> &run : runs) {
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
            const int64_t lo = -(t * R + R - 1) - (P - 1), hi = planeH - 1 - t * R;
            const auto first = std::lower_bound(du0.begin(), du0.end(), lo);
            const auto last = std::upper_bound(first, du0.end(), hi);
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
        copies += plane / V * 1.0 + h * w / V * (transposed ? 4.0 : 2.0);
        copies += copiesFor(readers) * plane / V * 1.5;
      }
      if (hasT && hasN)
        copies += writeH * writeW / V * 4.0;
    }
    copies *= static_cast<double>(N * C);
    cycles = inner + copies;
    p.innerCycles = inner;
    p.copyCycles = copies;
    p.work = work;
    tasks = N * C;
  } else {
    const int K = s.weightTaps, SV = s.weightVectors, SW = s.weightStripWidth();
    const int spilled = std::max(0, K + SV + 2 - d.vectorRegisters);
    // Splits cost at the full vector width here (measured on Zen 4:
    // 512-bit strips lose ~1.3x).
    const double split = s.alignLoads ? 0.0 : (V - 1.0) / 16.0;
    auto stripCycles = [&](double loadRate, const char *&bound) {
      const double fma = K * SV * V / d.fmaLanesPerCycle;
      const double loads = (SV + K * SV * (1 + split) + 2.0 * spilled) * V / loadRate;
      const double issue = (K * SV + SV + 5 + 2.0 * spilled) / d.issuePerCycle;
      const double chain = SV * kFmaLatency; // each accumulator takes SV FMAs in a row
      double strip = fma;
      bound = "fma";
      if (loads > strip)
        strip = loads, bound = "load";
      if (issue > strip)
        strip = issue, bound = "issue";
      if (chain > strip)
        strip = chain, bound = "latency";
      return strip;
    };
    p.tapTileCycles = stripCycles(d.loadLanesPerCycle, p.bound);
    double inner = 0, copies = 0, work = 0;
    for (const TapGroup &g : plan.groups) {
      const int64_t xH = g.transposed ? W : H, xW = g.transposed ? H : W;
      const int64_t dyH = g.transposed ? OW : OH, dyW = g.transposed ? OH : OW;
      const int64_t strips = ceilDiv(dyW, SW);
      double rowStrips = 0, blocks = 0;
      for (int64_t c = 0; c < C; ++c) {
        const int64_t first = g.channelBegin[c], count = g.channelBegin[c + 1] - first;
        for (int64_t b = 0; b * K < count; ++b) {
          int duLo = INT32_MAX, duHi = INT32_MIN;
          for (int64_t k = 0; k < K && b * K + k < count; ++k) {
            duLo = std::min(duLo, g.du[first + b * K + k]);
            duHi = std::max(duHi, g.du[first + b * K + k]);
          }
          const int64_t lo = std::max<int64_t>(0, -duHi);
          const int64_t hi = std::min<int64_t>(dyH, xH - duLo);
          rowStrips += std::max<int64_t>(0, hi - lo) * strips;
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
      copies += (plane / V + xH * xW / V * 2.0 + dyH * roundUp(dyW, SW) / V * 2.0) *
                (g.transposed ? 2.0 : 1.0) * N * C;
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

// ---------------------------------------------------------------------------
// Timer

struct CpuKernelTimer::Buffers {
  codegen::cpu::Shape shape;
  codegen::TapTable table;
  bool sparse = false;
  std::vector<float> x, bias, dx;
  std::vector<std::vector<float>> weights, outputs, dy, dw;
};

CpuKernelTimer::CpuKernelTimer(int threads) : cpu_(hostCpu(threads)) {}
CpuKernelTimer::~CpuKernelTimer() = default;

CpuKernelTimer::Buffers &CpuKernelTimer::buffers(const KernelSpec &spec, const Workload &w) {
  const std::string key = problemSignature(spec) + " | " + w.str();
  if (buffers_ && buffersKey_ == key)
    return *buffers_;
  // One set of data at a time keeps memory flat across layers.
  buffers_.reset();
  buffersKey_ = key;
  ++dataSetsCreated_;
  auto b = std::make_unique<Buffers>();
  b->shape = {w.batch, spec.channels, w.height, w.width};
  b->sparse = spec.anySparse();
  b->table = randomTapTable(spec, w.density, w.seed);
  std::mt19937 rng(w.seed + 7);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  auto fill = [&](std::vector<float> &v, int64_t n) {
    v.resize(n);
    for (float &e : v)
      e = dist(rng);
  };
  const int64_t in = w.batch * spec.channels * w.height * w.width;
  const int64_t out = w.batch * spec.channels * spec.outHeight(w.height) * spec.outWidth(w.width);
  const size_t numOut = spec.perBranchOutputs ? spec.branches.size() : 1;
  fill(b->x, in);
  fill(b->bias, spec.channels);
  b->dx.resize(in);
  for (const codegen::Branch &br : spec.branches) {
    b->weights.emplace_back();
    fill(b->weights.back(), spec.channels * br.windowSize());
    b->dw.emplace_back(spec.channels * br.windowSize());
  }
  for (size_t i = 0; i < numOut; ++i) {
    b->outputs.emplace_back(out);
    b->dy.emplace_back();
    fill(b->dy.back(), out);
  }
  buffers_ = std::move(b);
  return *buffers_;
}

Timing CpuKernelTimer::time(const KernelSpec &specIn, const CpuSchedule &schedule,
                            const Workload &w, KernelKind kind, const MeasureOptions &options) {
  if (std::string err = checkWorkload(specIn, w); !err.empty())
    throw std::invalid_argument("CpuKernelTimer: " + err);
  KernelSpec spec = specIn;
  spec.elementType = codegen::ElementType::F32; // the CPU backend computes in f32
  Buffers &b = buffers(spec, w);
  codegen::cpu::CpuLkConv conv(spec, schedule);
  if (b.sparse)
    conv.setTaps(b.table);
  conv.prepare(passOf(kind), w.height, w.width); // compiles; not timed
  std::vector<const float *> weights, dy;
  for (const auto &v : b.weights)
    weights.push_back(v.data());
  for (const auto &v : b.dy)
    dy.push_back(v.data());
  std::vector<float *> outputs, dw;
  for (auto &v : b.outputs)
    outputs.push_back(v.data());
  for (auto &v : b.dw)
    dw.push_back(v.data());
  const int threads = options.threads > 0 ? options.threads : cpu_.threads;
  std::function<void()> once;
  switch (kind) {
  case KernelKind::Forward:
    once = [&] { conv.forward(b.shape, b.x.data(), weights, b.bias.data(), outputs, threads); };
    break;
  case KernelKind::BackwardData:
    once = [&] { conv.backwardData(b.shape, dy, weights, b.dx.data(), threads); };
    break;
  default:
    once = [&] { conv.backwardWeight(b.shape, b.x.data(), dy, dw, threads); };
    break;
  }
  return timeMedian(once, options);
}

// ---------------------------------------------------------------------------
// Search problem

namespace {

CpuSchedule combineCpu(const CpuSchedule &conv, const CpuSchedule &weight) {
  CpuSchedule s = conv;
  s.weightTaps = weight.weightTaps;
  s.weightVectors = weight.weightVectors;
  return s;
}

class CpuTuningProblem : public TuningProblem {
public:
  CpuTuningProblem(const KernelSpec &spec, const Workload &workload, const CpuDevice &cpu,
                   CpuKernelTimer *timer)
      : spec_(spec), workload_(workload), cpu_(cpu), timer_(timer), model_(spec, workload, cpu) {
    default_ = codegen::cpu::defaultCpuSchedule(spec, workload.height, workload.width);
  }

  Backend backend() const override { return Backend::Cpu; }
  TuningKey key() const override {
    return {problemSignature(spec_), cpu_.name, compilerVersion(Backend::Cpu)};
  }
  std::string workload() const override { return workload_.str(); }

  size_t enumerate(SchedulePart part, bool needed, const ProgressCallback &progress) override {
    std::vector<CpuSchedule> &out = candidates_[static_cast<int>(part)];
    out = {default_};
    std::vector<CpuSchedule> space = cpuScheduleSpace(spec_, workload_, cpu_, part, default_);
    for (const CpuSchedule &s : space) {
      if (s == default_)
        continue;
      if (needed) {
        out.push_back(s);
        continue;
      }
      // Not tuned: only the default's fields with other coupled values.
      CpuSchedule variant = default_;
      variant.vectorWidth = s.vectorWidth;
      variant.transposeWide = s.transposeWide;
      variant.alignLoads = s.alignLoads;
      if (variant.validate().empty() && std::find(out.begin(), out.end(), variant) == out.end())
        out.push_back(variant);
    }
    if (progress)
      progress(out.size(), out.size());
    predictions_[static_cast<int>(part)].assign(out.size(), KindTimes{kNoTime, kNoTime, kNoTime});
    return out.size();
  }
  std::string text(SchedulePart part, size_t i) const override { return at(part, i).str(); }
  std::vector<size_t> anchors(SchedulePart part) const override {
    const auto &list = candidates_[static_cast<int>(part)];
    std::vector<size_t> out = {0};
    for (size_t i = 1; i < list.size(); ++i) {
      CpuSchedule s = list[i];
      s.vectorWidth = default_.vectorWidth;
      s.transposeWide = default_.transposeWide;
      s.alignLoads = default_.alignLoads;
      if (s == default_)
        out.push_back(i);
    }
    return out;
  }
  int coupling(SchedulePart part, size_t i) const override {
    const CpuSchedule &s = at(part, i);
    return s.vectorWidth * 4 + (s.transposeWide ? 2 : 0) + (s.alignLoads ? 1 : 0);
  }
  double predict(SchedulePart part, size_t i, KernelKind kind) override {
    double &slot = predictions_[static_cast<int>(part)][i][kindIndex(kind)];
    if (std::isnan(slot))
      slot = model_.predict(at(part, i), kind).ms;
    return slot;
  }
  bool canMeasure() const override { return timer_ != nullptr; }
  Timing measure(SchedulePart part, size_t i, KernelKind kind,
                 const MeasureOptions &options) override {
    if (!timer_)
      throw MeasurementUnavailable("no CPU timer");
    return timer_->time(spec_, at(part, i), workload_, kind, options);
  }
  std::string combine(size_t conv, size_t weight) const override {
    return combineCpu(at(SchedulePart::Conv, conv), at(SchedulePart::Weight, weight)).str();
  }

private:
  const CpuSchedule &at(SchedulePart part, size_t i) const {
    return candidates_[static_cast<int>(part)].at(i);
  }
  KernelSpec spec_;
  Workload workload_;
  CpuDevice cpu_;
  CpuKernelTimer *timer_;
  CpuCostModel model_;
  CpuSchedule default_;
  std::array<std::vector<CpuSchedule>, 2> candidates_;
  std::array<std::vector<KindTimes>, 2> predictions_;
};

} // namespace

TuningResult tuneCpu(const KernelSpec &spec, const Workload &workload, const CpuDevice &cpu,
                     const TuneOptions &options, CpuKernelTimer *timer) {
  if (std::string err = checkWorkload(spec, workload); !err.empty())
    throw std::invalid_argument("tuneCpu: " + err);
  CpuTuningProblem problem(spec, workload, timer ? timer->device() : cpu, timer);
  TuneOptions o = options;
  o.measure = timer != nullptr;
  return search(problem, o);
}

} // namespace slak::autotune

#include "autotune/GpuCostModel.h"

#include <algorithm>
#include <cmath>
#include <sstream>

#include "codegen/BufferLayout.h"

namespace slak::autotune {
namespace {

using codegen::Branch;
using codegen::Schedule;

int64_t ceilDiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

int nextPow2(int v) {
  int p = 1;
  while (p < v)
    p *= 2;
  return p;
}

// Per-SM constants shared by every architecture in the table: 4 schedulers
// issuing one warp instruction per clock each, one warp-wide 32-bit
// shared-memory load per clock (32 banks x 4 bytes), ~600 clocks of global
// memory latency per dependent staging round, ~4 us per kernel launch.
constexpr double kIssuePerClock = 4.0;
constexpr double kSharedLoadsPerClock = 1.0;
constexpr double kGlobalLatencyClocks = 600.0;
constexpr double kBarrierClocks = 40.0;
constexpr double kLaunchMs = 0.004;
// Warp instructions in flight per scheduler that hide the FMA and
// shared-load latencies (~4 and ~30 clocks).
constexpr double kHidingNeeded = 16.0;

/// In-image taps summed over all outputs of one plane, for a window of
/// `k` taps with padding `pad` along an axis of `in` inputs and `out` outputs:
/// the pairs (output i, tap u) with 0 <= i + u - pad < in. Counted per tap,
/// so the time grows with the window, not with the image.
int64_t inImageTaps(int k, int pad, int64_t in, int64_t out) {
  int64_t count = 0;
  for (int64_t u = 0; u < k; ++u) {
    const int64_t lo = std::max<int64_t>(0, pad - u);
    const int64_t hi = std::min<int64_t>(out, in + pad - u);
    count += std::max<int64_t>(0, hi - lo);
  }
  return count;
}

double liveFraction(const KernelSpec &spec, const Branch &b, const Workload &w,
                    bool weightGrad = false) {
  if (b.dense || (weightGrad && spec.denseWeightGrad))
    return 1.0;
  return w.density;
}

/// Work counted per thread of one block, in instructions.
struct ThreadWork {
  double fma = 0;
  double shared = 0; // shared-memory loads (warp-wide requests)
  double other = 0;  // integer, control, stores, global loads
  double ilp = 1;    // independent accumulators per thread
  // Counts that grow with the image (tiles per block): doubles, like the
  // rest, so that no size overflows them.
  double barriers = 0;
  double globalRounds = 0; // dependent rounds of global loads (staging)
};

struct Occupancy {
  int blocksPerSm = 0;
  double occupancy = 0;
};

Occupancy occupancy(const GpuDevice &d, int threads, int64_t shared, int registers) {
  const int warps = static_cast<int>(ceilDiv(threads, 32));
  // Registers are allocated per warp in units of 256.
  const int regsPerWarp = static_cast<int>(ceilDiv(std::max(registers, 16) * 32, 256) * 256);
  int blocks = d.maxBlocksPerSm;
  blocks = std::min(blocks, d.maxThreadsPerSm / (warps * 32));
  blocks = std::min(blocks, d.registersPerSm / (warps * regsPerWarp));
  if (shared > 0)
    blocks = std::min<int64_t>(blocks, d.sharedPerSm / (shared + d.sharedReservedPerBlock));
  Occupancy o;
  o.blocksPerSm = std::max(blocks, 0);
  o.occupancy = static_cast<double>(o.blocksPerSm * warps * 32) / d.maxThreadsPerSm;
  return o;
}

/// Block-level time on an SM shared by `resident` blocks, and the overall
/// compute time of `blocks` blocks.
struct ComputeTime {
  double ms = 0;
  double waves = 0;
  const char *bound = "fma";
};

ComputeTime computeTime(const GpuDevice &d, int64_t blocks, int threads, const ThreadWork &t,
                        const Occupancy &occ) {
  const double warps = static_cast<double>(ceilDiv(threads, 32));
  const double fmaRate = d.fp32LanesPerSm / 32.0; // warp FMAs per clock per SM
  const double fma = warps * t.fma / fmaRate;
  const double shared = warps * t.shared / kSharedLoadsPerClock;
  const double issue = warps * (t.fma + t.shared + t.other) / kIssuePerClock;
  ComputeTime out;
  double block = fma;
  if (shared > block) {
    block = shared;
    out.bound = "shared";
  }
  if (issue > block) {
    block = issue;
    out.bound = "issue";
  }
  const int perSm = std::max(1, occ.blocksPerSm);
  const int64_t used = std::min<int64_t>(perSm, ceilDiv(blocks, d.sms));
  // A block also waits on global memory (staging) and barriers; resident
  // blocks run while others wait, so a round of k blocks per SM takes the
  // longer of the SM's throughput time and one block's own time including
  // its waits. Latency hiding grows with resident warps x independent
  // accumulators.
  const double stalls = t.globalRounds * kGlobalLatencyClocks + t.barriers * kBarrierClocks;
  auto round = [&](int64_t k, const char **bound) {
    const double warpsPerScheduler = k * warps / 4.0;
    const double hiding = std::min(1.0, warpsPerScheduler * std::min(t.ilp, 8.0) / kHidingNeeded);
    const double throughput = k * block / hiding;
    if (bound && (hiding < 1.0 || block + stalls > throughput))
      *bound = "latency";
    return std::max(throughput, block + stalls);
  };
  // Full rounds of `used` blocks per SM, then the tail: the remaining
  // blocks spread over the SMs, each SM running fewer at once.
  const int64_t slots = d.sms * used;
  const int64_t full = blocks / slots, rest = blocks - full * slots;
  double clocks = full * round(used, &out.bound);
  if (rest > 0)
    clocks += round(ceilDiv(rest, d.sms), full == 0 ? &out.bound : nullptr);
  out.ms = clocks / (d.boostClockGHz * 1e6);
  out.waves = static_cast<double>(blocks) / (static_cast<double>(d.sms) * perSm);
  return out;
}

void finish(GpuPrediction &p, const GpuDevice &d, const ComputeTime &compute, double dramBytes,
            double l2Bytes, int launches) {
  p.computeMs = compute.ms;
  p.waves = compute.waves;
  const double dramMs = dramBytes / (d.memoryGBs * 1e6);
  const double l2Ms = l2Bytes / (d.l2BytesPerClock * d.boostClockGHz * 1e6);
  p.memoryMs = std::max(dramMs, l2Ms);
  p.launchMs = launches * kLaunchMs;
  p.bound = compute.bound;
  if (p.memoryMs > p.computeMs)
    p.bound = dramMs >= l2Ms ? "dram" : "l2";
  // Compute and memory overlap, imperfectly.
  p.ms = std::max(p.computeMs, p.memoryMs) + 0.1 * std::min(p.computeMs, p.memoryMs) + p.launchMs;
}

/// Forward and backward-data (backward-data is a forward pass over dy with
/// flipped windows; with per-branch outputs it stages one dy per branch).
GpuPrediction predictConv(const KernelSpec &spec, const Workload &w, const GpuDevice &d,
                          KernelKind kind, const GpuCandidate &cand) {
  const Schedule &s = spec.schedule;
  const bool bwd = kind == KernelKind::BackwardData;
  const int k = static_cast<int>(kind);
  const int64_t H = w.height, W = w.width, OH = spec.outHeight(H), OW = spec.outWidth(W);
  const int64_t outRows = bwd ? H : OH, outCols = bwd ? W : OW;
  const int64_t inRows = bwd ? OH : H, inCols = bwd ? OW : W;
  const int R = s.rowsPerThread(), CC = s.colsPerThread(), outputs = R * CC;
  const int threads = s.threadsPerBlock();
  const int eb = codegen::elementTypeBytes(spec.elementType);
  const int B = static_cast<int>(spec.branches.size());

  GpuPrediction p;
  p.threads = threads;
  p.blocks = codegen::gridBlocks(spec, kind, w.batch, H, W);

  // Staged input tiles (tile plus the union halo of the branches reading
  // each input), as the plan lays them out.
  const codegen::ConvPassPlan &pass = cand.plan.pass(kind);
  const bool perBranchInput = pass.groups.size() > 1 || pass.groups[0].dyBranch >= 0;
  double stagedElems = 0;
  for (const codegen::InputGroup &g : pass.groups)
    stagedElems += static_cast<double>(g.rows) * g.cols;

  ThreadWork t;
  t.ilp = outputs;
  t.globalRounds = 1;
  t.barriers = 1 + (perBranchInput ? B : 0);
  if (s.stageInput)
    t.other += std::ceil(stagedElems / threads) * 9; // bounds-checked load + store
  double fmaTotal = 0, loadTotal = 0;
  for (const codegen::PassBranch &pb : pass.branches) {
    const Branch &b = spec.branches[pb.index];
    const double live = liveFraction(spec, b, w);
    const double window = b.windowSize();
    const double liveTaps = std::max(1.0, std::round(live * window));
    const bool table = pb.table || pb.masked; // sparse
    const bool masked = pb.masked;
    if (s.stageTaps) {
      if (masked)
        t.other += std::ceil(window / threads) * 3 + std::ceil(liveTaps / threads) * 12;
      else if (table)
        t.other += std::ceil(liveTaps / threads) * 14;
      else
        t.other += std::ceil(window / threads) * 6;
    } else if (table) {
      t.other += 4; // reads its tap range
    }
    if (s.stageInput && (!table || masked)) {
      // Rotating register rows: per window column, R - 1 + KH row loads of
      // CC values feed KH x R x CC FMAs; masked walks test each weight.
      const double f = window * outputs * (masked ? live : 1.0);
      const double l = b.kernelW * ((R - 1.0) * CC + b.kernelH * CC) + window;
      t.fma += f;
      t.shared += l;
      t.other += b.kernelW * 3.0 + (masked ? 2.0 * window : 0.0) + (b.kernelH / R) * 2.0;
      fmaTotal += f;
      loadTotal += l;
    } else if (s.stageInput) {
      // Tap table: one weight and one offset, then R x CC loads and FMAs.
      const double f = liveTaps * outputs;
      const double l = liveTaps * (outputs + (s.stageTaps ? 2 : 0));
      t.fma += f;
      t.shared += l;
      t.other += liveTaps * (s.stageTaps ? 3 : 10); // unstaged taps decode and load weights
      fmaTotal += f;
      loadTotal += l;
    } else {
      // No staged input: every tap loads R x CC bounds-checked global values.
      const double taps = table ? liveTaps : window;
      const double f = taps * outputs;
      t.fma += f;
      t.shared += taps * outputs * 2.0; // L1 requests cost about two shared loads
      t.other += taps * (outputs * 6.0 + 4.0);
      t.globalRounds += 2;
      fmaTotal += f;
      loadTotal += taps * outputs;
    }
    if (spec.perBranchOutputs && !bwd)
      t.other += outputs * 5.0; // one store per branch
  }
  if (!(spec.perBranchOutputs && !bwd))
    t.other += outputs * 5.0;
  p.fmasPerLoad = loadTotal > 0 ? fmaTotal / loadTotal : 0;
  p.haloOverhead = s.stageInput ? stagedElems / (s.tileH * s.tileW) : 0;

  const int regs = cand.registers[k];
  const Occupancy occ = occupancy(d, threads, cand.sharedBytes[k], regs);
  p.blocksPerSm = occ.blocksPerSm;
  p.occupancy = occ.occupancy;
  const ComputeTime ct = computeTime(d, p.blocks, threads, t, occ);

  const double planes = static_cast<double>(w.batch) * spec.channels;
  const int numInputs = perBranchInput ? B : 1;
  const int numOutputs = spec.perBranchOutputs && !bwd ? B : 1;
  const double dram = planes * (numInputs * inRows * inCols + numOutputs * outRows * outCols) * eb +
                      static_cast<double>(codegen::weightCount(spec)) * eb;
  const double l2 = (s.stageInput ? p.blocks * stagedElems * eb : planes * inRows * inCols * eb) +
                    planes * numOutputs * outRows * outCols * eb;
  p.usefulGflop = usefulGflop(spec, w, kind);
  finish(p, d, ct, dram, l2, 1);
  return p;
}

GpuPrediction predictWeight(const KernelSpec &spec, const Workload &w, const GpuDevice &d,
                            const GpuCandidate &cand) {
  const Schedule &s = spec.schedule;
  const int64_t H = w.height, W = w.width, OH = spec.outHeight(H), OW = spec.outWidth(W);
  const int TH = s.weightTileH, TW = s.weightTileW, threads = s.weightThreads;
  const int eb = codegen::elementTypeBytes(spec.elementType);

  const codegen::WeightGradPlan &plan = cand.plan.weightGrad;
  const bool blocked = plan.blocked;
  const int numDy = plan.numDy;
  const bool perTapDy = plan.perTapDy();
  double liveTaps = 0;
  for (const Branch &b : spec.branches)
    liveTaps += std::max(1.0, std::round(liveFraction(spec, b, w, true) * b.windowSize()));
  const int P = plan.tapsPerThread;
  const double SH = plan.tileRows, SW = plan.tileCols;
  const int64_t tilesTotal = w.batch * ceilDiv(OH, TH) * ceilDiv(OW, TW);
  const double tilesPerBlock = static_cast<double>(ceilDiv(tilesTotal, s.weightSplit));

  GpuPrediction p;
  p.threads = threads;
  p.blocks = codegen::gridBlocks(spec, KernelKind::BackwardWeight, w.batch, H, W);

  ThreadWork perTile;
  const double staged = SH * SW + numDy * TH * TW;
  perTile.other = std::ceil(staged / threads) * 9 + 6;
  double fmaPerTile = 0, loadPerTile = 0;
  if (blocked) {
    const int slots = plan.slots;
    const int groups = plan.pixelGroups;
    const double cols = static_cast<double>(ceilDiv(TW, groups));
    // Per dy column: P - 1 x loads per slot, then per row one dy load (per
    // slot with one dy per branch), and per slot one x load and P FMAs.
    perTile.fma = cols * TH * slots * P;
    perTile.shared = cols * (slots * (P - 1.0) + TH * ((perTapDy ? slots : 1) + slots));
    perTile.other += cols * (TH + 4.0);
    perTile.ilp = slots * P;
  } else {
    // The lanes per tap are chosen at run time from the live taps.
    const int slots = plan.slots;
    const int need = static_cast<int>(std::ceil(liveTaps / slots));
    const int lanes = nextPow2(std::max(1, need));
    const int groups = std::max(1, threads / lanes);
    const double pixels = std::ceil(static_cast<double>(TH) * TW / groups);
    perTile.fma = pixels * slots;
    perTile.shared = pixels * ((perTapDy ? slots : 1) + slots);
    perTile.other += pixels * 3.0;
    perTile.ilp = slots;
  }
  fmaPerTile = perTile.fma;
  loadPerTile = perTile.shared;

  ThreadWork t;
  t.fma = perTile.fma * tilesPerBlock;
  t.shared = perTile.shared * tilesPerBlock;
  t.other = perTile.other * tilesPerBlock +
            std::ceil(static_cast<double>(plan.windowTaps) / threads) * 20;
  t.ilp = perTile.ilp;
  t.barriers = 2 * tilesPerBlock + 3;
  t.globalRounds = tilesPerBlock;
  p.fmasPerLoad = loadPerTile > 0 ? fmaPerTile / loadPerTile : 0;
  p.haloOverhead = SH * SW / (TH * TW);

  const int k = static_cast<int>(KernelKind::BackwardWeight);
  const Occupancy occ = occupancy(d, threads, cand.sharedBytes[k], cand.registers[k]);
  p.blocksPerSm = occ.blocksPerSm;
  p.occupancy = occ.occupancy;
  const ComputeTime ct = computeTime(d, p.blocks, threads, t, occ);

  const double planes = static_cast<double>(w.batch) * spec.channels;
  const double wc = static_cast<double>(codegen::weightCount(spec));
  const double dram = planes * (H * W + numDy * OH * OW) * eb + s.weightSplit * wc * 4.0;
  const double l2 = p.blocks * tilesPerBlock * staged * eb + s.weightSplit * wc * 4.0;
  p.usefulGflop = usefulGflop(spec, w, KernelKind::BackwardWeight);
  finish(p, d, ct, dram, l2, 1);
  // Phase 2: every partial read once, dW written once; a small kernel.
  const double reduceBytes = s.weightSplit * wc * 4.0 + wc * eb;
  const double reduceMs = reduceBytes / (d.memoryGBs * 1e6) + kLaunchMs;
  p.ms += reduceMs;
  p.memoryMs += reduceMs - kLaunchMs;
  p.launchMs += kLaunchMs;
  return p;
}

} // namespace

std::string GpuPrediction::str() const {
  std::ostringstream os;
  os.precision(3);
  os << ms << " ms (compute " << computeMs << ", memory " << memoryMs << ", " << bound << "-bound; "
     << blocks << " blocks x " << threads << " threads, " << blocksPerSm << "/SM, occupancy "
     << occupancy << ", waves " << waves << ", FMA/load " << fmasPerLoad << ", halo x"
     << haloOverhead << ")";
  return os.str();
}

double usefulGflop(const KernelSpec &spec, const Workload &w, KernelKind kind) {
  // The three kinds do the same multiply-adds, except that backward-weight
  // computes dead taps too when asked for dense weight gradients.
  const int64_t OH = spec.outHeight(w.height), OW = spec.outWidth(w.width);
  double taps = 0;
  for (const Branch &b : spec.branches) {
    const double live = liveFraction(spec, b, w, kind == KernelKind::BackwardWeight);
    taps += live * static_cast<double>(inImageTaps(b.kernelH, b.padH, w.height, OH)) *
            static_cast<double>(inImageTaps(b.kernelW, b.padW, w.width, OW));
  }
  return 2.0 * taps * w.batch * spec.channels / 1e9;
}

GpuPrediction predictGpu(const KernelSpec &spec, const Workload &w, const GpuDevice &d,
                         KernelKind kind, const GpuCandidate &cand) {
  if (kind == KernelKind::BackwardWeight || kind == KernelKind::BackwardWeightReduce)
    return predictWeight(spec, w, d, cand);
  return predictConv(spec, w, d, kind, cand);
}

GpuPrediction predictGpu(const KernelSpec &spec, const Workload &w, const GpuDevice &d,
                         KernelKind kind) {
  return predictGpu(spec, w, d, kind, describeSchedule(spec));
}

} // namespace slak::autotune

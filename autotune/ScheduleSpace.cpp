#include "autotune/ScheduleSpace.h"

#include "codegen/DefaultSchedule.h"

#include <algorithm>
#include <mutex>
#include <set>
#include <stdexcept>
#include <unordered_map>

namespace slak::autotune {
namespace {

using codegen::Schedule;

int64_t ceilDiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

int nextPow2(int v) {
  int p = 1;
  while (p < v)
    p *= 2;
  return p;
}

/// Union halo of all branches: rows above/below and columns left/right.
struct Halo {
  int rows = 0, cols = 0;
};
Halo unionHalo(const KernelSpec &spec) {
  int minR = 0, maxR = 0, minC = 0, maxC = 0;
  for (const codegen::Branch &b : spec.branches) {
    minR = std::min(minR, -b.padH);
    maxR = std::max(maxR, b.kernelH - 1 - b.padH);
    minC = std::min(minC, -b.padW);
    maxC = std::max(maxC, b.kernelW - 1 - b.padW);
  }
  return {maxR - minR, maxC - minC};
}

int totalWindow(const KernelSpec &spec) {
  int taps = 0;
  for (const codegen::Branch &b : spec.branches)
    taps += b.windowSize();
  return taps;
}

/// True when backward-weight uses the blocked kernel (every branch computes
/// its whole window), as the emitter decides.
bool blockedWeight(const KernelSpec &spec) {
  for (const codegen::Branch &b : spec.branches)
    if (!(b.dense || spec.denseWeightGrad || spec.schedule.maskedWalk))
      return false;
  return true;
}

/// A lower bound of the conv kernels' shared memory (the emitter may pad
/// rows for bank conflicts): skips emitting tiles that cannot fit.
int64_t convSharedLowerBound(const KernelSpec &spec) {
  const Schedule &s = spec.schedule;
  const Halo h = unionHalo(spec);
  int64_t bytes = 0;
  if (s.stageInput)
    bytes += 4LL * (s.tileH + h.rows) * (s.tileW + h.cols);
  if (s.stageTaps)
    bytes += 4LL * totalWindow(spec);
  return bytes;
}

int64_t weightSharedLowerBound(const KernelSpec &spec) {
  const Schedule &s = spec.schedule;
  const Halo h = unionHalo(spec);
  const int numDy = spec.perBranchOutputs ? static_cast<int>(spec.branches.size()) : 1;
  const int extra = blockedWeight(spec) ? s.weightRowsPerThread - 1 : 0;
  return 4LL * ((s.weightTileH + h.rows + extra) * (s.weightTileW + h.cols) +
                numDy * s.weightTileH * s.weightTileW);
}

} // namespace

const char *schedulePartName(SchedulePart part) {
  return part == SchedulePart::Conv ? "conv" : "weight";
}

SchedulePart partOf(KernelKind kind) {
  return kind == KernelKind::Forward || kind == KernelKind::BackwardData ? SchedulePart::Conv
                                                                         : SchedulePart::Weight;
}

int registerBudget(int threads) {
  // Mirrors the emitter's __launch_bounds__(threads, minBlocks): minBlocks
  // blocks of `threads` must fit 64K registers at 128 per thread.
  const int lanes = (threads + 31) / 32 * 32;
  const int minBlocks = std::max(1, 65536 / (lanes * 128));
  return std::min(255, 65536 / (minBlocks * lanes) / 8 * 8);
}

int estimateRegisters(const KernelSpec &spec, KernelKind kind) {
  // Fitted to ptxas -v (CUDA 13, sm_80) over 192 schedules of the SLaK-T
  // stage spaces (768 kernels): given the 128-register budget of the launch
  // bounds, ptxas spends registers on unrolling, so usage grows with the
  // outputs held per thread from a base of about 40. The estimates err high.
  const Schedule &s = spec.schedule;
  if (kind == KernelKind::BackwardWeightReduce)
    return 16 + 2 * std::min(s.weightSplit, 32);
  if (kind == KernelKind::Forward || kind == KernelKind::BackwardData) {
    const int outputs = s.rowsPerThread() * s.colsPerThread();
    // Staged walks keep rotating input rows (or pipelined tap loads) beside
    // the sums; unstaged ones load straight into FMAs.
    return s.stageInput ? 36 + 3 * outputs : 44 + 2 * outputs;
  }
  // Backward-weight phase 1.
  const int threads = s.weightThreads;
  if (blockedWeight(spec)) {
    const int P = s.weightRowsPerThread;
    int numBlocks = 0;
    for (const codegen::Branch &b : spec.branches)
      numBlocks += static_cast<int>(ceilDiv(b.kernelH, P)) * b.kernelW;
    const int lanes = std::min(nextPow2(numBlocks), threads);
    const int slots = static_cast<int>(ceilDiv(numBlocks, lanes));
    return 56 + slots * (3 * P + (spec.perBranchOutputs ? 5 : 4));
  }
  const int slots = static_cast<int>(ceilDiv(totalWindow(spec), threads));
  return 60 + slots * 6;
}

GpuCandidate describeSchedule(const KernelSpec &spec) {
  // Emitting costs ~1 ms; searches ask for the same schedules again (other
  // devices, other splits, whose shared memory and threads do not change).
  struct Facts {
    std::array<int, codegen::kNumKernelKinds> threads{};
    std::array<int64_t, codegen::kNumKernelKinds> sharedBytes{};
    std::string error;
  };
  static std::mutex mutex;
  static std::unordered_map<std::string, Facts> cache;
  KernelSpec normalised = spec;
  normalised.schedule.weightSplit = 1;
  const std::string key = normalised.signature();
  Facts facts;
  bool found = false;
  {
    std::lock_guard<std::mutex> lock(mutex);
    if (auto it = cache.find(key); it != cache.end()) {
      facts = it->second;
      found = true;
    }
  }
  if (!found) {
    try {
      const codegen::EmittedKernels emitted = codegen::emitKernels(spec);
      facts.threads = emitted.threads;
      facts.sharedBytes = emitted.sharedBytes;
    } catch (const std::invalid_argument &e) {
      facts.error = e.what();
    }
    std::lock_guard<std::mutex> lock(mutex);
    if (cache.size() > 200000)
      cache.clear();
    cache.emplace(key, facts);
  }
  if (!facts.error.empty())
    throw std::invalid_argument(facts.error);
  GpuCandidate c;
  c.schedule = spec.schedule;
  c.threads = facts.threads;
  c.sharedBytes = facts.sharedBytes;
  for (int k = 0; k < codegen::kNumKernelKinds; ++k)
    c.registers[k] = estimateRegisters(spec, static_cast<KernelKind>(k));
  return c;
}

std::string checkFits(const GpuCandidate &c, const GpuDevice &device) {
  const int64_t sharedLimit = std::min<int64_t>(codegen::kMaxSharedBytes, device.sharedPerBlock);
  for (int k = 0; k < codegen::kNumKernelKinds; ++k) {
    const char *kind = codegen::kernelKindName(static_cast<KernelKind>(k));
    if (c.threads[k] > device.maxThreadsPerBlock)
      return std::string(kind) + " uses " + std::to_string(c.threads[k]) +
             " threads per block, more than the " + std::to_string(device.maxThreadsPerBlock) +
             " of " + device.name;
    if (c.sharedBytes[k] > sharedLimit)
      return std::string(kind) + " needs " + std::to_string(c.sharedBytes[k]) +
             " bytes of shared memory, more than " + std::to_string(sharedLimit);
    const int budget = std::min(registerBudget(c.threads[k]), device.maxRegistersPerThread);
    if (c.registers[k] > budget)
      return std::string(kind) + " needs about " + std::to_string(c.registers[k]) +
             " registers per thread, more than the " + std::to_string(budget) +
             " its launch bounds allow at " + std::to_string(c.threads[k]) + " threads";
  }
  return {};
}

Schedule combineParts(const Schedule &conv, const Schedule &weight) {
  Schedule s = conv;
  s.weightSplit = weight.weightSplit;
  s.weightThreads = weight.weightThreads;
  s.weightTileH = weight.weightTileH;
  s.weightTileW = weight.weightTileW;
  s.weightRowsPerThread = weight.weightRowsPerThread;
  return s;
}

std::vector<GpuCandidate> gpuScheduleSpace(const KernelSpec &specIn, const Workload &workload,
                                           const GpuDevice &device, SchedulePart part,
                                           const Schedule &base, const ProgressCallback &progress) {
  KernelSpec spec = specIn;
  spec.schedule = base;
  if (std::string err = spec.validate(); !err.empty())
    throw std::invalid_argument("gpuScheduleSpace: " + err);
  const int64_t h = workload.height, w = workload.width;
  // Forward tiles the output, backward-data the input: cover the larger.
  const int64_t rows = std::max<int64_t>(h, spec.outHeight(h));
  const int64_t cols = std::max<int64_t>(w, spec.outWidth(w));
  const int64_t sharedLimit = std::min<int64_t>(codegen::kMaxSharedBytes, device.sharedPerBlock);
  const int maxThreads = std::min(512, device.maxThreadsPerBlock);
  // Tiles may overshoot the image, but not compute more than twice it.
  auto fitsImage = [](int64_t tile, int64_t extent, int64_t smallest) {
    return tile <= smallest || ceilDiv(extent, tile) * tile <= 2 * extent;
  };

  std::vector<Schedule> proposals;
  if (part == SchedulePart::Conv) {
    const bool sparse = spec.anySparse();
    for (int bw : {8, 16, 32, 64, 128})
      for (int cc : {1, 2, 4, 7})
        for (int bh : {1, 2, 4, 8, 16, 32})
          for (int r : {1, 2, 4, 7, 8, 14, 16}) {
            const int threads = bw * bh;
            if (threads > maxThreads || r * cc > 32)
              continue;
            if (!fitsImage(bw * cc, cols, 8) || !fitsImage(bh * r, rows, 1))
              continue;
            // At least a warp per block unless one block covers the image.
            if (threads < 32 && (bw * cc < cols || bh * r < rows))
              continue;
            for (int staging = 0; staging < 3; ++staging)
              for (int masked = 0; masked <= (sparse && staging == 0 ? 1 : 0); ++masked) {
                Schedule s = base;
                s.blockW = bw;
                s.blockH = bh;
                s.tileW = bw * cc;
                s.tileH = bh * r;
                s.stageInput = staging != 2;
                s.stageTaps = staging != 1;
                s.maskedWalk = masked;
                proposals.push_back(s);
              }
          }
  } else {
    std::set<int> splits = {1, 2, 4, 8, 16, 32, 64, base.weightSplit};
    const bool blocked = blockedWeight(spec);
    std::vector<int> rowsPerThread = {base.weightRowsPerThread};
    if (blocked) {
      int maxKh = 1;
      for (const codegen::Branch &b : spec.branches)
        maxKh = std::max(maxKh, b.kernelH);
      rowsPerThread.clear();
      for (int p = 1; p <= std::min(8, maxKh); ++p)
        rowsPerThread.push_back(p);
    }
    const int64_t outRows = spec.outHeight(h), outCols = spec.outWidth(w);
    for (int threads : {128, 256, 512})
      for (int split : splits)
        for (int th : {1, 2, 4, 8, 16})
          for (int tw : {8, 16, 32, 64})
            for (int p : rowsPerThread) {
              if (threads > maxThreads || !fitsImage(tw, outCols, 8) || !fitsImage(th, outRows, 1))
                continue;
              // More splits than dy tiles leave blocks without work.
              if (split > 1 && split > workload.batch * ceilDiv(outRows, th) * ceilDiv(outCols, tw))
                continue;
              Schedule s = base;
              s.weightThreads = threads;
              s.weightSplit = split;
              s.weightTileH = th;
              s.weightTileW = tw;
              s.weightRowsPerThread = p;
              proposals.push_back(s);
            }
  }

  std::vector<GpuCandidate> legal;
  for (size_t i = 0; i < proposals.size(); ++i) {
    if (progress && (i % 64 == 0))
      progress(i, proposals.size());
    spec.schedule = proposals[i];
    if (!spec.schedule.validate().empty())
      continue;
    const int64_t bound =
        part == SchedulePart::Conv ? convSharedLowerBound(spec) : weightSharedLowerBound(spec);
    if (bound > sharedLimit)
      continue;
    GpuCandidate c;
    try {
      c = describeSchedule(spec);
    } catch (const std::invalid_argument &) {
      continue; // the emitter's shared-memory check
    }
    if (!checkFits(c, device).empty())
      continue;
    legal.push_back(c);
  }
  if (progress)
    progress(proposals.size(), proposals.size());
  return legal;
}

std::vector<GpuCandidate> gpuScheduleSpace(const KernelSpec &spec, const Workload &workload,
                                           const GpuDevice &device, KernelKind kind) {
  const Schedule base = codegen::defaultSchedule(spec, spec.anySparse() ? workload.density : -1.0);
  return gpuScheduleSpace(spec, workload, device, partOf(kind), base);
}

} // namespace slak::autotune

#include "autotune/ScheduleSpace.h"

#include "codegen/DefaultSchedule.h"

#include <algorithm>
#include <set>
#include <stdexcept>

namespace slak::autotune {
namespace {

using codegen::Schedule;

int64_t ceilDiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

} // namespace

const char *schedulePartName(SchedulePart part) {
  return part == SchedulePart::Conv ? "conv" : "weight";
}

SchedulePart partOf(KernelKind kind) {
  return kind == KernelKind::Forward || kind == KernelKind::BackwardData ? SchedulePart::Conv
                                                                         : SchedulePart::Weight;
}

GpuCandidate describeSchedule(const KernelSpec &spec) {
  GpuCandidate c;
  c.schedule = spec.schedule;
  c.plan = codegen::planKernels(spec);
  if (std::string err = c.plan.sharedMemoryError(); !err.empty())
    throw std::invalid_argument("describeSchedule: " + err);
  c.threads = c.plan.threads;
  c.sharedBytes = c.plan.sharedBytes;
  c.registers = c.plan.registers;
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
    const bool blocked = codegen::planKernels(spec).weightGrad.blocked;
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
    GpuCandidate c;
    try {
      c = describeSchedule(spec);
    } catch (const std::invalid_argument &) {
      continue; // a kernel overflows the static shared-memory limit
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

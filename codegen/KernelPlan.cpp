#include "codegen/KernelPlan.h"

#include "codegen/EnumNames.h"

#include <algorithm>
#include <limits>
#include <sstream>
#include <stdexcept>

#include "codegen/BufferLayout.h"

namespace slak::codegen {
namespace {

int64_t ceilDiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

/// Grows `halo` to cover a window of kh x kw taps with padding ph x pw.
void include(Halo &halo, int kh, int kw, int ph, int pw) {
  halo.minRow = std::min(halo.minRow, -ph);
  halo.maxRow = std::max(halo.maxRow, kh - 1 - ph);
  halo.minCol = std::min(halo.minCol, -pw);
  halo.maxCol = std::max(halo.maxCol, kw - 1 - pw);
}

/// Smallest row stride >= cols for which the R-row thread blocks of one warp
/// (blockW < 32 puts several thread rows in a warp) read distinct
/// shared-memory banks.
int conflictFreeStride(const Schedule &s, int cols) {
  const int R = s.rowsPerThread(), BW = s.blockW;
  const int warp = std::min(32, s.threadsPerBlock());
  int best = cols, bestDegree = 1 << 30;
  for (int stride = cols; stride < cols + 32; ++stride) {
    int perBank[32] = {0};
    int degree = 0;
    for (int lane = 0; lane < warp; ++lane) {
      const int bank = ((lane / BW) * R * stride + lane % BW) % 32;
      degree = std::max(degree, ++perBank[bank]);
    }
    if (degree < bestDegree) {
      bestDegree = degree;
      best = stride;
    }
    if (degree == 1 || BW >= 32)
      break;
  }
  return best;
}

ConvPassPlan planConvPass(const KernelSpec &spec, KernelKind kind, int lanes) {
  const Schedule &s = spec.schedule;
  const bool bwd = kind == KernelKind::BackwardData;
  const bool nhwc = spec.channelsLast();
  const int numBranches = static_cast<int>(spec.branches.size());
  ConvPassPlan plan;
  plan.kind = kind;
  plan.threads = s.threadsPerBlock();
  plan.lanes = lanes;
  plan.pixelCols = s.tileW / lanes;
  plan.colThreads = s.blockW / lanes;
  for (int b = 0; b < numBranches; ++b) {
    const Branch &br = spec.branches[b];
    PassBranch pb;
    pb.index = b;
    pb.kh = br.kernelH;
    pb.kw = br.kernelW;
    pb.ph = bwd ? br.kernelH - 1 - br.padH : br.padH;
    pb.pw = bwd ? br.kernelW - 1 - br.padW : br.padW;
    pb.flip = bwd;
    pb.table = !br.dense;
    pb.masked = pb.table && s.maskedWalk && s.stageInput && s.stageTaps;
    if (pb.masked)
      pb.table = false;
    pb.weightBase = weightOffset(spec, b);
    if (nhwc) {
      // Each branch restages its weights [window][lanes]; a table branch
      // reads its taps and weights from global memory, per lane.
      if (!pb.table)
        plan.stagedWeights = std::max(plan.stagedWeights, lanes * br.windowSize());
    } else {
      pb.wsOffset = plan.stagedWeights;
      pb.toffOffset = plan.stagedOffsets;
      plan.stagedWeights += br.windowSize();
      if (pb.table)
        plan.stagedOffsets += br.windowSize();
    }
    plan.branches.push_back(pb);
  }
  // NCHW forward reads x once for all branches; backward-data with
  // per-branch outputs reads one dy per branch. NHWC stages one branch at a
  // time: a union halo of lanes channels would not fit.
  if (nhwc || (bwd && spec.perBranchOutputs)) {
    for (int b = 0; b < numBranches; ++b) {
      InputGroup g;
      g.branches = {b};
      g.dyBranch = bwd && spec.perBranchOutputs ? b : -1;
      plan.groups.push_back(g);
    }
  } else {
    InputGroup g;
    for (int b = 0; b < numBranches; ++b)
      g.branches.push_back(b);
    plan.groups.push_back(g);
  }
  for (InputGroup &g : plan.groups) {
    for (int i : g.branches) {
      const PassBranch &pb = plan.branches[i];
      include(g.halo, pb.kh, pb.kw, pb.ph, pb.pw);
    }
    g.rows = s.tileH + g.halo.rows();
    g.cols = plan.pixelCols + g.halo.cols();
    g.stride = nhwc ? g.cols * lanes : conflictFreeStride(s, g.cols);
    for (int i : g.branches) {
      plan.branches[i].rowBase = -plan.branches[i].ph - g.halo.minRow;
      plan.branches[i].colBase = -plan.branches[i].pw - g.halo.minCol;
    }
    plan.stagedInput = std::max(plan.stagedInput, g.rows * g.stride);
  }
  if (s.stageInput)
    plan.sharedBytes += 4LL * plan.stagedInput;
  if (s.stageTaps)
    plan.sharedBytes += 4LL * (plan.stagedWeights + plan.stagedOffsets);
  std::ostringstream use;
  if (s.stageInput) {
    use << "input tile " << plan.groups[0].rows << "x" << plan.groups[0].cols;
    if (nhwc)
      use << "x" << lanes << " channels";
    use << " + ";
  }
  if (s.stageTaps)
    use << plan.stagedWeights << " staged weights and " << plan.stagedOffsets << " tap offsets";
  else
    use << "no staged taps";
  plan.sharedUse = use.str();
  return plan;
}

WeightGradPlan planWeightGrad(const KernelSpec &spec, int lanes) {
  const Schedule &s = spec.schedule;
  const int TH = s.weightTileH, TW = s.weightTileW;
  const bool nhwc = spec.channelsLast();
  WeightGradPlan plan;
  plan.threads = s.weightThreads;
  plan.channelLanes = lanes;
  plan.channelThreads = s.weightThreads / lanes;
  const int threads = plan.channelThreads;
  plan.blocked = true;
  for (const Branch &b : spec.branches)
    plan.blocked = plan.blocked && (b.dense || spec.denseWeightGrad || s.maskedWalk);
  plan.tapsPerThread = plan.blocked ? s.weightRowsPerThread : 1;
  const int P = plan.tapsPerThread;
  for (const Branch &b : spec.branches) {
    include(plan.halo, b.kernelH, b.kernelW, b.padH, b.padW);
    plan.windowOffsets.push_back(plan.windowTaps);
    plan.windowTaps += b.windowSize();
    plan.tapBlocks += (b.kernelH + P - 1) / P * b.kernelW;
    plan.needLive = plan.needLive || (!b.dense && !spec.denseWeightGrad);
  }
  plan.numDy = spec.perBranchOutputs ? static_cast<int>(spec.branches.size()) : 1;
  const int perTap = plan.perTapDy() ? 1 : 0;
  // Blocked: P - 1 extra rows, where the padding rows of a window's last tap
  // block read (their sums are dropped).
  plan.tileRows = TH + plan.halo.rows() + (plan.blocked ? P - 1 : 0);
  plan.tileCols = TW + plan.halo.cols();
  plan.xElements = plan.tileRows * plan.tileCols;
  plan.dyElements = plan.numDy * TH * TW;
  // NHWC reads the tiles from global memory; shared memory holds no tile.
  const int staged = nhwc ? 0 : plan.xElements + plan.dyElements;
  std::ostringstream use;
  if (nhwc)
    use << lanes << " channels, unstaged " << TH << "x" << TW << " dy tiles";
  else
    use << "x tile " << plan.tileRows << "x" << plan.tileCols << ", " << plan.numDy
        << " dy tile(s) " << TH << "x" << TW;
  if (plan.blocked) {
    plan.lanes = 1;
    while (plan.lanes < plan.tapBlocks && plan.lanes < threads)
      plan.lanes *= 2;
    plan.slots = (plan.tapBlocks + plan.lanes - 1) / plan.lanes;
    plan.pixelGroups = threads / plan.lanes;
    plan.reductionElements = plan.pixelGroups * plan.windowTaps;
    plan.smElements = std::max(staged, lanes * plan.reductionElements);
    // Per tap block: x offset, window position, rows, row stride (and dy).
    plan.sharedBytes = 4LL * plan.smElements + 4LL * plan.tapBlocks * (4 + perTap) +
                       (plan.needLive ? 4LL * lanes * plan.windowTaps : 0);
    use << ", " << plan.tapBlocks << " tap blocks and a " << lanes * plan.pixelGroups << "x"
        << plan.windowTaps << " reduction";
  } else {
    plan.tapBlocks = 0;
    plan.slots = (plan.windowTaps + threads - 1) / threads;
    plan.reductionElements = threads * plan.slots;
    plan.smElements = std::max(staged, lanes * (plan.reductionElements + plan.windowTaps));
    // Per tap (and lane): x offset and window position (and dy).
    plan.sharedBytes = 4LL * plan.smElements + 4LL * lanes * plan.windowTaps * (2 + perTap);
    use << " and " << plan.windowTaps << " taps";
  }
  plan.sharedUse = use.str();
  return plan;
}

int registersFor(const KernelSpec &spec, const WeightGradPlan &weight, KernelKind kind) {
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
  // NHWC keeps each slot's tile row and column apart for its global reads
  // (and, in the tap-table form, their addresses and per-branch dy bases).
  const bool nhwc = spec.channelsLast();
  if (weight.blocked)
    return 56 + weight.slots *
                    (3 * weight.tapsPerThread + (spec.perBranchOutputs ? 5 : 4) + (nhwc ? 2 : 0));
  return 60 + weight.slots * (nhwc ? (spec.perBranchOutputs ? 14 : 12) : 6);
}

/// Powers of two from min(32, channels rounded up) down to 1: the channel
/// lanes an NHWC kernel may take.
std::vector<int> laneCandidates(const KernelSpec &spec) {
  int top = 1;
  while (top < 32 && top < spec.channels)
    top *= 2;
  std::vector<int> lanes;
  for (int l = top; l >= 1; l /= 2)
    lanes.push_back(l);
  return lanes;
}

std::string sharedError(const char *kernel, int64_t bytes, const std::string &what,
                        const char *fix) {
  std::ostringstream os;
  os << "the " << kernel << " kernel needs " << bytes << " bytes of shared memory (" << what
     << "), more than " << kMaxSharedBytes << "; " << fix;
  return os.str();
}

/// The grid of `kind` is the product of these: planes and tiles for the conv
/// passes, (channel, split) pairs for backward-weight, dW elements for the
/// reduction.
std::vector<int64_t> gridFactors(const KernelSpec &spec, KernelKind kind, int64_t n, int64_t h,
                                 int64_t w) {
  const Schedule &s = spec.schedule;
  const int lanes = kind == KernelKind::Forward || kind == KernelKind::BackwardData
                        ? convLanes(spec)
                        : weightLanes(spec);
  const int64_t channelGroups = ceilDiv(spec.channels, lanes), cols = s.tileW / lanes;
  switch (kind) {
  case KernelKind::Forward:
    return {n, channelGroups, ceilDiv(spec.outHeight(h), s.tileH), ceilDiv(spec.outWidth(w), cols)};
  case KernelKind::BackwardData:
    return {n, channelGroups, ceilDiv(h, s.tileH), ceilDiv(w, cols)};
  case KernelKind::BackwardWeight:
    return {channelGroups, s.weightSplit};
  case KernelKind::BackwardWeightReduce:
    return {ceilDiv(weightCount(spec), s.weightThreads)};
  }
  return {0};
}

} // namespace

int convLanes(const KernelSpec &spec) {
  if (!spec.channelsLast())
    return 1;
  const Schedule &s = spec.schedule;
  for (int lanes : laneCandidates(spec)) {
    if (s.blockW % lanes != 0 || s.tileW % lanes != 0)
      continue;
    if (planConvPass(spec, KernelKind::Forward, lanes).sharedBytes <= kMaxSharedBytes &&
        planConvPass(spec, KernelKind::BackwardData, lanes).sharedBytes <= kMaxSharedBytes)
      return lanes;
  }
  return 1;
}

int weightLanes(const KernelSpec &spec) {
  if (!spec.channelsLast())
    return 1;
  const int threads = spec.schedule.weightThreads;
  for (int lanes : laneCandidates(spec)) {
    if (threads % lanes != 0)
      continue;
    const WeightGradPlan plan = planWeightGrad(spec, lanes);
    // Fewer threads per channel hold more tap slots each; the global reads
    // take a few more address registers than the staged NCHW walk.
    if (plan.sharedBytes <= kMaxSharedBytes &&
        registersFor(spec, plan, KernelKind::BackwardWeight) <= registerBudget(threads) - 8)
      return lanes;
  }
  return 1;
}

namespace {
constexpr Named<KernelKind> kKindNames[] = {
    {"forward", KernelKind::Forward},
    {"backward-data", KernelKind::BackwardData},
    {"backward-weight", KernelKind::BackwardWeight},
    {"backward-weight-reduce", KernelKind::BackwardWeightReduce}};
} // namespace

const char *kernelKindName(KernelKind kind) { return nameOf(kKindNames, kind); }

int ConvPassPlan::groupOf(int branch) const {
  for (size_t g = 0; g < groups.size(); ++g)
    for (int b : groups[g].branches)
      if (b == branch)
        return static_cast<int>(g);
  return 0;
}

bool KernelPlan::convFits() const {
  return forward.sharedBytes <= kMaxSharedBytes && backwardData.sharedBytes <= kMaxSharedBytes;
}

bool KernelPlan::weightGradFits() const { return weightGrad.sharedBytes <= kMaxSharedBytes; }

std::string KernelPlan::sharedMemoryError() const {
  const char *convFix = "lower schedule tileH/tileW, or set stageInput/stageTaps to false";
  for (const ConvPassPlan *pass : {&forward, &backwardData})
    if (pass->sharedBytes > kMaxSharedBytes)
      return sharedError(kernelKindName(pass->kind), pass->sharedBytes, pass->sharedUse, convFix);
  if (!weightGradFits())
    return sharedError(kernelKindName(KernelKind::BackwardWeight), weightGrad.sharedBytes,
                       weightGrad.sharedUse, "lower schedule weightTileH/weightTileW");
  return {};
}

LaunchGeometry KernelPlan::geometry(KernelKind kind, int64_t n, int64_t h, int64_t w) const {
  const int k = static_cast<int>(kind);
  return {launchBlocks(spec, kind, n, h, w, "KernelPlan::geometry"), threads[k], sharedBytes[k]};
}

KernelPlan planKernels(const KernelSpec &spec) {
  if (std::string err = spec.validate(); !err.empty())
    throw std::invalid_argument("planKernels: invalid spec: " + err);
  KernelPlan plan;
  plan.spec = spec;
  const int lanes = convLanes(spec);
  plan.forward = planConvPass(spec, KernelKind::Forward, lanes);
  plan.backwardData = planConvPass(spec, KernelKind::BackwardData, lanes);
  plan.weightGrad = planWeightGrad(spec, weightLanes(spec));
  plan.threads = {plan.forward.threads, plan.backwardData.threads, plan.weightGrad.threads,
                  spec.schedule.weightThreads};
  plan.sharedBytes = {plan.forward.sharedBytes, plan.backwardData.sharedBytes,
                      plan.weightGrad.sharedBytes, 0};
  for (int k = 0; k < kNumKernelKinds; ++k)
    plan.registers[k] = registersFor(spec, plan.weightGrad, static_cast<KernelKind>(k));
  return plan;
}

int64_t launchBlocks(const KernelSpec &spec, KernelKind kind, int64_t n, int64_t h, int64_t w,
                     const char *caller) {
  auto fail = [&](const std::string &what) {
    throw std::invalid_argument(std::string(caller) + ": " + what);
  };
  if (n <= 0)
    fail("batch is " + std::to_string(n) + ", expected a positive count");
  if (h <= 0 || w <= 0)
    fail("input is " + std::to_string(h) + "x" + std::to_string(w) + ", expected positive sizes");
  if (spec.height > 0 && h != spec.height)
    fail("input height is " + std::to_string(h) + " but the spec is static with height " +
         std::to_string(spec.height));
  if (spec.width > 0 && w != spec.width)
    fail("input width is " + std::to_string(w) + " but the spec is static with width " +
         std::to_string(spec.width));
  const int64_t ho = spec.outHeight(h), wo = spec.outWidth(w);
  if (ho <= 0 || wo <= 0)
    fail("input " + std::to_string(h) + "x" + std::to_string(w) + " gives an empty output");
  // The kernels read their block index as an int (and CUDA's grid is at
  // most 2^31 - 1 blocks wide); the product must not overflow either.
  constexpr int64_t kMaxBlocks = std::numeric_limits<int32_t>::max();
  int64_t product = 1;
  for (int64_t f : gridFactors(spec, kind, n, h, w))
    if (__builtin_mul_overflow(product, f, &product) || product > kMaxBlocks) {
      std::ostringstream os;
      os << "the " << kernelKindName(kind) << " kernel needs more than " << kMaxBlocks
         << " blocks for a batch of " << n << " " << h << "x" << w << " images with "
         << spec.channels << " channels (schedule " << spec.schedule.str()
         << "); split the batch or use larger tiles";
      fail(os.str());
    }
  return product;
}

int64_t gridBlocks(const KernelSpec &spec, KernelKind kind, int64_t n, int64_t h, int64_t w) {
  int64_t product = 1;
  for (int64_t f : gridFactors(spec, kind, n, h, w))
    product *= f;
  return product;
}

int launchMinBlocks(int threads) {
  const int lanes = (threads + 31) / 32 * 32;
  return std::max(1, 65536 / (lanes * 128));
}

int registerBudget(int threads) {
  const int lanes = (threads + 31) / 32 * 32;
  return std::min(255, 65536 / (launchMinBlocks(threads) * lanes) / 8 * 8);
}

int estimateRegisters(const KernelSpec &spec, KernelKind kind) {
  return planKernels(spec).registers[static_cast<int>(kind)];
}

} // namespace slak::codegen

// KernelPlan: how the emitted kernels of one KernelSpec use the GPU, decided
// once and without kernel text: the staged tiles and their halos, the
// shared-memory layout and bytes, which backward-weight kernel runs (blocked
// or tap table), threads, launch grids and the registers each thread is
// expected to need. The emitter writes its kernels from the plan; the
// schedule space, the GPU cost model, the default schedule, the package
// writer and the launchers read the same plan instead of working it out
// again.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "codegen/KernelSpec.h"

namespace slak::codegen {

enum class KernelKind { Forward, BackwardData, BackwardWeight, BackwardWeightReduce };
constexpr int kNumKernelKinds = 4;
const char *kernelKindName(KernelKind kind); // "forward", ...

/// Static shared memory one block may use (CUDA's static limit).
constexpr int64_t kMaxSharedBytes = 48 * 1024;

struct LaunchGeometry {
  int64_t blocks = 0;      // CUDA gridDim.x; OpenCL global size = blocks * threads
  int threads = 0;         // CUDA blockDim.x; OpenCL local size
  int64_t sharedBytes = 0; // static shared (__local) memory per block
};

/// Where a staged input tile reaches relative to its output tile: window
/// rows minRow..maxRow and columns minCol..maxCol around each output.
struct Halo {
  int minRow = 0, maxRow = 0, minCol = 0, maxCol = 0;
  int rows() const { return maxRow - minRow; }
  int cols() const { return maxCol - minCol; }
};

/// A branch as one conv pass sees it: backward-data is a forward
/// correlation over dy with the window flipped and padding kernel - 1 - pad.
struct PassBranch {
  int index = 0;
  int kh = 1, kw = 1;
  int ph = 0, pw = 0; // padding of this pass
  bool flip = false;
  bool table = false;  // walks the tap table
  bool masked = false; // sparse, but walks the window over zero-filled weights
  int64_t weightBase = 0;
  int wsOffset = 0;             // into the staged weights (stageTaps)
  int toffOffset = 0;           // into the staged tap offsets (stageTaps and table)
  int rowBase = 0, colBase = 0; // staged row/col of tap (0, 0) for output (0, 0)
};

/// Branches of a conv pass that read the same staged input (x, or one dy).
struct InputGroup {
  std::vector<int> branches; // indices into ConvPassPlan::branches
  int dyBranch = -1;         // per-branch dy: which one; -1 = the only input
  Halo halo;
  int rows = 0, cols = 0; // staged tile size
  int stride = 0; // row stride in shared memory: cols padded against bank conflicts (NCHW), or
                  // cols * lanes (NHWC)
};

/// Forward or backward-data: one block per (plane, tileH x tileW output tile).
/// NHWC: one block per (image, group of `lanes` channels, tileH x pixelCols
/// output tile); thread t works on channel lane t % lanes (the fastest
/// thread dimension, so global loads and stores coalesce across channels)
/// and pixel thread t / lanes, laid out blockH x (blockW / lanes) with the
/// schedule's register block; pixelCols = tileW / lanes. Every branch is its
/// own input group (its own halo), staged with channels innermost together
/// with the group's weights [window][lanes].
struct ConvPassPlan {
  KernelKind kind = KernelKind::Forward;
  int lanes = 1;      // channels per block (NCHW: 1)
  int pixelCols = 0;  // output tile width in pixels: tileW / lanes
  int colThreads = 0; // pixel threads along a tile row: blockW / lanes
  std::vector<PassBranch> branches;
  std::vector<InputGroup> groups;
  int stagedInput = 1;   // floats of the largest staged input tile
  int stagedWeights = 0; // floats of the staged weights of all branches (NHWC: lanes x the
                         // largest window, restaged per branch)
  int stagedOffsets = 0; // ints of the staged tap offsets of table branches
  int threads = 0;
  int64_t sharedBytes = 0;
  std::string sharedUse; // what the shared memory holds, for messages

  int groupOf(int branch) const;
};

/// Backward-weight phase 1: one block per (channel, split), walking its share
/// of the N*Ho*Wo dy tiles. Blocked when every branch computes its whole
/// window (dense, denseWeightGrad or maskedWalk): threads own blocks of
/// tapsPerThread vertically adjacent taps. Otherwise threads own live taps
/// of the table and the lanes per tap are chosen at run time.
///
/// NHWC: one block per (group of `channelLanes` channels, split); thread t
/// works on channel lane t % channelLanes with channelThreads per channel (the
/// plan's counts below are per channel), reading x and dy from global memory
/// coalesced across channels; shared memory holds the tap bookkeeping and
/// the fixed-order reduction of every lane.
struct WeightGradPlan {
  bool blocked = false;
  int channelLanes = 1;           // channels per block (NCHW: 1)
  int channelThreads = 0;         // threads per channel: threads / lanes
  Halo halo;                      // union window of all branches (forward padding)
  int tapsPerThread = 1;          // P: weightRowsPerThread when blocked, else 1
  int windowTaps = 0;             // all branches' windows together
  std::vector<int> windowOffsets; // each branch's first position in them
  int tapBlocks = 0;              // blocked: tap blocks of all branches
  int lanes = 0;                  // blocked: threads sharing the tap blocks
  int slots = 0;                  // tap blocks (or taps) per thread
  int pixelGroups = 0;            // blocked: threads / lanes
  int numDy = 1;                  // staged dy tiles (one per branch with per-branch outputs)
  int tileRows = 0, tileCols = 0; // staged x tile (tile + halo, + P - 1 rows when blocked)
  int xElements = 0, dyElements = 0, reductionElements = 0, smElements = 0;
  bool needLive = false; // blocked with sparse branches: dead taps zeroed at the end
  int threads = 0;
  int64_t sharedBytes = 0;
  std::string sharedUse;

  bool perTapDy() const { return numDy > 1; }
};

struct KernelPlan {
  KernelSpec spec;
  ConvPassPlan forward, backwardData;
  WeightGradPlan weightGrad;
  std::array<int, kNumKernelKinds> threads{};
  std::array<int64_t, kNumKernelKinds> sharedBytes{};
  /// Estimated registers per thread (see estimateRegisters).
  std::array<int, kNumKernelKinds> registers{};

  const ConvPassPlan &pass(KernelKind kind) const {
    return kind == KernelKind::BackwardData ? backwardData : forward;
  }
  /// Forward and backward-data fit kMaxSharedBytes.
  bool convFits() const;
  /// Backward-weight fits kMaxSharedBytes.
  bool weightGradFits() const;
  /// Empty when every kernel fits kMaxSharedBytes, else the first kernel that
  /// does not, its bytes, what they hold and the schedule fields to lower.
  std::string sharedMemoryError() const;
  /// Launch geometry of `kind` for a batch-n input of h x w (see launchBlocks).
  LaunchGeometry geometry(KernelKind kind, int64_t n, int64_t h, int64_t w) const;
};

/// The plan of `spec` with its schedule. Throws std::invalid_argument when the
/// spec is illegal (spec.validate()); a plan whose kernels overflow shared
/// memory is returned (see KernelPlan::sharedMemoryError).
KernelPlan planKernels(const KernelSpec &spec);

/// Blocks of the 1-D grid of `kind` for a batch-n input of h x w (h, w must
/// match a static spec). Only the schedule's tiles, split and weightThreads
/// are read. Throws std::invalid_argument, prefixed with `caller`, naming the
/// bad value or a grid past 2^31 - 1 blocks.
int64_t launchBlocks(const KernelSpec &spec, KernelKind kind, int64_t n, int64_t h, int64_t w,
                     const char *caller);

/// The same count without the checks, for any size (a cost model's count;
/// it may exceed what launchBlocks accepts).
int64_t gridBlocks(const KernelSpec &spec, KernelKind kind, int64_t n, int64_t h, int64_t w);

/// Channels per block of the conv passes (forward and backward-data) and of
/// backward-weight phase 1: 1 for NCHW; for NHWC the most (a power of two,
/// at most 32 and the channel count rounded up) whose kernels fit shared
/// memory and the register budget.
int convLanes(const KernelSpec &spec);
int weightLanes(const KernelSpec &spec);

/// Blocks per SM promised to ptxas in the emitted __launch_bounds__: a budget
/// of 128 registers per thread (allocated per warp of 32). Given the thread
/// count alone, ptxas sizes registers for the occupancy the shared memory
/// allows, and spills.
int launchMinBlocks(int threads);
/// Registers per thread the launch bounds leave for a block of `threads`
/// (ptxas spills above it): 128, or 64 at 1024 threads.
int registerBudget(int threads);
/// Registers per thread a kernel of `spec` (with its schedule) is expected to
/// use: a base for addressing and unrolling plus the outputs (or tap blocks)
/// each thread holds; fitted to ptxas reports and meant to err high.
/// tests/autotune compiles the chosen schedules: no spills.
int estimateRegisters(const KernelSpec &spec, KernelKind kind);

} // namespace slak::codegen

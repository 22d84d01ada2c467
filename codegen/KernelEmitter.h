// KernelEmitter: CUDA / OpenCL kernel text for one KernelSpec, without MLIR.
// For a spec it emits four entry points (forward, backward-data and the two
// phases of backward-weight) as one backend-neutral body; emitPrelude(backend)
// in front of it makes it CUDA C++ or OpenCL C 1.2. Names are derived from
// spec.signature(), so bodies of several specs can share one file.
//
// Algorithm (DESIGN.md section 4): direct convolution. Forward and
// backward-data give each block one (n, c) plane tile of tileH x tileW
// outputs, stage the input tile plus the union halo of the branches in shared
// memory and keep rowsPerThread x colsPerThread outputs per thread in
// registers (thread (ty, tx) owns rows ty*R + r and columns tx + k*blockW).
// Dense branches loop over the window with a rotating register window of
// input rows (each loaded row feeds R outputs); sparse branches walk the
// channel's tap table, so skipped taps cost nothing (or, with
// schedule.maskedWalk, walk the window like dense ones and skip dead taps'
// FMAs). All branches share one pass over the input; backward-data is the
// same pass over dy with flipped taps. Backward-weight phase 1 gives each
// block one (channel, split) pair and a fixed share of the N*Ho*Wo dy tiles:
// when every branch computes its whole window (dense, denseWeightGrad or
// maskedWalk) threads own blocks of weightRowsPerThread vertically adjacent
// taps and reuse each loaded x value for all of them; otherwise threads own
// live taps of the table. Pixel groups are summed in a fixed order, and phase
// 2 sums the weightSplit partials in a fixed order: the same bits every run.
//
// The plan (codegen/KernelPlan.h) decides tiles, halos, shared memory and
// threads; this file and its parts (ConvPassEmitter, WeightGradEmitter)
// only write text from it. With spec.layout NHWC the same entry points read
// and write channels-last images: blocks take a group of channels on the
// fastest thread dimension (coalesced across channels), stage one branch's
// input tile + halo and weights with channels innermost, keep the same
// register blocks, and backward-weight reads x and dy from global memory
// (KernelPlan.h: ConvPassPlan, WeightGradPlan). Entry points (parameters:
// codegen/KernelArguments.h; buffer layouts: codegen/BufferLayout.h; T =
// element type; height/width are always the input (x) size, ignored when the
// spec is static):
//   <base>_fwd(const T *x, const T *wt, const int *tapOffsets, const int *taps,
//              const T *bias, T *y, int batch, int height, int width)
//   <base>_bwd_data(const T *dy, const T *wt, const int *tapOffsets,
//                   const int *taps, T *dx, int batch, int height, int width)
//   <base>_bwd_weight(const T *x, const T *dy, const int *tapOffsets,
//                     const int *taps, float *workspace, int batch, int height,
//                     int width)
//   <base>_bwd_weight_reduce(const float *workspace, T *dw)
// Unused pointers (bias without hasBias, the tap table of an all-dense spec)
// may be any valid buffer. Every launch is a 1-D grid of 1-D blocks.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "codegen/KernelPlan.h"
#include "codegen/KernelSpec.h"
#include "codegen/Prelude.h"

namespace slak::codegen {

struct EmittedKernels {
  KernelSpec spec;
  /// Backend-neutral kernel text; needs emitPrelude(backend) before it.
  std::string body;
  std::array<std::string, kNumKernelKinds> names;
  /// The plan's threads and shared bytes (as recorded, for a package read
  /// back).
  std::array<int, kNumKernelKinds> threads{};
  std::array<int64_t, kNumKernelKinds> sharedBytes{};

  const std::string &name(KernelKind kind) const { return names[static_cast<int>(kind)]; }
  /// Launch geometry for a batch-n input of h x w (h, w must match a static
  /// spec): the grid from launchBlocks, threads and shared bytes from above.
  /// Throws std::invalid_argument naming the bad value.
  LaunchGeometry geometry(KernelKind kind, int64_t n, int64_t h, int64_t w) const;
};

/// "slak_lk_<16 hex digits of a hash of spec.signature()>", with "nhwc_"
/// before the digits for channels-last specs.
std::string kernelBaseName(const KernelSpec &spec);

/// Emits the kernels of `spec`. Throws std::invalid_argument when the spec is
/// illegal (spec.validate()) or a kernel would need more than kMaxSharedBytes
/// of shared memory (the message names the schedule fields to lower).
EmittedKernels emitKernels(const KernelSpec &spec);

/// A whole translation unit: the prelude, then each distinct body once.
std::string assembleSource(GpuLanguage language, const std::vector<EmittedKernels> &layers);

} // namespace slak::codegen

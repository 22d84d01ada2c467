// Schedule: how the kernels of one layer are laid out on a GPU, and its
// field table (ScheduleFields.h), from which the schedule text, the
// #slak.schedule attribute, the kernel package's JSON and validate() come.
// Any legal schedule gives correct results; only speed depends on it.
#pragma once

#include "codegen/ScheduleFields.h"

#include <string>

namespace slak::codegen {

struct Schedule;

/// The fields of Schedule, in the order of its text and attribute. A new
/// field is a member of Schedule plus a row here (Schedule.cpp);
/// #slak.schedule, the text and the package follow.
const ScheduleTable<Schedule> &scheduleFields();

struct Schedule {
  // Forward / backward-data: one block computes a tileH x tileW output tile
  // of one (n, c) plane with blockH x blockW threads; each thread keeps
  // (tileH / blockH) x (tileW / blockW) outputs in registers.
  int tileH = 16;
  int tileW = 32;
  int blockH = 4;
  int blockW = 32;
  /// Stage the input tile plus halo in shared (local) memory.
  bool stageInput = true;
  /// Stage the channel's taps and weights in shared memory.
  bool stageTaps = true;
  /// Sparse branches walk their whole window like dense ones (rotating
  /// register rows) over a staged weight copy with zeros at dead taps, whose
  /// FMAs are skipped but whose input loads are not: faster than walking the
  /// tap table above ~30% density. Forward/backward-data need stageInput and
  /// stageTaps for it (they walk the table otherwise); backward-weight then
  /// computes the whole window blocked and zeroes the dead taps.
  bool maskedWalk = false;
  // Backward-weight: the N*H*W reduction for each (channel, tap) is split
  // into `weightSplit` partial sums (phase 1), reduced in a fixed order in
  // phase 2, so results are bit-identical run to run.
  int weightSplit = 8;
  int weightThreads = 256;
  // Backward-weight phase 1 walks its share of the N*Ho*Wo domain in
  // weightTileH x weightTileW tiles of dy (plus the x halo) staged in shared
  // memory.
  int weightTileH = 8;
  int weightTileW = 32;
  /// When every branch computes its whole window (dense, denseWeightGrad or
  /// maskedWalk), each thread owns this many vertically adjacent taps and
  /// reuses each loaded x value for all of them.
  int weightRowsPerThread = 8;

  int rowsPerThread() const { return tileH / blockH; }
  int colsPerThread() const { return tileW / blockW; }
  int threadsPerBlock() const { return blockH * blockW; }
  /// Empty when legal, otherwise a message naming the bad field, its value
  /// and the legal range.
  std::string validate() const;
  std::string str() const; // "tile=16x32 block=4x32 ..." for logs and keys
};

} // namespace slak::codegen

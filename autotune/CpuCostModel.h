// CpuCostModel: an analytic cost model of the CPU (Halide) pipelines
// (codegen/halide/ConvPipeline.h, WeightGradPipeline.h) for the CPU tuner.
//
// The conv pipelines (forward, backward-data) compute register
// tiles of tileRows x tileVectors vectors; each live tap that reaches a
// band of tile rows costs, per tile, tileRows x tileVectors unaligned vector
// loads (a 64-byte vector at a random float offset splits a cache line
// 15/16 of the time, a 32-byte one 7/16) and as many FMAs, plus a weight
// broadcast and loop control; one tap cannot take less than an FMA latency.
// With alignLoads no load splits, but every distinct tap alignment costs a
// shifted copy of the padded plane. Loads run at L1 speed while the rows a
// band of tiles (or a block of weight taps) touches, in every shifted copy,
// fit L1, and blend towards L2 speed beyond. Constants (2 FMAs and 2 loads
// of 256 bits per clock, 32 bytes per clock from L2, split costs) were set
// on this Zen 4 host; CpuDevice holds them.
// Taps per band come from the same TapPlan the pipelines use, so
// out-of-image taps, row trimming and sparsity are counted exactly. Tiles
// that overhang the image are computed in full; padded and transposed plane
// copies are charged per element. Backward-weight walks blocks of
// weightTaps taps over strips of weightVectors vectors: K x SV FMAs and
// SV + K x SV loads per strip and row, with each of the K accumulators a
// chain of SV dependent FMAs. Accumulators beyond the vector register file
// spill. Planes (forward, backward-data) or channels (backward-weight) are
// spread over the worker threads.
#pragma once

#include <memory>
#include <string>

#include "autotune/Device.h"
#include "autotune/Tuner.h"
#include "autotune/Workload.h"
#include "codegen/TapTable.h"
#include "codegen/halide/CpuSchedule.h"

namespace slak::autotune {

using codegen::cpu::CpuSchedule;

struct CpuPrediction {
  double ms = 0;
  double tapTileCycles = 0; // cycles per tap per register tile (conv) or strip (weight)
  double innerCycles = 0;   // all cycles in the tap loops, per thread
  double copyCycles = 0;    // padded / transposed plane copies, per thread
  double work = 0;          // vector FMAs executed (tiles x taps x vectors)
  const char *bound = "";   // "fma", "load", "issue", "latency"
  std::string str() const;
};

/// Predicts `kind` of `spec` with CPU schedule `schedule` on `cpu`, with the
/// live taps of `table` (sparse branches; may be null when all are dense).
/// Plans are cached inside `cache` per (pass, transposeWide, mergeTaps).
class CpuCostModel {
public:
  CpuCostModel(const KernelSpec &spec, const Workload &workload, const CpuDevice &cpu);
  ~CpuCostModel();
  CpuPrediction predict(const CpuSchedule &schedule, KernelKind kind);

private:
  struct Plans;
  KernelSpec spec_;
  Workload workload_;
  CpuDevice cpu_;
  codegen::TapTable table_;
  std::unique_ptr<Plans> plans_;
};

} // namespace slak::autotune

// CpuTuning: the CPU (Halide) backend's side of the autotuner: the space of
// legal codegen::cpu::CpuSchedule values, an analytic cost model of the
// Halide pipelines (codegen/halide/HalidePipelines.h) and a timer that runs
// them for real. Built only where the Halide backend is (target
// slak_halide); SLAK_AUTOTUNE_WITH_CPU is defined for users of slak_autotune then.
//
// Cost model. The conv pipelines (forward, backward-data) compute register
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

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "autotune/CpuScheduleLookup.h"
#include "autotune/Device.h"
#include "autotune/Measure.h"
#include "autotune/ScheduleSpace.h"
#include "autotune/Tuner.h"
#include "autotune/Workload.h"
#include "codegen/halide/CpuSchedule.h"

namespace slak::autotune {

using codegen::cpu::CpuSchedule;

/// The legal CPU schedules of `part` for `spec` on `cpu`, the other part's
/// fields taken from `base`. Conv: vector width 8/16 (16 needs AVX-512),
/// tile rows 1..8 and tall tiles of 10..28 rows x tile vectors 1..8 within
/// the vector registers, vertical tap blocks of 1..4 rows (tapBlock),
/// transposeWide where a branch is wider than tall, alignLoads, mergeTaps for
/// summed outputs. Weight: weightTaps 1..28 x weightVectors 1..8 (and
/// the coupled fields: vector width, transposeWide, alignLoads). Tiles
/// wider than twice the image are skipped.
std::vector<CpuSchedule> cpuScheduleSpace(const KernelSpec &spec, const Workload &workload,
                                          const CpuDevice &cpu, SchedulePart part,
                                          const CpuSchedule &base);

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

/// Runs the Halide pipelines of a spec (random data, random masks of the
/// workload's density) and times them.
class CpuKernelTimer {
public:
  explicit CpuKernelTimer(int threads = 0);
  ~CpuKernelTimer();
  CpuDevice device() const { return cpu_; }
  /// Times `kind` of `spec` with `schedule` on `workload`; the first call per
  /// schedule compiles the pipelines (not timed: warm-up).
  Timing time(const KernelSpec &spec, const CpuSchedule &schedule, const Workload &workload,
              KernelKind kind, const MeasureOptions &options);
  /// Sets of random input / output data made so far: one per (problem,
  /// workload) in a row; every call on the same one reuses it (only the last
  /// set is kept, so memory stays flat across layers).
  int dataSetsCreated() const { return dataSetsCreated_; }

private:
  struct Buffers;
  Buffers &buffers(const KernelSpec &spec, const Workload &workload);
  CpuDevice cpu_;
  std::string buffersKey_;
  std::unique_ptr<Buffers> buffers_;
  int dataSetsCreated_ = 0;
};

/// CPU tuning on the host: model only without a timer, measured with one.
/// The key's device is cpu.name (model name and thread count).
TuningResult tuneCpu(const KernelSpec &spec, const Workload &workload, const CpuDevice &cpu,
                     const TuneOptions &options, CpuKernelTimer *timer = nullptr);

} // namespace slak::autotune

#include "codegen/Schedule.h"

namespace slak::codegen {
namespace {

/// Outputs one thread may hold in registers; the tuner's space stays at 32,
/// a GPU thread has at most 255 registers.
constexpr int kMaxOutputsPerThread = 128;
constexpr int kMaxThreadsPerBlock = 1024;

std::string crossCheck(const ScheduleTable<Schedule> &table, const Schedule &s,
                       FieldSpelling spelling) {
  const std::string prefix = spelling == FieldSpelling::Ir ? table.irName : table.structName;
  const ScheduleField<Schedule> &tile = *table.find("tile"), &block = *table.find("block");
  for (int c = 0; c < 2; ++c)
    if (s.*tile.ints[c] % s.*block.ints[c] != 0)
      return prefix + " " + fieldText(tile, s, spelling, c) + " is not a multiple of " +
             fieldText(block, s, spelling, c) + "; each thread computes tile/block outputs";
  if (s.threadsPerBlock() > kMaxThreadsPerBlock)
    return prefix + " " + fieldText(block, s, spelling) + " has " +
           std::to_string(s.threadsPerBlock()) + " threads, at most " +
           std::to_string(kMaxThreadsPerBlock) + " are allowed per block";
  // Each thread holds its outputs in registers, and the emitter unrolls them:
  // 865536x8 tiles of 2x8 threads generated a 200 MB kernel source.
  if (static_cast<int64_t>(s.rowsPerThread()) * s.colsPerThread() > kMaxOutputsPerThread)
    return prefix + " " + fieldText(tile, s, spelling) + " and " + fieldText(block, s, spelling) +
           " give each thread " + std::to_string(s.rowsPerThread()) + "x" +
           std::to_string(s.colsPerThread()) + " outputs (tileH/blockH x tileW/blockW), at most " +
           std::to_string(kMaxOutputsPerThread) + " are allowed (they live in registers)";
  return {};
}

} // namespace

const ScheduleTable<Schedule> &scheduleFields() {
  using S = Schedule;
  const FieldRange positive{1, std::numeric_limits<int32_t>::max()};
  static const ScheduleTable<Schedule> table{
      "schedule",
      "GPU schedule",
      "#slak.schedule",
      {
          pairField("tile", "tile", &S::tileH, "tileH", &S::tileW, "tileW", positive,
                    "output tile of one block (forward, backward-data)", kRequiredInIr),
          pairField("block", "block", &S::blockH, "blockH", &S::blockW, "blockW",
                    FieldRange{1, kMaxThreadsPerBlock},
                    "threads of one block; each computes tile/block outputs", kRequiredInIr),
          flagField("stageInput", "stage_input", &S::stageInput, "stageInput",
                    "stage the input tile plus halo in shared memory"),
          flagField("stageTaps", "stage_taps", &S::stageTaps, "stageTaps",
                    "stage the channel's taps and weights in shared memory"),
          flagField("maskedWalk", "masked_walk", &S::maskedWalk, "maskedWalk",
                    "sparse branches walk their whole window, zeros at dead taps",
                    kOptionalInPackage),
          intField("weightSplit", "weight_split", &S::weightSplit, "weightSplit", positive,
                   "backward-weight partial sums per (channel, tap)"),
          intField("weightThreads", "weight_threads", &S::weightThreads, "weightThreads",
                   FieldRange{1, kMaxThreadsPerBlock, true}, "backward-weight threads per block"),
          pairField("weightTile", "weight_tile", &S::weightTileH, "weightTileH", &S::weightTileW,
                    "weightTileW", positive, "backward-weight dy tile staged in shared memory",
                    kOptionalInPackage),
          intField("weightRows", "weight_rows_per_thread", &S::weightRowsPerThread,
                   "weightRowsPerThread", FieldRange{1, 16},
                   "backward-weight taps per thread (registers grow with it)", kOptionalInPackage),
      },
      crossCheck,
  };
  return table;
}

std::string Schedule::validate() const { return validateSchedule(scheduleFields(), *this); }

std::string Schedule::str() const { return scheduleText(scheduleFields(), *this); }

} // namespace slak::codegen

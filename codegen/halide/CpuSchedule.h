// CpuSchedule: how the Halide CPU pipelines of one layer are laid out. It is
// the CPU counterpart of codegen::Schedule (which describes GPU tiles) and is
// what the autotuner searches over. Any legal CpuSchedule gives correct
// results; only speed depends on it. Sizes stay dynamic: one compiled pipeline
// serves every image size and channel count.
#pragma once

#include "codegen/KernelSpec.h"
#include "codegen/ScheduleFields.h"

#include <cstdint>
#include <string>

namespace slak::codegen::cpu {

/// A new field is a member here plus a row in cpuScheduleFields()
/// (CpuSchedule.cpp); the text, its reader and validate() follow.
struct CpuSchedule {
  /// Float lanes per vector: 8 (256-bit) or 16 (512-bit); 4 is allowed for
  /// very narrow images.
  int vectorWidth = 8;
  /// The vector axis. false: along the image width (one plane per task;
  /// fills vectors where rows are long). true: across channels, on planes
  /// held channel-block-interleaved inside the pipelines (each pixel one
  /// vector of vectorWidth channels, one block of channels per task): fills
  /// vectors on small images with many channels (SLaK stages 3-4, 14- and
  /// 7-pixel rows). With it a tile is tileRows x tileVectors pixels, and a
  /// backward-weight strip is weightVectors pixels; alignLoads has no effect
  /// (every pixel load is aligned). The pipelines read and write NCHW or
  /// NHWC memory either way.
  bool channelsLast = false;
  // Forward / backward-data: every output plane is computed in register tiles
  // of tileRows x (tileVectors * vectorWidth) outputs; each live tap adds one
  // broadcast weight times one loaded input vector to every vector of the tile.
  int tileRows = 4;
  int tileVectors = 7;
  /// Compute wide branches (kernelW > kernelH, e.g. 5x51) on transposed
  /// planes, so that their long axis runs along rows like the tall ones and
  /// the per-tile tap range trims out-of-image taps.
  bool transposeWide = true;
  /// Forward / backward-data: walk each channel's taps in vertical blocks of
  /// this many rows of one column (dead rows of a block get weight 0). A
  /// block loads tileRows + tapBlock - 1 input rows per tile vector and
  /// feeds each to up to tapBlock taps, instead of one load per tap and
  /// row: fewer loads for more FMAs, a trade that pays where the tap loop is
  /// bound by loads (split cache lines) rather than FMAs. 1: one tap at a time.
  int tapBlock = 1;
  /// Summed outputs: fold taps of different branches that land on the same
  /// window offset into one (the 5x5 branch inside 51x5), one FMA instead of two.
  bool mergeTaps = true;
  /// Keep shifted copies of each padded input plane so that every tap's
  /// vector loads are aligned (a load straddling two cache lines costs about
  /// two). Pays off on large planes; tiny ones spend more on the copies.
  bool alignLoads = true;
  // Backward-weight: the dW of `weightTaps` taps is accumulated at once in
  // vector registers, reading dy in strips of `weightVectors` vectors that
  // stay in registers while the taps walk over them.
  int weightTaps = 12;
  int weightVectors = 4;

  int tileWidth() const { return tileVectors * vectorWidth; }
  int weightStripWidth() const { return weightVectors * vectorWidth; }
  /// Empty when legal, otherwise a message naming the bad field, its value
  /// and the legal range.
  std::string validate() const;
  /// "vec=8 tile=4x7 transposeWide=1 mergeTaps=1 alignLoads=1 wtaps=8 wvec=4"
  /// (plus " tapBlock=P" when P > 1 and " channelsLast=1" when set): logs,
  /// cache keys, the tuning database.
  std::string str() const;
  bool operator==(const CpuSchedule &other) const { return str() == other.str(); }
};

/// The fields of CpuSchedule, in the order of its text.
const ScheduleTable<CpuSchedule> &cpuScheduleFields();

/// A good schedule for `spec` on images of about height x width (the spec's
/// own sizes when they are static, else these). Small images with many
/// channels (rows shorter than 64 pixels, at least 32 channels) vectorise
/// across channels with 16 lanes; otherwise the tile spans the image width
/// when that fits the register file. Wide branches are transposed unless a
/// channels-last tile spans the whole row.
CpuSchedule defaultCpuSchedule(const KernelSpec &spec, int64_t height, int64_t width);
/// The same for a host whose vectors hold `hostFloats` floats (16 with
/// AVX-512, 8 with AVX2): narrower hosts get 8-lane channels-last tiles of
/// one row (their 16 vector registers hold no more).
CpuSchedule defaultCpuSchedule(const KernelSpec &spec, int64_t height, int64_t width,
                               int hostFloats);
/// Floats per vector register of this CPU: 16 (AVX-512F), 8 (other x86-64),
/// 4 elsewhere.
int hostVectorFloats();

} // namespace slak::codegen::cpu

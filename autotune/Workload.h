// Workload: the problem a schedule is tuned for beyond the KernelSpec itself
// (batch, image size of a dynamic spec, mask density), the random masks the
// measurements run with, the database key of a spec, and the `--layer`
// description of one layer for users without an MLIR file.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "codegen/KernelEmitter.h"
#include "codegen/KernelSpec.h"
#include "codegen/TapTable.h"

namespace slak::autotune {

using codegen::KernelKind;
using codegen::KernelSpec;

/// The kinds a tuning can target: forward, backward-data, backward-weight
/// (backward-weight includes its reduction phase).
constexpr std::array<KernelKind, 3> kTunedKinds = {KernelKind::Forward, KernelKind::BackwardData,
                                                   KernelKind::BackwardWeight};
int kindIndex(KernelKind kind); // 0, 1, 2 for the tuned kinds
/// "forward", "backward-data", "backward-weight"; also "fwd", "bwd-data", "bwd-weight".
KernelKind parseKernelKind(const std::string &text);
/// A comma list of kinds, or "all"/"train" (all three) or "infer" (forward).
std::vector<KernelKind> parseKernelKinds(const std::string &text);

struct Workload {
  int64_t batch = 8;
  /// Input size; must match a static spec.
  int64_t height = 56;
  int64_t width = 56;
  /// Live fraction of the sparse branches' taps (Branch::dense = false).
  double density = 1.0;
  /// Seed of the random masks measurements use.
  uint32_t seed = 1;

  /// "N=8 H=56 W=56 density=0.6".
  std::string str() const;
};

/// A workload for `spec`: its static size where it has one, else 56x56.
Workload defaultWorkload(const KernelSpec &spec, int64_t batch = 8, double density = 1.0);
/// Empty when `w` fits `spec`, else a message naming the mismatch.
std::string checkWorkload(const KernelSpec &spec, const Workload &w);

/// Random per-channel masks: every sparse branch keeps round(density * KH *
/// KW) taps (at least one) of each channel, drawn with `seed`. Dense
/// branches get an empty mask.
std::vector<codegen::BranchMask> randomMasks(const KernelSpec &spec, double density, uint32_t seed);
/// buildTapTable(spec, randomMasks(...)).
codegen::TapTable randomTapTable(const KernelSpec &spec, double density, uint32_t seed);

/// The database key of a spec: spec.signature() without the schedule.
std::string problemSignature(const KernelSpec &spec);

/// One layer given on the command line:
///   channels=124,size=56,branches=51x5+5x51+5x5,density=0.6,batch=8
/// Keys: channels (required), size or height/width (default 56), branches
/// (KHxKW+...; default 51x5+5x51+5x5), density (< 1 makes every branch
/// sparse; default 1), batch (8), mode (train: per-branch outputs, all three
/// kernels; infer: summed output with bias, forward only; default train),
/// outputs (sum|branches), bias (0|1), dtype (f32|f16|bf16), dynamic (0|1:
/// the spec leaves H and W to launch time). Throws std::invalid_argument
/// naming the bad key or value.
struct LayerDescription {
  KernelSpec spec;
  Workload workload;
  std::vector<KernelKind> kinds;
  std::string text;
};
LayerDescription parseLayer(const std::string &text);

/// The SLaK-T large-kernel layers (M = 51/49/47/13, N = 5, 5x5) with
/// channels 124/249/499/998 at 56/28/14/7, sparse at `density`; `training`
/// gives per-branch outputs, else a summed output with bias.
std::vector<LayerDescription> slakTinyLayers(double density = 0.6, bool training = true,
                                             int64_t batch = 8);

} // namespace slak::autotune

// LayerTaps: the live taps of one layer's branches (the codegen TapTable
// built from its masks) plus the copies that backends upload from it (device
// buffers, a CPU pipeline holding the taps). A mask update makes a new
// LayerTaps, so its uploads are made again, while compiled kernels, which do
// not depend on the taps, are kept. MLIR- and LibTorch-free.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "codegen/KernelSpec.h"
#include "codegen/KernelWindow.h"
#include "codegen/TapTable.h"

namespace slak::runtime {

class LayerTaps {
public:
  /// `masks`: one per branch, empty = dense, else C*KH*KW bytes (non-zero =
  /// live). A mask with every tap live is stored as dense. Throws
  /// std::invalid_argument on size mismatches.
  LayerTaps(int64_t channels, std::vector<codegen::KernelWindow> windows,
            std::vector<codegen::BranchMask> masks);
  /// From a finished table (a kernel package's), kept as it is; the masks
  /// are derived from it. Throws std::invalid_argument when the table does
  /// not fit the windows.
  LayerTaps(int64_t channels, std::vector<codegen::KernelWindow> windows, codegen::TapTable table);

  int64_t channels() const { return channels_; }
  const std::vector<codegen::KernelWindow> &windows() const { return windows_; }
  int numBranches() const { return static_cast<int>(windows_.size()); }
  /// Whether branch b has every tap of every channel live.
  bool dense(int branch) const { return masks_[branch].empty(); }
  const std::vector<codegen::BranchMask> &masks() const { return masks_; }
  const codegen::TapTable &table() const { return table_; }
  /// Live fraction of the sparse branches' taps; -1 when every branch is dense.
  double sparseDensity() const { return sparseDensity_; }
  /// A process-unique number for this set of taps (logs, cache keys).
  uint64_t id() const { return id_; }

  /// The backend copy stored under `key`, made by `make` on first use.
  std::shared_ptr<void> upload(const std::string &key,
                               const std::function<std::shared_ptr<void>()> &make);

private:
  void computeDensity();

  int64_t channels_;
  std::vector<codegen::KernelWindow> windows_;
  std::vector<codegen::BranchMask> masks_;
  codegen::TapTable table_;
  double sparseDensity_ = -1;
  uint64_t id_;
  std::mutex mutex_;
  std::map<std::string, std::shared_ptr<void>> uploads_;
};

/// Number of backend uploads made so far in this process (tests check that a
/// mask update re-uploads without recompiling).
int64_t tapUploadCount();

} // namespace slak::runtime

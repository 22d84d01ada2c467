#include "runtime/LayerTaps.h"

#include <algorithm>
#include <atomic>
#include <stdexcept>

namespace slak::runtime {
namespace {

std::atomic<uint64_t> nextId{1};
std::atomic<int64_t> uploads{0};

} // namespace

LayerTaps::LayerTaps(int64_t channels, std::vector<codegen::KernelWindow> windows,
                     std::vector<codegen::BranchMask> masks)
    : channels_(channels), windows_(std::move(windows)), masks_(std::move(masks)),
      id_(nextId.fetch_add(1)) {
  if (masks_.empty())
    masks_.resize(windows_.size());
  if (masks_.size() != windows_.size())
    throw std::invalid_argument("LayerTaps: " + std::to_string(masks_.size()) + " masks for " +
                                std::to_string(windows_.size()) + " branches");
  codegen::KernelSpec spec;
  spec.channels = channels_;
  for (size_t b = 0; b < windows_.size(); ++b) {
    const codegen::KernelWindow &w = windows_[b];
    spec.branches.push_back(codegen::Branch::same(w.kernelH, w.kernelW));
    codegen::BranchMask &mask = masks_[b];
    const int64_t expected = channels_ * w.kernelH * w.kernelW;
    if (!mask.empty() && static_cast<int64_t>(mask.size()) != expected)
      throw std::invalid_argument("LayerTaps: mask of branch " + std::to_string(b) + " has " +
                                  std::to_string(mask.size()) + " entries, expected " +
                                  std::to_string(expected) + " (C*KH*KW)");
  }
  computeDensity();
  table_ = codegen::buildTapTable(spec, masks_);
}

LayerTaps::LayerTaps(int64_t channels, std::vector<codegen::KernelWindow> windows,
                     codegen::TapTable table)
    : channels_(channels), windows_(std::move(windows)), table_(std::move(table)),
      id_(nextId.fetch_add(1)) {
  const int numBranches = static_cast<int>(windows_.size());
  if (table_.channels != channels_ || table_.numBranches != numBranches ||
      static_cast<int64_t>(table_.offsets.size()) != numBranches * channels_ + 1)
    throw std::invalid_argument("LayerTaps: the tap table has " +
                                std::to_string(table_.numBranches) + " branches of " +
                                std::to_string(table_.channels) + " channels, expected " +
                                std::to_string(numBranches) + " of " + std::to_string(channels_));
  masks_.resize(windows_.size());
  for (int b = 0; b < numBranches; ++b) {
    const codegen::KernelWindow &w = windows_[b];
    const int64_t window = static_cast<int64_t>(w.kernelH) * w.kernelW;
    codegen::BranchMask &mask = masks_[b];
    mask.assign(channels_ * window, 0);
    for (int64_t c = 0; c < channels_; ++c)
      for (int64_t k = table_.begin(b, c); k < table_.end(b, c); ++k) {
        const int u = codegen::TapTable::unpackRow(table_.taps[k]);
        const int v = codegen::TapTable::unpackCol(table_.taps[k]);
        if (u >= w.kernelH || v >= w.kernelW)
          throw std::invalid_argument("LayerTaps: tap (" + std::to_string(u) + ", " +
                                      std::to_string(v) + ") lies outside branch " +
                                      std::to_string(b) + "'s window");
        mask[c * window + u * w.kernelW + v] = 1;
      }
  }
  computeDensity();
}

void LayerTaps::computeDensity() {
  int64_t live = 0, total = 0;
  for (codegen::BranchMask &mask : masks_) {
    if (mask.empty())
      continue;
    const int64_t on = std::count_if(mask.begin(), mask.end(), [](uint8_t m) { return m != 0; });
    if (on == static_cast<int64_t>(mask.size())) {
      mask.clear(); // all live: dense
      continue;
    }
    live += on;
    total += static_cast<int64_t>(mask.size());
  }
  sparseDensity_ = total > 0 ? static_cast<double>(live) / static_cast<double>(total) : -1.0;
}

std::shared_ptr<void> LayerTaps::upload(const std::string &key,
                                        const std::function<std::shared_ptr<void>()> &make) {
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = uploads_.find(key);
  if (it != uploads_.end())
    return it->second;
  std::shared_ptr<void> value = make();
  ++uploads;
  uploads_[key] = value;
  return value;
}

int64_t tapUploadCount() { return uploads.load(); }

} // namespace slak::runtime

// PipelineCache: the compiled pipelines of one kind, most recently used
// first, at most kCachedPipelines of them: a compiled pipeline holds
// megabytes (more after running on large layers), and a tuning run compiles
// hundreds. Objects that hold a pipeline (CpuLkConv, so every runtime
// kernel) keep it alive; an evicted one is compiled again only when a new
// object asks for it.
#pragma once

#include <cstddef>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <utility>

namespace slak::codegen::cpu {

constexpr size_t kCachedPipelines = 8;

template <typename T> class PipelineCache {
public:
  /// The pipeline cached under `key`, else make() (compiled under the lock,
  /// so two threads asking for one key compile it once).
  template <typename Make> std::shared_ptr<T> get(const std::string &key, Make make) {
    std::lock_guard<std::mutex> lock(mutex_);
    for (auto it = entries_.begin(); it != entries_.end(); ++it)
      if (it->first == key) {
        entries_.splice(entries_.begin(), entries_, it);
        return entries_.front().second;
      }
    entries_.emplace_front(key, make());
    if (entries_.size() > kCachedPipelines)
      entries_.pop_back();
    return entries_.front().second;
  }

private:
  std::mutex mutex_;
  std::list<std::pair<std::string, std::shared_ptr<T>>> entries_;
};

} // namespace slak::codegen::cpu

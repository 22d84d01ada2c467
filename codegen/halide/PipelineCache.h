// PipelineCache: the compiled pipelines of one kind, most recently used
// first, at most kCachedPipelines of them: a compiled pipeline holds
// megabytes (more after running on large layers), and a tuning run compiles
// hundreds. Objects that hold a pipeline (CpuLkConv, so every runtime
// kernel) keep it alive; an evicted one is compiled again only when a new
// object asks for it. While make() runs, MakingPipeline names the key, so
// that compileForHost (HostJit.h) keeps the compiled code on disk under it.
#pragma once

#include <cstddef>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <utility>

namespace slak::codegen::cpu {

constexpr size_t kCachedPipelines = 8;

/// Names, for compileForHost on this thread, the key of the pipeline being
/// made: the key must cover everything the compiled code depends on besides
/// the algorithm and schedule source (group structure, code-shaping
/// schedule fields); run-time inputs (sizes, taps, weights) stay out of it.
class MakingPipeline {
public:
  explicit MakingPipeline(const std::string &key);
  ~MakingPipeline();
  MakingPipeline(const MakingPipeline &) = delete;
  MakingPipeline &operator=(const MakingPipeline &) = delete;
  /// The innermost key being made on this thread, else null.
  static const std::string *key();

private:
  const std::string *previous_;
};

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
    std::shared_ptr<T> made;
    {
      MakingPipeline naming(key);
      made = make();
    }
    entries_.emplace_front(key, std::move(made));
    if (entries_.size() > kCachedPipelines)
      entries_.pop_back();
    return entries_.front().second;
  }

private:
  std::mutex mutex_;
  std::list<std::pair<std::string, std::shared_ptr<T>>> entries_;
};

} // namespace slak::codegen::cpu

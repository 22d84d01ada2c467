#include "runtime/PipelineStoreOnDisk.h"

#include "runtime/Log.h"

namespace slak::runtime {
namespace {

constexpr const char *kKind = "halide";

class PipelineStoreOnDisk final : public codegen::cpu::PipelineStore {
public:
  explicit PipelineStoreOnDisk(KernelCache &cache) : cache_(cache) {}
  std::optional<std::string> load(const std::string &description) override {
    return cache_.load(kKind, pipelineCacheKey(description));
  }
  void store(const std::string &description, std::string_view bytes) override {
    cache_.store(kKind, pipelineCacheKey(description), bytes);
  }
  void reject(const std::string &description, const std::string &why) override {
    const CacheKey key = pipelineCacheKey(description);
    logMessage("kernel cache: ignoring and removing unusable entry " +
               cache_.entryPath(kKind, key) + ": " + why);
    cache_.remove(kKind, key);
  }
  void warn(const std::string &message) override {
    logOnce("halide-store:" + message, "kernel cache: " + message);
  }

private:
  KernelCache &cache_;
};

} // namespace

CacheKey pipelineCacheKey(const std::string &description) {
  return CacheKeyBuilder()
      .add("kind", kKind)
      .add("runtime", kRuntimeVersion)
      .add("pipeline", description)
      .finish();
}

std::shared_ptr<codegen::cpu::PipelineStore> makePipelineStoreOnDisk(KernelCache &cache) {
  if (cache.directory().empty())
    return nullptr;
  return std::make_shared<PipelineStoreOnDisk>(cache);
}

} // namespace slak::runtime

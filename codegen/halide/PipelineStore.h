// PipelineStore: where compiled CPU pipelines (shared libraries built by
// HostAot) are kept between processes. codegen/ does not know about files or
// the kernel cache; the runtime installs a store backed by its on-disk
// kernel cache (runtime/PipelineStoreOnDisk.h), tests install their own.
// Halide-free, so the runtime's cache library can implement it.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace slak::codegen::cpu {

class PipelineStore {
public:
  virtual ~PipelineStore() = default;
  /// The verified bytes stored under `description` (everything the compiled
  /// code depends on, as text), if there is a valid entry.
  virtual std::optional<std::string> load(const std::string &description) = 0;
  /// Keeps `bytes` under `description`; failures are the store's to report.
  virtual void store(const std::string &description, std::string_view bytes) = 0;
  /// An entry that passed the store's checks but cannot be used (not a
  /// loadable library, another pipeline's code): warn with `why` and forget it.
  virtual void reject(const std::string &description, const std::string &why) = 0;
  /// Reports a one-line warning (the AOT path is unavailable, ...) once per text.
  virtual void warn(const std::string &message) = 0;
};

} // namespace slak::codegen::cpu

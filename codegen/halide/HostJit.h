// HostJit: what every CPU pipeline shares to be compiled for and run on this
// host: the JIT target (AVX-512 where present), compilation with an optional
// dump of the lowered code, a count of compiled pipelines, the dense-buffer
// promise and a realize that uses the scratch allocator and reports Halide
// failures as exceptions naming the pipeline. A HostPipeline made inside
// PipelineCache::get is compiled ahead of time and kept in the pipeline store
// when one is installed (HostAot.h), so a later process loads it.
#pragma once

#include <Halide.h>

#include <memory>
#include <string>

namespace slak::codegen::cpu {

class LoadedPipeline;

/// A Halide pipeline whose code is JIT-compiled in this process or loaded
/// from the pipeline store (compileForHost decides).
class HostPipeline : public Halide::Pipeline {
public:
  HostPipeline() = default;
  HostPipeline &operator=(const Halide::Pipeline &pipeline) {
    Halide::Pipeline::operator=(pipeline);
    loaded.reset();
    return *this;
  }
  /// The stored code, when it is not JIT-compiled.
  std::shared_ptr<const LoadedPipeline> loaded;
};

/// The host target every pipeline is compiled for (AVX-512 where present).
const Halide::Target &hostTarget();

/// Pipelines compiled so far in this process (for tests and logs).
int compiledPipelineCount();

/// JIT-compiles `pipeline` for the host. With SLAK_HALIDE_DUMP=dir set, also
/// writes its lowered statement and assembly there (for tuning).
void compileForHost(Halide::Pipeline &pipeline, const std::string &name);
/// Inside PipelineCache::get with a pipeline store installed: the stored
/// code, else compiled ahead of time and stored; else JIT-compiled.
void compileForHost(HostPipeline &pipeline, const std::string &name);

/// Buffers that start at 0 with a unit innermost stride: lets Halide fold
/// the index math.
void constrainDense(const Halide::OutputImageParam &p);

/// Realizes `pipeline` into `output` with the scratch allocator
/// (ScratchAllocator.h); a Halide run-time failure (a buffer too small, ...)
/// becomes a std::runtime_error naming the `what` pipeline.
void realizeOnHost(Halide::Pipeline &pipeline, const char *what,
                   Halide::Pipeline::RealizationArg output, const Halide::ParamMap &params);
void realizeOnHost(HostPipeline &pipeline, const char *what,
                   Halide::Pipeline::RealizationArg output, const Halide::ParamMap &params);

} // namespace slak::codegen::cpu

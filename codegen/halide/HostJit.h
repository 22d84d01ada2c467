// HostJit: what every CPU pipeline shares to be compiled for and run on this
// host: the JIT target (AVX-512 where present), compilation with an optional
// dump of the lowered code, a count of compiled pipelines, the dense-buffer
// promise and a realize that uses the scratch allocator and reports Halide
// failures as exceptions naming the pipeline.
#pragma once

#include <Halide.h>

#include <string>

namespace slak::codegen::cpu {

/// The host target every pipeline is compiled for (AVX-512 where present).
const Halide::Target &hostTarget();

/// Pipelines compiled so far in this process (for tests and logs).
int compiledPipelineCount();

/// JIT-compiles `pipeline` for the host. With SLAK_HALIDE_DUMP=dir set, also
/// writes its lowered statement and assembly there (for tuning).
void compileForHost(Halide::Pipeline &pipeline, const std::string &name);

/// Buffers that start at 0 with a unit innermost stride: lets Halide fold
/// the index math.
void constrainDense(const Halide::OutputImageParam &p);

/// Realizes `pipeline` into `output` with the scratch allocator
/// (ScratchAllocator.h); a Halide run-time failure (a buffer too small, ...)
/// becomes a std::runtime_error naming the `what` pipeline.
void realizeOnHost(Halide::Pipeline &pipeline, const char *what,
                   Halide::Pipeline::RealizationArg output, const Halide::ParamMap &params);

} // namespace slak::codegen::cpu

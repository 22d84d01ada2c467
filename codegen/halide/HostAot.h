// HostAot: CPU pipelines compiled ahead of time into shared libraries that
// persist in a PipelineStore (the runtime's on-disk kernel cache), so that a
// second process loads a pipeline's code instead of compiling it again.
//
// A pipeline is compiled for the host target without the Halide runtime and
// linked with the system compiler (`cc`, or $SLAK_HALIDE_LINKER) into a
// shared library that needs one shared runtime library (Halide's standalone
// runtime for the same target, stored once): one thread pool, one allocator
// and one error handler for every loaded pipeline. Libraries are loaded from
// memory (memfd + dlopen, RTLD_LOCAL) and called through the generated
// `<name>_argv` entry after their `<name>_metadata` (target, argument names,
// kinds, types) has been checked against the pipeline being built.
//
// The store key is the text pipelineDescription() returns: the caller's key
// (the PipelineCache key: group structure and the schedule fields that shape
// the code; taps, weights and sizes are run-time inputs), the pipeline's
// inferred arguments, the target, Halide's version and library build ID and
// the build ID of the binary holding the pipeline definitions (any change to
// an algorithm or schedule gives a new binary, hence new keys).
//
// Where this path cannot be used (no store installed, no linker, a pipeline
// with embedded constant buffers or several outputs) the caller JIT-compiles.
#pragma once

#include "codegen/halide/PipelineStore.h"

#include <Halide.h>

#include <memory>
#include <string>
#include <vector>

namespace slak::codegen::cpu {

/// Installs the store compiled pipelines are kept in; null: none, every
/// pipeline is JIT-compiled (the default).
void setPipelineStore(std::shared_ptr<PipelineStore> store);
bool hasPipelineStore();

/// A pipeline's code in a loaded shared library.
class LoadedPipeline;

/// The code of `pipeline` from the store, else compiled into a shared library
/// that is stored and loaded (`*compiled` says which). Null when it must be
/// JIT-compiled instead (the store's warn() says why, once).
std::shared_ptr<LoadedPipeline> compileOrLoadPipeline(Halide::Pipeline &pipeline,
                                                      const std::string &name,
                                                      const std::string &key, bool *compiled);

/// Runs loaded code with the inputs of `params` into `output`, its parallel
/// loops on `handlers.custom_do_par_for` where the pipeline has one (as a JIT
/// realize would); a Halide run-time failure becomes a std::runtime_error
/// naming the `what` pipeline.
void realizeLoaded(const LoadedPipeline &code, const char *what, halide_buffer_t *output,
                   const Halide::ParamMap &params, const Halide::JITHandlers &handlers);

/// Pipelines loaded from the store in this process (not compiled).
int loadedPipelineCount();

/// The text a pipeline is stored under: everything its code depends on.
std::string pipelineDescription(Halide::Pipeline &pipeline, const std::string &name,
                                const std::string &key, const Halide::Target &target);

/// The host target of ahead-of-time compiled pipelines.
Halide::Target aotTarget();

} // namespace slak::codegen::cpu

#include "codegen/halide/HostJit.h"

#include "codegen/halide/HostAot.h"
#include "codegen/halide/PipelineCache.h"
#include "codegen/halide/ScratchAllocator.h"

#include <atomic>
#include <cstdlib>
#include <stdexcept>
#include <vector>

using namespace Halide;

namespace slak::codegen::cpu {
namespace {

std::atomic<int> compiledCount{0};
thread_local const std::string *keyBeingMade = nullptr;

/// With SLAK_HALIDE_DUMP=dir: the lowered statement and assembly of the
/// `index`th compiled pipeline.
void dumpIfAsked(Pipeline &pipeline, const std::string &name, int index) {
  if (const char *dir = std::getenv("SLAK_HALIDE_DUMP")) {
    const std::string base = std::string(dir) + "/" + std::to_string(index) + "-" + name;
    const std::vector<Argument> args = pipeline.infer_arguments();
    pipeline.compile_to_lowered_stmt(base + ".stmt", args, Text, hostTarget());
    pipeline.compile_to_assembly(base + ".s", args, name, hostTarget());
  }
}

} // namespace

MakingPipeline::MakingPipeline(const std::string &key) : previous_(keyBeingMade) {
  keyBeingMade = &key;
}
MakingPipeline::~MakingPipeline() { keyBeingMade = previous_; }
const std::string *MakingPipeline::key() { return keyBeingMade; }

const Target &hostTarget() {
  static const Target target = get_jit_target_from_environment();
  return target;
}

int compiledPipelineCount() { return compiledCount.load(); }

void compileForHost(Pipeline &pipeline, const std::string &name) {
  pipeline.compile_jit(hostTarget());
  dumpIfAsked(pipeline, name, compiledCount++);
}

void compileForHost(HostPipeline &pipeline, const std::string &name) {
  pipeline.loaded.reset();
  if (const std::string *key = MakingPipeline::key()) {
    bool compiled = false;
    if (auto code = compileOrLoadPipeline(pipeline, name, *key, &compiled)) {
      pipeline.loaded = std::move(code);
      if (compiled)
        dumpIfAsked(pipeline, name, compiledCount++);
      return;
    }
    if (compiled)
      ++compiledCount; // compiled, but not loadable: JIT-compiled again below
  }
  compileForHost(static_cast<Pipeline &>(pipeline), name);
}

void constrainDense(const OutputImageParam &p) {
  for (int d = 0; d < p.dimensions(); ++d)
    p.dim(d).set_min(0);
  p.dim(0).set_stride(1);
}

void realizeOnHost(Pipeline &pipeline, const char *what, Pipeline::RealizationArg output,
                   const ParamMap &params) {
  JITUserContext context;
  useScratchAllocator(context);
  try {
    pipeline.realize(&context, std::move(output), hostTarget(), params);
  } catch (const Halide::Error &e) {
    throw std::runtime_error(std::string("Halide ") + what + " pipeline failed: " + e.what());
  }
}

void realizeOnHost(HostPipeline &pipeline, const char *what, Pipeline::RealizationArg output,
                   const ParamMap &params) {
  if (pipeline.loaded && output.buf)
    return realizeLoaded(*pipeline.loaded, what, output.buf, params, pipeline.jit_handlers());
  realizeOnHost(static_cast<Pipeline &>(pipeline), what, std::move(output), params);
}

} // namespace slak::codegen::cpu

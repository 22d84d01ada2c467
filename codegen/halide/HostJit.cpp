#include "codegen/halide/HostJit.h"

#include "codegen/halide/ScratchAllocator.h"

#include <atomic>
#include <cstdlib>
#include <stdexcept>
#include <vector>

using namespace Halide;

namespace slak::codegen::cpu {
namespace {

std::atomic<int> compiledCount{0};

} // namespace

const Target &hostTarget() {
  static const Target target = get_jit_target_from_environment();
  return target;
}

int compiledPipelineCount() { return compiledCount.load(); }

void compileForHost(Pipeline &pipeline, const std::string &name) {
  pipeline.compile_jit(hostTarget());
  const int index = compiledCount++;
  if (const char *dir = std::getenv("SLAK_HALIDE_DUMP")) {
    const std::string base = std::string(dir) + "/" + std::to_string(index) + "-" + name;
    const std::vector<Argument> args = pipeline.infer_arguments();
    pipeline.compile_to_lowered_stmt(base + ".stmt", args, Text, hostTarget());
    pipeline.compile_to_assembly(base + ".s", args, name, hostTarget());
  }
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

} // namespace slak::codegen::cpu

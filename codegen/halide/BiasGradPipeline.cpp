#include "codegen/halide/BiasGradPipeline.h"

#include "codegen/halide/HostJit.h"
#include "codegen/halide/PipelineCache.h"

#include <mutex>

using namespace Halide;

namespace slak::codegen::cpu {

struct BiasGradPipeline::Impl {
  ImageParam dy{Float(32), 4, "dy"};
  HostPipeline pipeline;
  std::mutex runMutex;
};

std::shared_ptr<BiasGradPipeline> BiasGradPipeline::get() {
  static std::mutex mutex;
  static std::shared_ptr<BiasGradPipeline> cached;
  std::lock_guard<std::mutex> lock(mutex);
  if (!cached) {
    // Kept in the pipeline store like the conv pipelines (one algorithm, no
    // schedule fields: the key only names it).
    static const std::string key = "bias-grad";
    MakingPipeline naming(key);
    cached = std::make_shared<BiasGradPipeline>();
  }
  return cached;
}

BiasGradPipeline::~BiasGradPipeline() = default;

BiasGradPipeline::BiasGradPipeline() : impl_(std::make_unique<Impl>()) {
  Impl &im = *impl_;
  constrainDense(im.dy);
  Var j("j"), c("c");
  // Column sums over rows and batch (vectorised across the row), then a
  // short scalar sum over the columns.
  Func columns("columns");
  RDom r(0, im.dy.dim(1).extent(), 0, im.dy.dim(3).extent(), "rows");
  columns(j, c) = 0.0f;
  columns(j, c) += im.dy(j, r.x, c, r.y);
  Func db("db");
  RDom rj(0, im.dy.dim(0).extent(), "cols");
  db(c) = 0.0f;
  db(c) += columns(rj, c);
  constrainDense(db.output_buffer());
  db.update(0).parallel(c);
  columns.compute_at(db, c).vectorize(j, 8, TailStrategy::RoundUp);
  columns.update(0).reorder(j, r.x, r.y).vectorize(j, 8, TailStrategy::GuardWithIf);
  im.pipeline = Pipeline(db);
  compileForHost(im.pipeline, "bias_grad");
}

void BiasGradPipeline::run(Buffer<float> &dy, Buffer<float> &dbias) {
  Impl &im = *impl_;
  ParamMap params;
  params.set(im.dy, dy);
  std::lock_guard<std::mutex> lock(im.runMutex);
  realizeOnHost(im.pipeline, "bias-gradient", dbias, params);
}

} // namespace slak::codegen::cpu

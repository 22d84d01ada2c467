#include "codegen/halide/WeightGradPipeline.h"

#include "codegen/halide/HalideThreads.h"
#include "codegen/halide/HostJit.h"
#include "codegen/halide/PipelineCache.h"

#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

using namespace Halide;

namespace slak::codegen::cpu {
namespace {

/// The Funcs, variables and reduction domains of the pipeline: what the
/// algorithm defines and the schedule places.
struct WeightGradStages {
  Var j{"j"}, i{"i"}, c{"c"}, n{"n"}, p{"p"}, l{"l"}, kk{"kk"}, kb{"kb"};
  Func xs, dys;                 // x and dy in the group's orientation
  std::vector<Func> transposes; // the transposed ones among them
  Func xflat, shifted, dyflat;  // padded x plane, its shifted copies, flat dy
  RDom rx, rs, rd;              // the domains that fill them
  Func partial;                 // partial(l, kk, kb, c, n): lane l of tap kk of block kb
  RDom r;                       // (vector in strip, dy row, strip)
  Func dW;                      // dW(kk, kb, c)
  RVar batch;
};

void scheduleWeightGrad(WeightGradStages &st, bool transposed, const CpuSchedule &schedule) {
  const int V = schedule.vectorWidth, K = schedule.weightTaps;
  Var jt("jt"), it("it");
  const Var &j = st.j, &i = st.i, &c = st.c, &n = st.n, &p = st.p;
  const Var &l = st.l, &kk = st.kk, &kb = st.kb;
  st.dW.parallel(c);
  st.dW.update(0).reorder(kk, kb, st.batch, c).parallel(c);
  st.partial.compute_at(st.dW, kb)
      .bound(l, 0, V)
      .bound(kk, 0, K)
      .bound_extent(kb, 1)
      .bound_extent(c, 1)
      .bound_extent(n, 1)
      .vectorize(l)
      .unroll(kk);
  st.partial.update(0)
      .reorder(l, kk, st.r.x, st.r.y, st.r.z, kb, c, n)
      .vectorize(l)
      .unroll(kk)
      .unroll(st.r.x);
  for (Func f : {st.xflat, st.dyflat})
    f.compute_at(st.dW, st.batch).vectorize(p, 2 * V, TailStrategy::RoundUp);
  st.xflat.update(0).allow_race_conditions().vectorize(st.rx.x, V, TailStrategy::GuardWithIf);
  st.shifted.compute_at(st.dW, st.batch);
  st.shifted.update(0).allow_race_conditions().vectorize(st.rs.x, 2 * V, TailStrategy::GuardWithIf);
  st.dyflat.update(0).allow_race_conditions().vectorize(st.rd.x, V, TailStrategy::GuardWithIf);
  for (Func &tr : st.transposes)
    tr.compute_at(st.dW, st.batch)
        .tile(j, i, jt, it, 8, 8, TailStrategy::GuardWithIf)
        .vectorize(jt)
        .unroll(it);
  if (!transposed) {
    st.xs.compute_inline();
    st.dys.compute_inline();
  }
}

} // namespace

struct WeightGradPipeline::Impl {
  ImageParam x{Float(32), 4, "x"}, dy{Float(32), 4, "dy"};
  ImageParam offsets{Int(32), 3, "offsets"}, rows{Int(32), 3, "rows"};
  Param<int> padTop{"padTop"}, padLeft{"padLeft"}, stride{"stride"};
  Param<int> copyStride{"copyStride"}, numCopies{"numCopies"};
  ImageParam shifts{Int(32), 1, "shifts"};
  Param<int> dyStride{"dyStride"}, stripCount{"stripCount"};
  Param<int> offsetMin{"offsetMin"}, offsetMax{"offsetMax"};
  HostPipeline pipeline;
  std::mutex runMutex;

  void defineAlgorithm(WeightGradStages &st, bool transposed, const CpuSchedule &schedule);
};

void WeightGradPipeline::Impl::defineAlgorithm(WeightGradStages &st, bool transposed,
                                               const CpuSchedule &schedule) {
  const int V = schedule.vectorWidth, SV = schedule.weightVectors;
  const int SW = schedule.weightStripWidth();
  const int A = alignment(schedule);
  const Var &j = st.j, &i = st.i, &c = st.c, &n = st.n, &p = st.p;
  const Var &l = st.l, &kk = st.kk, &kb = st.kb;
  for (const ImageParam *b : {&x, &dy, &offsets, &rows, &shifts})
    constrainDense(*b);

  // Padded flat planes of x and dy in the group's orientation.
  auto source = [&](ImageParam &in, const std::string &tag) {
    Func f(tag);
    if (transposed) {
      f(j, i, c, n) = in(i, j, c, n);
      st.transposes.push_back(f);
    } else {
      f(j, i, c, n) = in(j, i, c, n);
    }
    return f;
  };
  st.xs = source(x, "xT");
  st.dys = source(dy, "dyT");
  Expr xw = transposed ? x.dim(1).extent() : x.dim(0).extent();
  Expr xh = transposed ? x.dim(0).extent() : x.dim(1).extent();
  Expr dw = transposed ? dy.dim(1).extent() : dy.dim(0).extent();
  Expr dh = transposed ? dy.dim(0).extent() : dy.dim(1).extent();
  st.xflat = Func("xflat");
  st.dyflat = Func("dyflat");
  st.xflat(p, c, n) = 0.0f;
  st.rx = RDom(0, xw, 0, xh, "copyX");
  st.xflat(st.rx.x + padLeft + (st.rx.y + padTop) * stride, c, n) = st.xs(st.rx.x, st.rx.y, c, n);
  // Shifted copies of the x plane, as in the conv pipeline: aligned loads.
  st.shifted = Func("shifted");
  st.shifted(p, c, n) = undef<float>();
  st.rs = RDom(0, copyStride, 0, numCopies, "shift");
  st.shifted(st.rs.x + st.rs.y * copyStride, c, n) =
      st.xflat(st.rs.x + unsafe_promise_clamped(shifts(st.rs.y), 0, A - 1), c, n);
  st.dyflat(p, c, n) = 0.0f;
  st.rd = RDom(0, dw, 0, dh, "copyDy");
  st.dyflat(st.rd.x + st.rd.y * dyStride, c, n) = st.dys(st.rd.x, st.rd.y, c, n);

  // r.x: vector within a strip, r.y: dy row, r.z: strip. Rows run innermost
  // (a tight loop with two pointer bumps), strips outside.
  st.partial = Func("partial");
  st.partial(l, kk, kb, c, n) = 0.0f;
  st.r = RDom(0, SV, 0, dh, 0, stripCount, "pos");
  const RDom &r = st.r;
  st.r.where(r.y >= rows(0, kb, c) && r.y < rows(1, kb, c));
  Expr col = r.z * SW + r.x * V + l;
  Expr offset = unsafe_promise_clamped(offsets(kk, kb, c), offsetMin, offsetMax);
  // A block only runs over the dy rows its taps can reach, so its reads stay
  // within padTop rows of the image (the host sizes padTop for that).
  Expr at = unsafe_promise_clamped((r.y + padTop) * stride + padLeft + r.z * SW + offset, 0,
                                   numCopies * copyStride - SW);
  st.partial(l, kk, kb, c, n) +=
      st.dyflat(r.y * dyStride + col, c, n) * st.shifted(at + r.x * V + l, c, n);

  st.dW = Func("dW");
  st.dW(kk, kb, c) = 0.0f;
  RDom rn(0, x.dim(3).extent(), "batch");
  st.batch = rn.x;
  Expr lanes = st.partial(0, kk, kb, c, rn);
  for (int lane = 1; lane < V; ++lane)
    lanes += st.partial(lane, kk, kb, c, rn);
  st.dW(kk, kb, c) += lanes;
  constrainDense(st.dW.output_buffer());
}

std::shared_ptr<WeightGradPipeline> WeightGradPipeline::get(bool transposed,
                                                            const CpuSchedule &schedule) {
  const std::string key = std::string("wgrad T=") + (transposed ? "1" : "0") +
                          " vec=" + std::to_string(schedule.vectorWidth) +
                          " taps=" + std::to_string(schedule.weightTaps) +
                          " strip=" + std::to_string(schedule.weightVectors);
  static auto *cache = new PipelineCache<WeightGradPipeline>();
  return cache->get(key,
                    [&] { return std::make_shared<WeightGradPipeline>(transposed, schedule); });
}

WeightGradPipeline::~WeightGradPipeline() = default;

WeightGradPipeline::WeightGradPipeline(bool transposed, const CpuSchedule &schedule)
    : impl_(std::make_unique<Impl>()) {
  if (std::string err = schedule.validate(); !err.empty())
    throw std::invalid_argument(err);
  WeightGradStages stages;
  impl_->defineAlgorithm(stages, transposed, schedule);
  scheduleWeightGrad(stages, transposed, schedule);
  impl_->pipeline = Pipeline(stages.dW);
  compileForHost(impl_->pipeline, "weight_grad");
  useHostThreadPool(impl_->pipeline);
}

void WeightGradPipeline::run(WeightGradCall &call) {
  Impl &im = *impl_;
  ParamMap params;
  params.set(im.x, call.x);
  params.set(im.dy, call.dy);
  params.set(im.offsets, call.offsets);
  params.set(im.rows, call.rows);
  params.set(im.padTop, call.padTop);
  params.set(im.padLeft, call.padLeft);
  params.set(im.stride, call.stride);
  params.set(im.copyStride, call.copyStride);
  params.set(im.numCopies, static_cast<int>(call.shifts.dim(0).extent()));
  params.set(im.shifts, call.shifts);
  params.set(im.dyStride, call.dyStride);
  params.set(im.stripCount, call.stripCount);
  params.set(im.offsetMin, call.offsetMin);
  params.set(im.offsetMax, call.offsetMax);
  std::lock_guard<std::mutex> lock(im.runMutex);
  realizeOnHost(im.pipeline, "backward-weight", call.output, params);
}

} // namespace slak::codegen::cpu

#include "codegen/halide/ChannelsLastWeightGrad.h"

#include "codegen/halide/ChannelBlockCopy.h"
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

struct ChannelsLastWeightGradStages {
  Var lane{"lane"}, p{"p"}, cb{"cb"}, n{"n"}, kk{"kk"}, kb{"kb"};
  Func xp, dyp; // pixel-vector planes of x (zero-padded) and dy
  RDom rx, rd;  // (lane, column, row) of the images copied in
  Func partial; // partial(lane, kk, kb, cb, n): dW vector of tap kk of block kb
  RDom r;       // (pixel in strip, dy row, strip)
  Func dW;      // dW(lane, kk, kb, cb)
  RVar batch;
  ImageParam x, dy;
};

void scheduleChannelsLastWeightGrad(ChannelsLastWeightGradStages &st, const CpuSchedule &schedule) {
  const int V = schedule.vectorWidth, K = schedule.weightTaps;
  const Var &lane = st.lane, &cb = st.cb, &n = st.n, &kk = st.kk, &kb = st.kb;
  st.dW.bound(lane, 0, V).vectorize(lane).parallel(cb);
  st.dW.update(0).reorder(lane, kk, kb, st.batch, cb).vectorize(lane).parallel(cb);
  st.partial.compute_at(st.dW, kb)
      .bound(lane, 0, V)
      .bound(kk, 0, K)
      .bound_extent(kb, 1)
      .bound_extent(cb, 1)
      .bound_extent(n, 1)
      .vectorize(lane)
      .unroll(kk);
  st.partial.update(0)
      .reorder(lane, kk, st.r.x, st.r.y, st.r.z, kb, cb, n)
      .vectorize(lane)
      .unroll(kk)
      .unroll(st.r.x);
  st.xp.compute_at(st.dW, st.batch).bound(lane, 0, V).vectorize(lane);
  st.dyp.compute_at(st.dW, st.batch).bound(lane, 0, V).vectorize(lane);
  st.xp.update(0).reorder(st.rx.x, st.rx.y, st.rx.z).vectorize(st.rx.x);
  st.dyp.update(0).reorder(st.rd.x, st.rd.y, st.rd.z).vectorize(st.rd.x);
  st.xp.update(0).specialize(st.x.dim(0).stride() == 1);
  st.dyp.update(0).specialize(st.dy.dim(0).stride() == 1);
  // A partial last channel block, lane by lane (copyChannelBlocks).
  st.xp.update(1).unscheduled();
  st.dyp.update(1).unscheduled();
}

} // namespace

struct ChannelsLastWeightGradPipeline::Impl {
  ImageParam x{Float(32), 4, "x"}, dy{Float(32), 4, "dy"};
  ImageParam offsets{Int(32), 2, "offsets"}, rows{Int(32), 3, "rows"};
  Param<int> padLeft{"padLeft"}, stride{"stride"};
  Param<int> dyStride{"dyStride"}, stripCount{"stripCount"};
  Param<int> offsetMin{"offsetMin"}, offsetMax{"offsetMax"};
  HostPipeline pipeline;
  std::mutex runMutex;

  void defineAlgorithm(ChannelsLastWeightGradStages &st, bool transposed,
                       const CpuSchedule &schedule);
};

void ChannelsLastWeightGradPipeline::Impl::defineAlgorithm(ChannelsLastWeightGradStages &st,
                                                           bool transposed,
                                                           const CpuSchedule &schedule) {
  const int V = schedule.vectorWidth, SV = schedule.weightVectors;
  const Var &lane = st.lane, &p = st.p, &cb = st.cb, &n = st.n, &kk = st.kk, &kb = st.kb;
  for (ImageParam *in : {&x, &dy}) {
    for (int d = 0; d < 4; ++d)
      in->dim(d).set_min(0);
    in->dim(0).set_stride(Expr()); // NHWC or NCHW memory
  }
  for (const ImageParam *b : {&offsets, &rows})
    constrainDense(*b);
  st.x = x;
  st.dy = dy;
  Expr dh = transposed ? dy.dim(1).extent() : dy.dim(2).extent();
  Expr xh = transposed ? x.dim(1).extent() : x.dim(2).extent();
  st.xp = Func("xp");
  st.xp(lane, p, cb, n) = 0.0f;
  st.rx = copyChannelBlocks(
      st.xp, x, transposed, V, cb, n,
      [&](Expr col, Expr row) { return row * stride + col + padLeft; }, "copyX");
  st.dyp = Func("dyp");
  st.dyp(lane, p, cb, n) = 0.0f;
  st.rd = copyChannelBlocks(
      st.dyp, dy, transposed, V, cb, n, [&](Expr col, Expr row) { return row * dyStride + col; },
      "copyDy");

  // r.x: pixel within a strip, r.y: dy row, r.z: strip.
  st.partial = Func("partial");
  st.partial(lane, kk, kb, cb, n) = 0.0f;
  st.r = RDom(0, SV, 0, dh, 0, stripCount, "pos");
  const RDom &r = st.r;
  st.r.where(r.y >= rows(0, kb, cb) && r.y < rows(1, kb, cb));
  // A block is K consecutive columns of one tap row: tap kk reads kk pixels
  // right of tap 0, so neighbouring taps and pixels load the same x vectors
  // (SV + K - 1 loads for SV x K multiply-adds).
  Expr offset = unsafe_promise_clamped(offsets(kb, cb), offsetMin, offsetMax) + kk;
  // A block only runs over the dy rows whose input row (one per block) is
  // in the image, so the x plane needs padding in columns only.
  Expr xAt =
      unsafe_promise_clamped(r.y * stride + padLeft + r.z * SV + offset, 0, xh * stride - SV);
  Expr dyAt = unsafe_promise_clamped(r.y * dyStride + r.z * SV, 0, dh * dyStride - SV);
  st.partial(lane, kk, kb, cb, n) +=
      st.dyp(lane, dyAt + r.x, cb, n) * st.xp(lane, xAt + r.x, cb, n);

  st.dW = Func("dW");
  st.dW(lane, kk, kb, cb) = 0.0f;
  RDom rn(0, x.dim(3).extent(), "batch");
  st.batch = rn.x;
  st.dW(lane, kk, kb, cb) += st.partial(lane, kk, kb, cb, rn);
  constrainDense(st.dW.output_buffer());
  st.dW.output_buffer().dim(0).set_extent(V);
}

std::shared_ptr<ChannelsLastWeightGradPipeline>
ChannelsLastWeightGradPipeline::get(bool transposed, const CpuSchedule &schedule) {
  const std::string key = std::string("wgrad-cl column-runs T=") + (transposed ? "1" : "0") +
                          " vec=" + std::to_string(schedule.vectorWidth) +
                          " taps=" + std::to_string(schedule.weightTaps) +
                          " strip=" + std::to_string(schedule.weightVectors);
  static auto *cache = new PipelineCache<ChannelsLastWeightGradPipeline>();
  return cache->get(
      key, [&] { return std::make_shared<ChannelsLastWeightGradPipeline>(transposed, schedule); });
}

ChannelsLastWeightGradPipeline::~ChannelsLastWeightGradPipeline() = default;

ChannelsLastWeightGradPipeline::ChannelsLastWeightGradPipeline(bool transposed,
                                                               const CpuSchedule &schedule)
    : impl_(std::make_unique<Impl>()) {
  if (std::string err = schedule.validate(); !err.empty())
    throw std::invalid_argument(err);
  ChannelsLastWeightGradStages stages;
  impl_->defineAlgorithm(stages, transposed, schedule);
  scheduleChannelsLastWeightGrad(stages, schedule);
  impl_->pipeline = Pipeline(stages.dW);
  compileForHost(impl_->pipeline, "weight_grad_channels_last");
  useHostThreadPool(impl_->pipeline);
}

void ChannelsLastWeightGradPipeline::run(ChannelsLastWeightGradCall &call) {
  Impl &im = *impl_;
  ParamMap params;
  params.set(im.x, call.x);
  params.set(im.dy, call.dy);
  params.set(im.offsets, call.offsets);
  params.set(im.rows, call.rows);
  params.set(im.padLeft, call.padLeft);
  params.set(im.stride, call.stride);
  params.set(im.dyStride, call.dyStride);
  params.set(im.stripCount, call.stripCount);
  params.set(im.offsetMin, call.offsetMin);
  params.set(im.offsetMax, call.offsetMax);
  std::lock_guard<std::mutex> lock(im.runMutex);
  realizeOnHost(im.pipeline, "channels-last backward-weight", call.output, params);
}

} // namespace slak::codegen::cpu

#include "codegen/halide/ChannelsLastConv.h"

#include "codegen/halide/ChannelBlockCopy.h"
#include "codegen/halide/HalideThreads.h"
#include "codegen/halide/HostJit.h"
#include "codegen/halide/PipelineCache.h"

#include <functional>
#include <mutex>
#include <sstream>
#include <stdexcept>
#include <string>

using namespace Halide;

namespace slak::codegen::cpu {
namespace {

int64_t roundUp(int64_t value, int64_t multiple) {
  return (value + multiple - 1) / multiple * multiple;
}

/// The Funcs, variables and domains of one channels-last conv pipeline.
struct ChannelsLastConvStages {
  Var c{"c"}, j{"j"}, i{"i"}, n{"n"}, p{"p"}, lane{"lane"}, cb{"cb"};
  // acc(lane, t, r, jo, io, cb, n): output pixel (jo * T + t, io * R + r).
  Var t{"t"}, r{"r"}, jo{"jo"}, io{"io"};
  Func y;
  std::vector<Func> padded;      // per input plane: padded(lane, pixel, cb, n)
  std::vector<RDom> copyDomains; // (lane, column, row) of the whole channel blocks copied in
  std::vector<ImageParam> copySources;
  std::vector<Func> accs;
  std::vector<RDom> tapDomains;
  std::vector<Func> intermediatePlanes; // plane(lane, a, b, cb, n) of a group's sum
  std::vector<size_t> intermediateGroups;
  Func lastAcc, lastPlane;
  size_t lastN = 0;
};

void scheduleChannelsLastConv(ChannelsLastConvStages &st, const CpuSchedule &schedule) {
  const int V = schedule.vectorWidth, R = schedule.tileRows, T = schedule.tileVectors;
  Var cbn("cbn"), ao("ao"), bo("bo");
  const Var &c = st.c, &j = st.j, &i = st.i, &n = st.n, &lane = st.lane;
  const Var &cb = st.cb, &t = st.t, &r = st.r, &jo = st.jo, &io = st.io;
  auto scheduleAcc = [&](Func &acc, const RDom &k) {
    // One tile of one channel block: a constant-size accumulator, which
    // LLVM keeps in vector registers (a dynamic extent puts it in memory and
    // every FMA waits on a store-to-load round trip).
    acc.bound(lane, 0, V).bound(t, 0, T).bound(r, 0, R).bound_extent(jo, 1).bound_extent(io, 1);
    acc.bound_extent(cb, 1).bound_extent(n, 1);
    acc.vectorize(lane).unroll(t).unroll(r);
    acc.update(0)
        .reorder(lane, t, r, k.x, k.y, jo, io, cb, n)
        .vectorize(lane)
        .unroll(t)
        .unroll(r)
        .unroll(k.x);
  };
  Func &y = st.y;
  Var yb("yb"), yl("yl");
  if (st.lastAcc.defined()) {
    y.split(c, yb, yl, V, TailStrategy::GuardWithIf)
        .split(j, jo, t, T, TailStrategy::GuardWithIf)
        .split(i, io, r, R, TailStrategy::GuardWithIf)
        .reorder(yl, t, r, jo, io, n, yb)
        .fuse(n, yb, cbn)
        .parallel(cbn)
        .vectorize(yl);
    st.lastAcc.compute_at(y, jo);
    scheduleAcc(st.lastAcc, st.tapDomains[st.lastN]);
  } else {
    y.split(c, yb, yl, V, TailStrategy::GuardWithIf)
        .reorder(yl, j, i, n, yb)
        .fuse(n, yb, cbn)
        .parallel(cbn)
        .vectorize(yl);
  }
  for (size_t q = 0; q < st.intermediatePlanes.size(); ++q) {
    Func &plane = st.intermediatePlanes[q];
    Var a = plane.args()[1], b = plane.args()[2];
    Var ai("ai"), bi("bi");
    plane.compute_at(y, cbn)
        .bound(lane, 0, V)
        .split(a, ao, ai, T, TailStrategy::RoundUp)
        .split(b, bo, bi, R, TailStrategy::RoundUp)
        .reorder(lane, ai, bi, ao, bo)
        .vectorize(lane);
    Func &acc = st.accs[st.intermediateGroups[q]];
    acc.compute_at(plane, ao);
    scheduleAcc(acc, st.tapDomains[st.intermediateGroups[q]]);
  }
  for (size_t q = 0; q < st.padded.size(); ++q) {
    const RDom &rc = st.copyDomains[q];
    st.padded[q].compute_at(y, cbn).bound(lane, 0, V).vectorize(lane);
    st.padded[q].update(0).reorder(rc.x, rc.y, rc.z).vectorize(rc.x);
    // NHWC memory: one dense load per pixel (the specialisation); other
    // strides gather.
    st.padded[q].update(0).specialize(st.copySources[q].dim(0).stride() == 1);
    // A partial last channel block, lane by lane (copyChannelBlocks).
    st.padded[q].update(1).unscheduled();
  }
  // NHWC output: one dense store per pixel vector.
  y.specialize(y.output_buffer().dim(0).stride() == 1);
}

} // namespace

struct ChannelsLastConvPipeline::Impl {
  std::vector<ImageParam> inputs;
  struct PlaneParams {
    Param<int> padTop, padLeft, stride, rows;
    void bind(ParamMap &params, const ChannelsLastConvCall::Plane &plane) const {
      params.set(padTop, plane.padTop);
      params.set(padLeft, plane.padLeft);
      params.set(stride, plane.stride);
      params.set(rows, plane.rows);
    }
  };
  std::vector<PlaneParams> planes;
  struct GroupParams {
    ImageParam offsets, weights, ranges;
    Param<int> offsetMin, offsetMax;
    void bind(ParamMap &params, const ChannelsLastConvCall::Group &group) const {
      params.set(offsets, group.offsets);
      params.set(weights, group.weights);
      params.set(ranges, group.ranges);
      params.set(offsetMin, group.offsetMin);
      params.set(offsetMax, group.offsetMax);
    }
  };
  std::vector<GroupParams> groups;
  ImageParam bias;
  HostPipeline pipeline;
  std::mutex runMutex;

  void defineAlgorithm(ChannelsLastConvStages &st, const std::vector<ConvGroupShape> &groups,
                       const std::vector<ConvGroupShape> &planes, const std::vector<int> &planeOf,
                       int numSlots, bool hasBias, const CpuSchedule &schedule);
};

void ChannelsLastConvPipeline::Impl::defineAlgorithm(ChannelsLastConvStages &st,
                                                     const std::vector<ConvGroupShape> &groupList,
                                                     const std::vector<ConvGroupShape> &planeList,
                                                     const std::vector<int> &planeOf, int numSlots,
                                                     bool hasBias, const CpuSchedule &schedule) {
  const int V = schedule.vectorWidth, R = schedule.tileRows, T = schedule.tileVectors;
  const int P = schedule.tapBlock;
  const Var &c = st.c, &j = st.j, &i = st.i, &n = st.n, &p = st.p, &lane = st.lane;
  const Var &cb = st.cb, &t = st.t, &r = st.r, &jo = st.jo, &io = st.io;

  for (int s = 0; s < numSlots; ++s) {
    ImageParam in(Float(32), 4, "in" + std::to_string(s));
    for (int d = 0; d < 4; ++d)
      in.dim(d).set_min(0);
    in.dim(0).set_stride(Expr()); // NHWC or NCHW memory
    inputs.push_back(in);
  }
  bias = ImageParam(Float(32), 1, "bias");
  constrainDense(bias);
  const Expr start = hasBias ? Expr(bias(cb * V + lane)) : Expr(0.0f);

  // Zero-padded planes of pixel vectors, image at (padTop, padLeft).
  for (size_t q = 0; q < planeList.size(); ++q) {
    const ConvGroupShape &plane = planeList[q];
    const ImageParam &in = inputs.at(plane.slot);
    const std::string tag = std::to_string(q);
    PlaneParams pp{Param<int>("padTop" + tag), Param<int>("padLeft" + tag),
                   Param<int>("stride" + tag), Param<int>("rows" + tag)};
    planes.push_back(pp);
    Func padded("padded" + tag);
    padded(lane, p, cb, n) = 0.0f;
    st.copyDomains.push_back(copyChannelBlocks(
        padded, in, plane.transposed, V, cb, n,
        [&](Expr col, Expr row) { return (row + pp.padTop) * pp.stride + col + pp.padLeft; },
        "copy" + tag));
    st.padded.push_back(padded);
    st.copySources.push_back(in);
  }

  st.accs.resize(groupList.size());
  st.tapDomains.resize(groupList.size());
  std::vector<GroupParams> params(groupList.size());
  auto defineAcc = [&](size_t g, const std::function<Expr(Expr, Expr)> &init) {
    GroupParams gp;
    const std::string tag = std::to_string(g);
    gp.offsets = ImageParam(Int(32), 1, "offsets" + tag);
    gp.weights = ImageParam(Float(32), 2, "weights" + tag);
    gp.ranges = ImageParam(Int(32), 3, "ranges" + tag);
    gp.offsetMin = Param<int>("offsetMin" + tag);
    gp.offsetMax = Param<int>("offsetMax" + tag);
    for (const ImageParam *b : {&gp.offsets, &gp.weights, &gp.ranges})
      constrainDense(*b);
    gp.weights.dim(0).set_extent(V);
    gp.weights.dim(1).set_stride(V);
    const PlaneParams &pp = planes[planeOf[g]];
    Func acc("acc" + tag);
    acc(lane, t, r, jo, io, cb, n) = init(jo * T + t, io * R + r);
    // k.x: row within a block of P taps of one column, k.y: the block.
    RDom k(0, P, 0, gp.offsets.dim(0).extent() / P, "tap" + tag);
    k.where(k.y >= gp.ranges(0, io, cb) && k.y < gp.ranges(1, io, cb));
    Expr offset = unsafe_promise_clamped(gp.offsets(k.y * P), gp.offsetMin, gp.offsetMax);
    // Only taps that reach the tile's rows run (the host pads the plane by
    // tileRows + P - 2 rows for them); row r of tap k.x reads input row
    // r + k.x of the block, so one load serves every equal sum.
    Expr at = unsafe_promise_clamped((io * R + r + k.x + pp.padTop) * pp.stride + pp.padLeft +
                                         jo * T + offset,
                                     0, pp.rows * pp.stride - T);
    acc(lane, t, r, jo, io, cb, n) +=
        gp.weights(lane, k.y * P + k.x) * st.padded[planeOf[g]](lane, at + t, cb, n);
    params[g] = gp;
    st.accs[g] = acc;
    st.tapDomains[g] = k;
  };
  auto planeOfAcc = [&](const Func &acc) {
    Var a("a"), b("b");
    Func plane(acc.name() + "_plane");
    plane(lane, a, b, cb, n) = acc(lane, a % T, b % R, a / T, b / R, cb, n);
    return plane;
  };

  // Transposed groups first, each starting from the sum before it; a pixel
  // of a transposed sum is read at swapped coordinates.
  Func prev;
  bool prevTransposed = false, first = true;
  st.lastN = groupList.size();
  for (size_t g = 0; g < groupList.size(); ++g)
    if (!groupList[g].transposed)
      st.lastN = g;
  std::vector<size_t> order;
  for (size_t g = 0; g < groupList.size(); ++g)
    if (groupList[g].transposed)
      order.push_back(g);
  for (size_t g = 0; g < groupList.size(); ++g)
    if (!groupList[g].transposed)
      order.push_back(g);
  for (size_t g : order) {
    const bool transposed = groupList[g].transposed;
    Func before = prev;
    const bool isFirst = first, swap = !first && prevTransposed != transposed;
    defineAcc(g, [&](Expr a, Expr b) {
      if (isFirst)
        return start;
      return swap ? Expr(before(lane, b, a, cb, n)) : Expr(before(lane, a, b, cb, n));
    });
    first = false;
    if (g == st.lastN) {
      st.lastAcc = st.accs[g];
      st.y(c, j, i, n) = st.accs[g](c % V, j % T, i % R, j / T, i / R, c / V, n);
    } else {
      prev = planeOfAcc(st.accs[g]);
      prevTransposed = transposed;
      st.intermediatePlanes.push_back(prev);
      st.intermediateGroups.push_back(g);
    }
  }
  if (!st.lastAcc.defined()) // only transposed groups
    st.y(c, j, i, n) = prev(c % V, i, j, c / V, n);
  for (int d = 0; d < 4; ++d)
    st.y.output_buffer().dim(d).set_min(0);
  st.y.output_buffer().dim(0).set_stride(Expr());
  groups = params;
}

std::shared_ptr<ChannelsLastConvPipeline>
ChannelsLastConvPipeline::get(const std::vector<ConvGroupShape> &groups, int numSlots, bool bias,
                              const CpuSchedule &schedule) {
  std::ostringstream key;
  key << "conv-cl slots=" << numSlots << " bias=" << bias << " vec=" << schedule.vectorWidth
      << " tile=" << schedule.tileRows << "x" << schedule.tileVectors
      << " tapBlock=" << schedule.tapBlock << " groups=";
  for (const ConvGroupShape &g : groups)
    key << g.slot << (g.transposed ? "T" : "N") << ",";
  static auto *cache = new PipelineCache<ChannelsLastConvPipeline>();
  return cache->get(key.str(), [&] {
    return std::make_shared<ChannelsLastConvPipeline>(groups, numSlots, bias, schedule);
  });
}

ChannelsLastConvPipeline::~ChannelsLastConvPipeline() = default;

ChannelsLastConvPipeline::ChannelsLastConvPipeline(const std::vector<ConvGroupShape> &groups,
                                                   int numSlots, bool hasBias,
                                                   const CpuSchedule &schedule)
    : impl_(std::make_unique<Impl>()), schedule_(schedule) {
  if (std::string err = schedule.validate(); !err.empty())
    throw std::invalid_argument(err);
  if (groups.empty())
    throw std::invalid_argument("ChannelsLastConvPipeline: no tap group to compute");
  std::vector<int> planeOf;
  for (const ConvGroupShape &g : groups) {
    auto found = std::find_if(planes_.begin(), planes_.end(), [&](const ConvGroupShape &q) {
      return q.slot == g.slot && q.transposed == g.transposed;
    });
    planeOf.push_back(static_cast<int>(found - planes_.begin()));
    if (found == planes_.end())
      planes_.push_back(g);
    if (!g.transposed)
      hasN_ = true;
  }
  ChannelsLastConvStages stages;
  stages.y = Func("y");
  impl_->defineAlgorithm(stages, groups, planes_, planeOf, numSlots, hasBias, schedule);
  scheduleChannelsLastConv(stages, schedule);
  impl_->pipeline = Pipeline(stages.y);
  compileForHost(impl_->pipeline, "conv_channels_last");
  useHostThreadPool(impl_->pipeline);
}

int64_t ChannelsLastConvPipeline::computedExtent(bool transposed, int64_t along, int64_t across,
                                                 int step, int acrossStep) const {
  if (!transposed)
    return roundUp(along, step);
  // A transposed sum covers what the untransposed tiles read (or the output).
  return roundUp(hasN_ ? roundUp(across, acrossStep) : across, step);
}

int ChannelsLastConvPipeline::tilesFor(bool transposed, int64_t outH, int64_t outW) const {
  return static_cast<int>(computedRows(transposed, outH, outW) / schedule_.tileRows);
}

int64_t ChannelsLastConvPipeline::computedRows(bool transposed, int64_t outH, int64_t outW) const {
  return computedExtent(transposed, outH, outW, schedule_.tileRows, schedule_.tileVectors);
}

int64_t ChannelsLastConvPipeline::computedCols(bool transposed, int64_t outH, int64_t outW) const {
  return computedExtent(transposed, outW, outH, schedule_.tileVectors, schedule_.tileRows);
}

void ChannelsLastConvPipeline::run(ChannelsLastConvCall &call) {
  Impl &im = *impl_;
  if (call.inputs.size() != im.inputs.size() || call.planes.size() != im.planes.size() ||
      call.groups.size() != im.groups.size())
    throw std::invalid_argument(
        "ChannelsLastConvPipeline::run: call does not match the compiled structure");
  ParamMap params;
  for (size_t s = 0; s < im.inputs.size(); ++s)
    params.set(im.inputs[s], call.inputs[s]);
  for (size_t q = 0; q < im.planes.size(); ++q)
    im.planes[q].bind(params, call.planes[q]);
  for (size_t g = 0; g < im.groups.size(); ++g)
    im.groups[g].bind(params, call.groups[g]);
  if (call.bias.defined())
    params.set(im.bias, call.bias);
  std::lock_guard<std::mutex> lock(im.runMutex);
  realizeOnHost(im.pipeline, "channels-last conv", call.output, params);
}

} // namespace slak::codegen::cpu

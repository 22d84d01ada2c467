#include "codegen/halide/ConvPipeline.h"

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

/// The Funcs, variables and reduction domains of one conv pipeline: what the
/// algorithm defines and the schedule places.
struct ConvStages {
  Var j{"j"}, i{"i"}, c{"c"}, n{"n"}, p{"p"};
  // acc(ji, ii, jo, io, c, n) is output (jo * CW + ji, io * R + ii) of a group.
  Var ji{"ji"}, ii{"ii"}, jo{"jo"}, io{"io"};
  Func y;
  // Per input plane: the zero-padded plane, its shifted copies, the domains
  // that fill them; transposed inputs of transposed planes.
  std::vector<Func> flats, copies, transposedInputs;
  std::vector<RDom> copyDomains, shiftDomains;
  // Per group: its accumulator tile and tap domain.
  std::vector<Func> accs;
  std::vector<RDom> tapDomains;
  // Groups whose sum is kept as a whole plane for the next group to start
  // from, with their group index; the last untransposed group's tile is
  // computed straight into y.
  std::vector<Func> intermediatePlanes;
  std::vector<size_t> intermediateGroups;
  Func lastAcc, untransposed;
  size_t lastN = 0;
};

/// Everything of one (n, c) plane inside one parallel task.
void scheduleConv(ConvStages &st, const CpuSchedule &schedule) {
  const int V = schedule.vectorWidth, R = schedule.tileRows, CW = schedule.tileWidth();
  Var cn("cn"), jv("jv"), jl("jl"), jt("jt"), it("it");
  const Var &j = st.j, &i = st.i, &c = st.c, &n = st.n, &p = st.p;
  const Var &ji = st.ji, &ii = st.ii, &jo = st.jo, &io = st.io;
  auto scheduleAcc = [&](Func &acc, const RDom &k) {
    acc.bound(ji, 0, CW).bound(ii, 0, R).bound_extent(jo, 1).bound_extent(io, 1);
    acc.split(ji, jv, jl, V).vectorize(jl).unroll(jv).unroll(ii);
    acc.update(0)
        .split(ji, jv, jl, V)
        .reorder(jl, jv, ii, k.x, k.y, jo, io, c, n)
        .vectorize(jl)
        .unroll(jv)
        .unroll(ii)
        .unroll(k.x);
  };
  Func &y = st.y;
  if (st.lastAcc.defined()) {
    y.split(j, jo, ji, CW, TailStrategy::GuardWithIf)
        .split(i, io, ii, R, TailStrategy::GuardWithIf)
        .reorder(ji, ii, jo, io, c, n)
        .fuse(c, n, cn)
        .parallel(cn)
        .vectorize(ji, V, TailStrategy::GuardWithIf);
    st.lastAcc.compute_at(y, jo);
    scheduleAcc(st.lastAcc, st.tapDomains[st.lastN]);
  } else {
    y.tile(j, i, jt, it, 8, 8, TailStrategy::GuardWithIf)
        .fuse(c, n, cn)
        .parallel(cn)
        .vectorize(jt)
        .unroll(it);
  }
  for (size_t q = 0; q < st.intermediatePlanes.size(); ++q) {
    Func &plane = st.intermediatePlanes[q];
    plane.compute_at(y, cn)
        .split(j, jo, ji, CW, TailStrategy::RoundUp)
        .split(i, io, ii, R, TailStrategy::RoundUp)
        .reorder(ji, ii, jo, io)
        .vectorize(ji, V);
    Func &acc = st.accs[st.intermediateGroups[q]];
    acc.compute_at(plane, jo);
    scheduleAcc(acc, st.tapDomains[st.intermediateGroups[q]]);
  }
  if (st.untransposed.defined() && st.lastAcc.defined())
    st.untransposed.compute_at(y, cn)
        .tile(j, i, jt, it, 8, 8, TailStrategy::RoundUp)
        .vectorize(jt)
        .unroll(it);
  else if (st.untransposed.defined())
    st.untransposed.compute_inline();
  for (Func &tr : st.transposedInputs)
    tr.compute_at(y, cn)
        .tile(j, i, jt, it, 8, 8, TailStrategy::GuardWithIf)
        .vectorize(jt)
        .unroll(it);
  for (size_t q = 0; q < st.copies.size(); ++q) {
    st.flats[q].compute_at(y, cn).vectorize(p, 2 * V, TailStrategy::RoundUp);
    st.flats[q].update(0).allow_race_conditions().vectorize(st.copyDomains[q].x, V,
                                                            TailStrategy::GuardWithIf);
    st.copies[q].compute_at(y, cn);
    st.copies[q].update(0).allow_race_conditions().vectorize(st.shiftDomains[q].x, 2 * V,
                                                             TailStrategy::GuardWithIf);
  }
}

} // namespace

struct ConvPipeline::Impl {
  std::vector<ImageParam> inputs;
  struct PlaneParams {
    Param<int> padTop, padLeft, stride, rows, copyStride, numCopies;
    ImageParam shifts;
    void bind(ParamMap &params, const ConvCall::Plane &plane) const {
      params.set(padTop, plane.padTop);
      params.set(padLeft, plane.padLeft);
      params.set(stride, plane.stride);
      params.set(rows, plane.rows);
      params.set(copyStride, plane.copyStride);
      params.set(numCopies, static_cast<int>(plane.shifts.dim(0).extent()));
      params.set(shifts, plane.shifts);
    }
  };
  std::vector<PlaneParams> planes;
  struct GroupParams {
    ImageParam offsets, weights, ranges;
    Param<int> offsetMin, offsetMax;
    void bind(ParamMap &params, const ConvCall::Group &group) const {
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

  /// Declares the parameters and defines the algorithm: padded input planes
  /// (one per entry of `planes`), each group's accumulator tiles chained
  /// transposed groups first, and the output y.
  void defineAlgorithm(ConvStages &st, const std::vector<ConvGroupShape> &groups,
                       const std::vector<ConvGroupShape> &planes, const std::vector<int> &planeOf,
                       int numSlots, bool hasBias, const CpuSchedule &schedule, int alignment);
  void definePlanes(ConvStages &st, const std::vector<ConvGroupShape> &planes, int alignment);
};

void ConvPipeline::Impl::definePlanes(ConvStages &st, const std::vector<ConvGroupShape> &planeList,
                                      int alignment) {
  const Var &j = st.j, &i = st.i, &c = st.c, &n = st.n, &p = st.p;
  for (size_t q = 0; q < planeList.size(); ++q) {
    const ConvGroupShape &plane = planeList[q];
    ImageParam &in = inputs.at(plane.slot);
    PlaneParams pp;
    const std::string tag = std::to_string(q);
    pp.padTop = Param<int>("padTop" + tag);
    pp.padLeft = Param<int>("padLeft" + tag);
    pp.stride = Param<int>("stride" + tag);
    pp.rows = Param<int>("rows" + tag);
    pp.copyStride = Param<int>("copyStride" + tag);
    pp.numCopies = Param<int>("numCopies" + tag);
    pp.shifts = ImageParam(Int(32), 1, "shifts" + tag);
    constrainDense(pp.shifts);
    planes.push_back(pp);
    Expr width = plane.transposed ? in.dim(1).extent() : in.dim(0).extent();
    Expr height = plane.transposed ? in.dim(0).extent() : in.dim(1).extent();
    // The zero-padded plane, rows x stride floats, image at (padTop, padLeft).
    Func flat("flat" + tag);
    flat(p, c, n) = 0.0f;
    RDom r(0, width, 0, height, "copy" + tag);
    Expr value;
    if (plane.transposed) {
      Func tr("transposedIn" + tag);
      tr(j, i, c, n) = in(i, j, c, n);
      st.transposedInputs.push_back(tr);
      value = tr(r.x, r.y, c, n);
    } else {
      value = in(r.x, r.y, c, n);
    }
    flat(r.x + pp.padLeft + (r.y + pp.padTop) * pp.stride, c, n) = value;
    // Copies of it shifted left by shifts(k) floats, copyStride floats apart:
    // each tap reads the copy in which its vector loads are aligned (a load
    // that straddles two cache lines costs about twice as much).
    Func shifted("shifted" + tag);
    shifted(p, c, n) = undef<float>();
    RDom rs(0, pp.rows * pp.stride, 0, pp.numCopies, "shift" + tag);
    Expr shift = unsafe_promise_clamped(pp.shifts(rs.y), 0, alignment - 1);
    shifted(rs.x + rs.y * pp.copyStride, c, n) = flat(rs.x + shift, c, n);
    st.flats.push_back(flat);
    st.copies.push_back(shifted);
    st.copyDomains.push_back(r);
    st.shiftDomains.push_back(rs);
  }
}

void ConvPipeline::Impl::defineAlgorithm(ConvStages &st, const std::vector<ConvGroupShape> &groups,
                                         const std::vector<ConvGroupShape> &planeList,
                                         const std::vector<int> &planeOf, int numSlots,
                                         bool hasBias, const CpuSchedule &schedule, int alignment) {
  const int R = schedule.tileRows, CW = schedule.tileWidth();
  const int P = schedule.tapBlock;
  const Var &j = st.j, &i = st.i, &c = st.c, &n = st.n;
  const Var &ji = st.ji, &ii = st.ii, &jo = st.jo, &io = st.io;

  for (int s = 0; s < numSlots; ++s) {
    inputs.emplace_back(Float(32), 4, "in" + std::to_string(s));
    constrainDense(inputs.back());
  }
  bias = ImageParam(Float(32), 1, "bias");
  const Expr start = hasBias ? Expr(bias(c)) : Expr(0.0f);
  definePlanes(st, planeList, alignment);

  // One accumulator tile per group: acc(ji, ii, jo, io, c, n) is output
  // (jo * CW + ji, io * R + ii) in the group's orientation.
  st.accs.resize(groups.size());
  st.tapDomains.resize(groups.size());
  auto defineAcc = [&](size_t g, const std::function<Expr(Expr, Expr)> &init) {
    GroupParams gp;
    const std::string tag = std::to_string(g);
    gp.offsets = ImageParam(Int(32), 1, "offsets" + tag);
    gp.weights = ImageParam(Float(32), 1, "weights" + tag);
    gp.ranges = ImageParam(Int(32), 3, "ranges" + tag);
    gp.offsetMin = Param<int>("offsetMin" + tag);
    gp.offsetMax = Param<int>("offsetMax" + tag);
    for (const ImageParam *b : {&gp.offsets, &gp.weights, &gp.ranges})
      constrainDense(*b);
    const PlaneParams &pp = planes[planeOf[g]];
    Func acc("acc" + tag);
    acc(ji, ii, jo, io, c, n) = init(jo * CW + ji, io * R + ii);
    // k.x: row within a block of P taps of one column, k.y: the block.
    RDom k(0, P, 0, gp.offsets.dim(0).extent() / P, "tap" + tag);
    k.where(k.y >= gp.ranges(0, io, c) && k.y < gp.ranges(1, io, c));
    Expr offset = unsafe_promise_clamped(gp.offsets(k.y * P), gp.offsetMin, gp.offsetMax);
    // Only taps that reach the tile's rows run, so reads stay within
    // tileRows + P - 2 rows of the image: say so, or bounds inference would
    // pad the plane by the whole kernel. Row ii of tap k.x reads input row
    // ii + k.x of the block: equal for equal sums, so one load serves them.
    Expr at = unsafe_promise_clamped((io * R + ii + k.x + pp.padTop) * pp.stride + pp.padLeft +
                                         jo * CW + offset,
                                     0, pp.numCopies * pp.copyStride - CW);
    acc(ji, ii, jo, io, c, n) += gp.weights(k.y * P + k.x) * st.copies[planeOf[g]](at + ji, c, n);
    this->groups.push_back(gp);
    st.accs[g] = acc;
    st.tapDomains[g] = k;
  };
  auto tileOf = [&](const Func &acc) {
    Func plane(acc.name() + "_plane");
    plane(j, i, c, n) = acc(j % CW, i % R, j / CW, i / R, c, n);
    return plane;
  };

  // Transposed groups first: their sum is a transposed plane.
  bool first = true;
  Func prev;
  st.lastN = groups.size();
  for (size_t g = 0; g < groups.size(); ++g)
    if (!groups[g].transposed)
      st.lastN = g;
  for (size_t g = 0; g < groups.size(); ++g) {
    if (!groups[g].transposed)
      continue;
    Func before = prev;
    const bool isFirst = first;
    defineAcc(g, [&](Expr x, Expr y) { return isFirst ? start : Expr(before(x, y, c, n)); });
    prev = tileOf(st.accs[g]);
    st.intermediatePlanes.push_back(prev);
    st.intermediateGroups.push_back(g);
    first = false;
  }
  if (prev.defined()) {
    Func transposedSum = prev;
    st.untransposed = Func("untransposed");
    st.untransposed(j, i, c, n) = transposedSum(i, j, c, n);
    prev = st.untransposed;
  }
  st.y = Func("y");
  for (size_t g = 0; g < groups.size(); ++g) {
    if (groups[g].transposed)
      continue;
    Func before = prev;
    const bool isFirst = first;
    defineAcc(g, [&](Expr x, Expr yy) { return isFirst ? start : Expr(before(x, yy, c, n)); });
    if (g == st.lastN) {
      st.lastAcc = st.accs[g];
      st.y(j, i, c, n) = st.accs[g](j % CW, i % R, j / CW, i / R, c, n);
    } else {
      prev = tileOf(st.accs[g]);
      st.intermediatePlanes.push_back(prev);
      st.intermediateGroups.push_back(g);
    }
    first = false;
  }
  if (!st.lastAcc.defined())
    st.y(j, i, c, n) = prev(j, i, c, n);
  constrainDense(st.y.output_buffer());
  // defineAcc pushed group params in definition order; put them in group order.
  std::vector<GroupParams> ordered(groups.size());
  size_t at = 0;
  for (size_t g = 0; g < groups.size(); ++g)
    if (groups[g].transposed)
      ordered[g] = this->groups[at++];
  for (size_t g = 0; g < groups.size(); ++g)
    if (!groups[g].transposed)
      ordered[g] = this->groups[at++];
  this->groups = ordered;
}

std::shared_ptr<ConvPipeline> ConvPipeline::get(const std::vector<ConvGroupShape> &groups,
                                                int numSlots, bool bias,
                                                const CpuSchedule &schedule) {
  std::ostringstream key;
  // Only what the generated code depends on (the rest of the schedule acts
  // on the host side).
  key << "conv slots=" << numSlots << " bias=" << bias << " vec=" << schedule.vectorWidth
      << " tile=" << schedule.tileRows << "x" << schedule.tileVectors
      << " tapBlock=" << schedule.tapBlock << " groups=";
  for (const ConvGroupShape &g : groups)
    key << g.slot << (g.transposed ? "T" : "N") << ",";
  static auto *cache = new PipelineCache<ConvPipeline>();
  return cache->get(
      key.str(), [&] { return std::make_shared<ConvPipeline>(groups, numSlots, bias, schedule); });
}

ConvPipeline::~ConvPipeline() = default;

ConvPipeline::ConvPipeline(const std::vector<ConvGroupShape> &groups, int numSlots, bool hasBias,
                           const CpuSchedule &schedule)
    : impl_(std::make_unique<Impl>()), groups_(groups), schedule_(schedule) {
  if (std::string err = schedule.validate(); !err.empty())
    throw std::invalid_argument(err);
  if (groups.empty())
    throw std::invalid_argument("ConvPipeline: no tap group to compute");
  // Zero-padded flat input planes, one per (slot, orientation) read.
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
  ConvStages stages;
  impl_->defineAlgorithm(stages, groups, planes_, planeOf, numSlots, hasBias, schedule,
                         alignment());
  scheduleConv(stages, schedule);
  impl_->pipeline = Pipeline(stages.y);
  compileForHost(impl_->pipeline, "conv");
  useHostThreadPool(impl_->pipeline);
}

int ConvPipeline::tilesFor(bool transposed, int64_t outH, int64_t outW) const {
  return static_cast<int>(computedRows(transposed, outH, outW) / schedule_.tileRows);
}

int64_t ConvPipeline::computedExtent(bool transposed, int64_t along, int64_t across, int step,
                                     int acrossStep) const {
  if (!transposed)
    return roundUp(along, step);
  // The transposed sum is turned back in 8x8 blocks over the region the
  // untransposed tiles (or the output itself) read.
  const int64_t reach = hasN_ ? roundUp(across, acrossStep) : across;
  return roundUp(roundUp(reach, 8), step);
}

int64_t ConvPipeline::computedRows(bool transposed, int64_t outH, int64_t outW) const {
  return computedExtent(transposed, outH, outW, schedule_.tileRows, schedule_.tileWidth());
}

int64_t ConvPipeline::computedCols(bool transposed, int64_t outH, int64_t outW) const {
  return computedExtent(transposed, outW, outH, schedule_.tileWidth(), schedule_.tileRows);
}

void ConvPipeline::run(ConvCall &call) {
  Impl &im = *impl_;
  if (call.inputs.size() != im.inputs.size() || call.planes.size() != im.planes.size() ||
      call.groups.size() != im.groups.size())
    throw std::invalid_argument("ConvPipeline::run: call does not match the compiled structure");
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
  realizeOnHost(im.pipeline, "conv", call.output, params);
}

} // namespace slak::codegen::cpu

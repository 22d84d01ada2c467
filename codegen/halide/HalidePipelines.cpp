#include "codegen/halide/HalidePipelines.h"

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <functional>
#include <list>
#include <map>
#include <sstream>
#include <stdexcept>
#include <thread>

using namespace Halide;

namespace slak::codegen::cpu {
namespace {

std::atomic<int> compiledCount{0};

int64_t roundUp(int64_t value, int64_t multiple) {
  return (value + multiple - 1) / multiple * multiple;
}

/// Dense NCHW buffers starting at 0: lets Halide fold the index math.
void constrainDense(const OutputImageParam &p) {
  for (int d = 0; d < p.dimensions(); ++d)
    p.dim(d).set_min(0);
  p.dim(0).set_stride(1);
}

/// Compiles for the host. With SLAK_HALIDE_DUMP=dir set, also writes the
/// lowered statement and the assembly of each pipeline there (for tuning).
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

/// Scratch memory for the pipelines' per-plane buffers. Every (n, c) task
/// allocates the same few buffers; a small per-thread cache of freed blocks
/// turns that into pointer swaps instead of malloc/free (and the page faults
/// of a heap that trims itself after every plane).
struct ScratchCache {
  static constexpr size_t kHeader = 64; // keeps the returned pointer 64-byte aligned
  static constexpr int kSlots = 16;
  void *blocks[kSlots] = {};
  size_t sizes[kSlots] = {};
  int count = 0;
  ~ScratchCache() {
    for (int k = 0; k < count; ++k)
      std::free(blocks[k]);
  }
};
thread_local ScratchCache scratchCache;

void *scratchMalloc(JITUserContext *, size_t size) {
  ScratchCache &cache = scratchCache;
  int best = -1;
  for (int k = 0; k < cache.count; ++k)
    if (cache.sizes[k] >= size && (best < 0 || cache.sizes[k] < cache.sizes[best]))
      best = k;
  char *block;
  if (best >= 0) {
    block = static_cast<char *>(cache.blocks[best]);
    --cache.count;
    cache.blocks[best] = cache.blocks[cache.count];
    cache.sizes[best] = cache.sizes[cache.count];
  } else {
    // Halide may read a little past either end of a buffer: pad both sides.
    const size_t bytes = (size + 2 * ScratchCache::kHeader + 63) / 64 * 64;
    block = static_cast<char *>(std::aligned_alloc(64, bytes));
    if (block == nullptr)
      return nullptr;
    *reinterpret_cast<size_t *>(block) = size;
  }
  return block + ScratchCache::kHeader;
}

void scratchFree(JITUserContext *, void *ptr) {
  if (ptr == nullptr)
    return;
  char *block = static_cast<char *>(ptr) - ScratchCache::kHeader;
  const size_t size = *reinterpret_cast<size_t *>(block);
  ScratchCache &cache = scratchCache;
  if (cache.count < ScratchCache::kSlots) {
    cache.blocks[cache.count] = block;
    cache.sizes[cache.count] = size;
    ++cache.count;
    return;
  }
  // Full: keep the larger of this block and the smallest cached one.
  int smallest = 0;
  for (int k = 1; k < cache.count; ++k)
    if (cache.sizes[k] < cache.sizes[smallest])
      smallest = k;
  if (cache.sizes[smallest] >= size) {
    std::free(block);
    return;
  }
  std::free(cache.blocks[smallest]);
  cache.blocks[smallest] = block;
  cache.sizes[smallest] = size;
}

/// Realizes `pipeline` with the scratch cache as its allocator.
void realizeWithScratch(Pipeline &pipeline, Pipeline::RealizationArg output,
                        const ParamMap &params) {
  JITUserContext context;
  context.handlers.custom_malloc = scratchMalloc;
  context.handlers.custom_free = scratchFree;
  pipeline.realize(&context, std::move(output), hostTarget(), params);
}

/// Halide reports run-time failures (a buffer too small, ...) through an
/// error handler; turn them into exceptions naming the pipeline.
void runChecked(const char *what, const std::function<void()> &body) {
  try {
    body();
  } catch (const Halide::Error &e) {
    throw std::runtime_error(std::string("Halide ") + what + " pipeline failed: " + e.what());
  }
}

} // namespace

const Target &hostTarget() {
  static const Target target = get_jit_target_from_environment();
  return target;
}

int compiledPipelineCount() { return compiledCount.load(); }

namespace {

/// The compiled pipelines, most recently used first, at most kCachedPipelines
/// per kind: a compiled pipeline holds megabytes (more after running on large
/// layers), and a tuning run compiles hundreds. Objects that hold a pipeline
/// (CpuLkConv, so every runtime kernel) keep it alive; an evicted one is
/// compiled again only when a new object asks for it.
constexpr size_t kCachedPipelines = 8;

template <typename T> class PipelineCache {
public:
  template <typename Make> std::shared_ptr<T> get(const std::string &key, Make make) {
    std::lock_guard<std::mutex> lock(mutex_);
    for (auto it = entries_.begin(); it != entries_.end(); ++it)
      if (it->first == key) {
        entries_.splice(entries_.begin(), entries_, it);
        return entries_.front().second;
      }
    entries_.emplace_front(key, make());
    if (entries_.size() > kCachedPipelines)
      entries_.pop_back();
    return entries_.front().second;
  }

private:
  std::mutex mutex_;
  std::list<std::pair<std::string, std::shared_ptr<T>>> entries_;
};

} // namespace

void setHalideThreads(int threads) {
  static std::mutex mutex;
  static int current = -1;
  static int (*setNumThreads)(int) = nullptr;
  std::lock_guard<std::mutex> lock(mutex);
  if (threads <= 0)
    threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  if (threads == current)
    return;
  if (setNumThreads == nullptr) {
    // The thread pool lives in the JIT runtime shared by every pipeline; make
    // sure it exists, then call its halide_set_num_threads.
    auto modules = Internal::JITSharedRuntime::get(nullptr, hostTarget(), false);
    if (modules.empty()) {
      Func probe("slak_runtime_probe");
      Var x;
      probe(x) = x;
      Buffer<int32_t> out(1);
      probe.realize(out, hostTarget());
      modules = Internal::JITSharedRuntime::get(nullptr, hostTarget(), false);
    }
    for (const Internal::JITModule &m : modules) {
      auto it = m.exports().find("halide_set_num_threads");
      if (it != m.exports().end())
        setNumThreads = reinterpret_cast<int (*)(int)>(it->second.address);
    }
    if (setNumThreads == nullptr)
      throw std::runtime_error("Halide JIT runtime has no halide_set_num_threads; cannot set the "
                               "CPU thread count");
  }
  setNumThreads(threads);
  current = threads;
}

// ---------------------------------------------------------------------------
// Conv pipeline (forward, backward-data)

struct ConvPipeline::Impl {
  std::vector<ImageParam> inputs;
  struct PlaneParams {
    Param<int> padTop, padLeft, stride, rows, copyStride, numCopies;
    ImageParam shifts;
  };
  std::vector<PlaneParams> planes;
  struct GroupParams {
    ImageParam offsets, weights, ranges;
    Param<int> offsetMin, offsetMax;
  };
  std::vector<GroupParams> groups;
  ImageParam bias;
  Pipeline pipeline;
  std::mutex runMutex;
};

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
  const int V = schedule.vectorWidth, R = schedule.tileRows, CW = schedule.tileWidth();
  const int P = schedule.tapBlock;
  Impl &im = *impl_;
  Var j("j"), i("i"), c("c"), n("n"), p("p");
  Var ji("ji"), ii("ii"), jo("jo"), io("io"), cn("cn"), jv("jv"), jl("jl"), jt("jt"), it("it");

  for (int s = 0; s < numSlots; ++s) {
    im.inputs.emplace_back(Float(32), 4, "in" + std::to_string(s));
    constrainDense(im.inputs.back());
  }
  im.bias = ImageParam(Float(32), 1, "bias");
  const Expr start = hasBias ? Expr(im.bias(c)) : Expr(0.0f);

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
  std::vector<Func> flats, copies, transposedInputs;
  std::vector<RDom> copyDomains, shiftDomains;
  for (size_t q = 0; q < planes_.size(); ++q) {
    const ConvGroupShape &plane = planes_[q];
    ImageParam &in = im.inputs.at(plane.slot);
    Impl::PlaneParams pp;
    const std::string tag = std::to_string(q);
    pp.padTop = Param<int>("padTop" + tag);
    pp.padLeft = Param<int>("padLeft" + tag);
    pp.stride = Param<int>("stride" + tag);
    pp.rows = Param<int>("rows" + tag);
    pp.copyStride = Param<int>("copyStride" + tag);
    pp.numCopies = Param<int>("numCopies" + tag);
    pp.shifts = ImageParam(Int(32), 1, "shifts" + tag);
    constrainDense(pp.shifts);
    im.planes.push_back(pp);
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
      transposedInputs.push_back(tr);
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
    Expr shift = unsafe_promise_clamped(pp.shifts(rs.y), 0, alignment() - 1);
    shifted(rs.x + rs.y * pp.copyStride, c, n) = flat(rs.x + shift, c, n);
    flats.push_back(flat);
    copies.push_back(shifted);
    copyDomains.push_back(r);
    shiftDomains.push_back(rs);
  }

  // One accumulator tile per group: acc(ji, ii, jo, io, c, n) is output
  // (jo * CW + ji, io * R + ii) in the group's orientation.
  std::vector<Func> accs(groups.size());
  std::vector<RDom> tapDomains(groups.size());
  auto defineAcc = [&](size_t g, const std::function<Expr(Expr, Expr)> &init) {
    Impl::GroupParams gp;
    const std::string tag = std::to_string(g);
    gp.offsets = ImageParam(Int(32), 1, "offsets" + tag);
    gp.weights = ImageParam(Float(32), 1, "weights" + tag);
    gp.ranges = ImageParam(Int(32), 3, "ranges" + tag);
    gp.offsetMin = Param<int>("offsetMin" + tag);
    gp.offsetMax = Param<int>("offsetMax" + tag);
    for (const ImageParam *b : {&gp.offsets, &gp.weights, &gp.ranges})
      constrainDense(*b);
    const Impl::PlaneParams &pp = im.planes[planeOf[g]];
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
    acc(ji, ii, jo, io, c, n) += gp.weights(k.y * P + k.x) * copies[planeOf[g]](at + ji, c, n);
    im.groups.push_back(gp);
    accs[g] = acc;
    tapDomains[g] = k;
  };
  auto tileOf = [&](const Func &acc) {
    Func plane(acc.name() + "_plane");
    plane(j, i, c, n) = acc(j % CW, i % R, j / CW, i / R, c, n);
    return plane;
  };

  // Transposed groups first: their sum is a transposed plane.
  bool first = true;
  Func prev, transposedSum, untransposed;
  std::vector<Func> intermediatePlanes;
  std::vector<size_t> intermediateGroups;
  size_t lastN = groups.size();
  for (size_t g = 0; g < groups.size(); ++g)
    if (!groups[g].transposed)
      lastN = g;
  for (size_t g = 0; g < groups.size(); ++g) {
    if (!groups[g].transposed)
      continue;
    Func before = prev;
    const bool isFirst = first;
    defineAcc(g, [&](Expr x, Expr y) { return isFirst ? start : Expr(before(x, y, c, n)); });
    prev = tileOf(accs[g]);
    intermediatePlanes.push_back(prev);
    intermediateGroups.push_back(g);
    first = false;
  }
  if (prev.defined()) {
    transposedSum = prev;
    untransposed = Func("untransposed");
    untransposed(j, i, c, n) = transposedSum(i, j, c, n);
    prev = untransposed;
  }
  Func y("y"), lastAcc;
  for (size_t g = 0; g < groups.size(); ++g) {
    if (groups[g].transposed)
      continue;
    Func before = prev;
    const bool isFirst = first;
    defineAcc(g, [&](Expr x, Expr yy) { return isFirst ? start : Expr(before(x, yy, c, n)); });
    if (g == lastN) {
      lastAcc = accs[g];
      y(j, i, c, n) = accs[g](j % CW, i % R, j / CW, i / R, c, n);
    } else {
      prev = tileOf(accs[g]);
      intermediatePlanes.push_back(prev);
      intermediateGroups.push_back(g);
    }
    first = false;
  }
  if (!lastAcc.defined())
    y(j, i, c, n) = prev(j, i, c, n);
  // defineAcc pushed group params in definition order; put them in group order.
  {
    std::vector<Impl::GroupParams> ordered(groups.size());
    size_t at = 0;
    for (size_t g = 0; g < groups.size(); ++g)
      if (groups[g].transposed)
        ordered[g] = im.groups[at++];
    for (size_t g = 0; g < groups.size(); ++g)
      if (!groups[g].transposed)
        ordered[g] = im.groups[at++];
    im.groups = ordered;
  }

  // Schedule: everything of one (n, c) plane inside one parallel task.
  constrainDense(y.output_buffer());
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
  if (lastAcc.defined()) {
    y.split(j, jo, ji, CW, TailStrategy::GuardWithIf)
        .split(i, io, ii, R, TailStrategy::GuardWithIf)
        .reorder(ji, ii, jo, io, c, n)
        .fuse(c, n, cn)
        .parallel(cn)
        .vectorize(ji, V, TailStrategy::GuardWithIf);
    lastAcc.compute_at(y, jo);
    scheduleAcc(lastAcc, tapDomains[lastN]);
  } else {
    y.tile(j, i, jt, it, 8, 8, TailStrategy::GuardWithIf)
        .fuse(c, n, cn)
        .parallel(cn)
        .vectorize(jt)
        .unroll(it);
  }
  for (size_t q = 0; q < intermediatePlanes.size(); ++q) {
    Func &plane = intermediatePlanes[q];
    plane.compute_at(y, cn)
        .split(j, jo, ji, CW, TailStrategy::RoundUp)
        .split(i, io, ii, R, TailStrategy::RoundUp)
        .reorder(ji, ii, jo, io)
        .vectorize(ji, V);
    Func &acc = accs[intermediateGroups[q]];
    acc.compute_at(plane, jo);
    scheduleAcc(acc, tapDomains[intermediateGroups[q]]);
  }
  if (untransposed.defined() && lastAcc.defined())
    untransposed.compute_at(y, cn)
        .tile(j, i, jt, it, 8, 8, TailStrategy::RoundUp)
        .vectorize(jt)
        .unroll(it);
  else if (untransposed.defined())
    untransposed.compute_inline();
  for (Func &tr : transposedInputs)
    tr.compute_at(y, cn)
        .tile(j, i, jt, it, 8, 8, TailStrategy::GuardWithIf)
        .vectorize(jt)
        .unroll(it);
  for (size_t q = 0; q < copies.size(); ++q) {
    flats[q].compute_at(y, cn).vectorize(p, 2 * V, TailStrategy::RoundUp);
    flats[q].update(0).allow_race_conditions().vectorize(copyDomains[q].x, V,
                                                         TailStrategy::GuardWithIf);
    copies[q].compute_at(y, cn);
    copies[q].update(0).allow_race_conditions().vectorize(shiftDomains[q].x, 2 * V,
                                                          TailStrategy::GuardWithIf);
  }

  im.pipeline = Pipeline(y);
  compileForHost(im.pipeline, "conv");
}

int ConvPipeline::tilesFor(bool transposed, int64_t outH, int64_t outW) const {
  return static_cast<int>(computedRows(transposed, outH, outW) / schedule_.tileRows);
}

int64_t ConvPipeline::computedRows(bool transposed, int64_t outH, int64_t outW) const {
  const int R = schedule_.tileRows, CW = schedule_.tileWidth();
  if (!transposed)
    return roundUp(outH, R);
  // The transposed sum is turned back in 8x8 blocks over the region the
  // untransposed tiles (or the output itself) read.
  const int64_t cols = hasN_ ? roundUp(outW, CW) : outW;
  return roundUp(roundUp(cols, 8), R);
}

int64_t ConvPipeline::computedCols(bool transposed, int64_t outH, int64_t outW) const {
  const int R = schedule_.tileRows, CW = schedule_.tileWidth();
  if (!transposed)
    return roundUp(outW, CW);
  const int64_t rows = hasN_ ? roundUp(outH, R) : outH;
  return roundUp(roundUp(rows, 8), CW);
}

void ConvPipeline::run(ConvCall &call) {
  Impl &im = *impl_;
  if (call.inputs.size() != im.inputs.size() || call.planes.size() != im.planes.size() ||
      call.groups.size() != im.groups.size())
    throw std::invalid_argument("ConvPipeline::run: call does not match the compiled structure");
  ParamMap params;
  for (size_t s = 0; s < im.inputs.size(); ++s)
    params.set(im.inputs[s], call.inputs[s]);
  for (size_t q = 0; q < im.planes.size(); ++q) {
    params.set(im.planes[q].padTop, call.planes[q].padTop);
    params.set(im.planes[q].padLeft, call.planes[q].padLeft);
    params.set(im.planes[q].stride, call.planes[q].stride);
    params.set(im.planes[q].rows, call.planes[q].rows);
    params.set(im.planes[q].copyStride, call.planes[q].copyStride);
    params.set(im.planes[q].numCopies, static_cast<int>(call.planes[q].shifts.dim(0).extent()));
    params.set(im.planes[q].shifts, call.planes[q].shifts);
  }
  for (size_t g = 0; g < im.groups.size(); ++g) {
    params.set(im.groups[g].offsets, call.groups[g].offsets);
    params.set(im.groups[g].weights, call.groups[g].weights);
    params.set(im.groups[g].ranges, call.groups[g].ranges);
    params.set(im.groups[g].offsetMin, call.groups[g].offsetMin);
    params.set(im.groups[g].offsetMax, call.groups[g].offsetMax);
  }
  if (call.bias.defined())
    params.set(im.bias, call.bias);
  std::lock_guard<std::mutex> lock(im.runMutex);
  runChecked("conv", [&] { realizeWithScratch(im.pipeline, call.output, params); });
}

// ---------------------------------------------------------------------------
// Backward-weight pipeline

struct WeightGradPipeline::Impl {
  ImageParam x{Float(32), 4, "x"}, dy{Float(32), 4, "dy"};
  ImageParam offsets{Int(32), 3, "offsets"}, rows{Int(32), 3, "rows"};
  Param<int> padTop{"padTop"}, padLeft{"padLeft"}, stride{"stride"};
  Param<int> copyStride{"copyStride"}, numCopies{"numCopies"};
  ImageParam shifts{Int(32), 1, "shifts"};
  Param<int> dyStride{"dyStride"}, stripCount{"stripCount"};
  Param<int> offsetMin{"offsetMin"}, offsetMax{"offsetMax"};
  Pipeline pipeline;
  std::mutex runMutex;
};

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
  Impl &im = *impl_;
  const int V = schedule.vectorWidth, K = schedule.weightTaps, SV = schedule.weightVectors;
  const int SW = schedule.weightStripWidth();
  Var j("j"), i("i"), c("c"), n("n"), p("p"), l("l"), kk("kk"), kb("kb"), jt("jt"), it("it");
  const int A = std::max(8, V);
  for (const ImageParam *b : {&im.x, &im.dy, &im.offsets, &im.rows, &im.shifts})
    constrainDense(*b);

  // Padded flat planes of x and dy in the group's orientation.
  auto source = [&](ImageParam &in, std::vector<Func> &transposes, const std::string &tag) {
    Func f(tag);
    if (transposed) {
      f(j, i, c, n) = in(i, j, c, n);
      transposes.push_back(f);
    } else {
      f(j, i, c, n) = in(j, i, c, n);
    }
    return f;
  };
  std::vector<Func> transposes;
  Func xs = source(im.x, transposes, "xT"), dys = source(im.dy, transposes, "dyT");
  Expr xw = transposed ? im.x.dim(1).extent() : im.x.dim(0).extent();
  Expr xh = transposed ? im.x.dim(0).extent() : im.x.dim(1).extent();
  Expr dw = transposed ? im.dy.dim(1).extent() : im.dy.dim(0).extent();
  Expr dh = transposed ? im.dy.dim(0).extent() : im.dy.dim(1).extent();
  Func xflat("xflat"), dyflat("dyflat");
  xflat(p, c, n) = 0.0f;
  RDom rx(0, xw, 0, xh, "copyX");
  xflat(rx.x + im.padLeft + (rx.y + im.padTop) * im.stride, c, n) = xs(rx.x, rx.y, c, n);
  // Shifted copies of the x plane, as in the conv pipeline: aligned loads.
  Func shifted("shifted");
  shifted(p, c, n) = undef<float>();
  RDom rs(0, im.copyStride, 0, im.numCopies, "shift");
  shifted(rs.x + rs.y * im.copyStride, c, n) =
      xflat(rs.x + unsafe_promise_clamped(im.shifts(rs.y), 0, A - 1), c, n);
  dyflat(p, c, n) = 0.0f;
  RDom rd(0, dw, 0, dh, "copyDy");
  dyflat(rd.x + rd.y * im.dyStride, c, n) = dys(rd.x, rd.y, c, n);

  // partial(l, kk, kb, c, n): lane l of the dW partial sum of tap kk of block kb.
  Func partial("partial");
  partial(l, kk, kb, c, n) = 0.0f;
  // r.x: vector within a strip, r.y: dy row, r.z: strip. Rows run innermost
  // (a tight loop with two pointer bumps), strips outside.
  RDom r(0, SV, 0, dh, 0, im.stripCount, "pos");
  r.where(r.y >= im.rows(0, kb, c) && r.y < im.rows(1, kb, c));
  Expr col = r.z * SW + r.x * V + l;
  Expr offset = unsafe_promise_clamped(im.offsets(kk, kb, c), im.offsetMin, im.offsetMax);
  // A block only runs over the dy rows its taps can reach, so its reads stay
  // within padTop rows of the image (the host sizes padTop for that).
  Expr at = unsafe_promise_clamped((r.y + im.padTop) * im.stride + im.padLeft + r.z * SW + offset,
                                   0, im.numCopies * im.copyStride - SW);
  partial(l, kk, kb, c, n) +=
      dyflat(r.y * im.dyStride + col, c, n) * shifted(at + r.x * V + l, c, n);

  Func dW("dW");
  dW(kk, kb, c) = 0.0f;
  RDom rn(0, im.x.dim(3).extent(), "batch");
  Expr lanes = partial(0, kk, kb, c, rn);
  for (int lane = 1; lane < V; ++lane)
    lanes += partial(lane, kk, kb, c, rn);
  dW(kk, kb, c) += lanes;

  constrainDense(dW.output_buffer());
  dW.parallel(c);
  dW.update(0).reorder(kk, kb, rn, c).parallel(c);
  partial.compute_at(dW, kb)
      .bound(l, 0, V)
      .bound(kk, 0, K)
      .bound_extent(kb, 1)
      .bound_extent(c, 1)
      .bound_extent(n, 1)
      .vectorize(l)
      .unroll(kk);
  partial.update(0).reorder(l, kk, r.x, r.y, r.z, kb, c, n).vectorize(l).unroll(kk).unroll(r.x);
  for (Func f : {xflat, dyflat}) {
    f.compute_at(dW, rn).vectorize(p, 2 * V, TailStrategy::RoundUp);
  }
  xflat.update(0).allow_race_conditions().vectorize(rx.x, V, TailStrategy::GuardWithIf);
  shifted.compute_at(dW, rn);
  shifted.update(0).allow_race_conditions().vectorize(rs.x, 2 * V, TailStrategy::GuardWithIf);
  dyflat.update(0).allow_race_conditions().vectorize(rd.x, V, TailStrategy::GuardWithIf);
  for (Func &tr : transposes)
    tr.compute_at(dW, rn)
        .tile(j, i, jt, it, 8, 8, TailStrategy::GuardWithIf)
        .vectorize(jt)
        .unroll(it);
  if (!transposed) {
    xs.compute_inline();
    dys.compute_inline();
  }

  im.pipeline = Pipeline(dW);
  compileForHost(im.pipeline, "weight_grad");
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
  runChecked("backward-weight", [&] { realizeWithScratch(im.pipeline, call.output, params); });
}

// ---------------------------------------------------------------------------
// Bias gradient

struct BiasGradPipeline::Impl {
  ImageParam dy{Float(32), 4, "dy"};
  Pipeline pipeline;
  std::mutex runMutex;
};

std::shared_ptr<BiasGradPipeline> BiasGradPipeline::get() {
  static std::mutex mutex;
  static std::shared_ptr<BiasGradPipeline> cached;
  std::lock_guard<std::mutex> lock(mutex);
  if (!cached)
    cached = std::make_shared<BiasGradPipeline>();
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
  runChecked("bias-gradient", [&] { realizeWithScratch(im.pipeline, dbias, params); });
}

} // namespace slak::codegen::cpu

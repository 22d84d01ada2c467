#include "codegen/halide/CpuLkConv.h"

#include "codegen/halide/ChannelsLastConv.h"
#include "codegen/halide/ChannelsLastWeightGrad.h"
#include "codegen/halide/HalidePipelines.h"

#include <algorithm>
#include <cstring>
#include <stdexcept>
#include <string>

namespace slak::codegen::cpu {
namespace {

using Halide::Buffer;

int64_t roundUp(int64_t value, int64_t multiple) {
  return (value + multiple - 1) / multiple * multiple;
}

int toInt(int64_t value, const char *what) {
  if (value > INT32_MAX || value < INT32_MIN)
    throw std::invalid_argument(std::string("CpuLkConv: ") + what + " " + std::to_string(value) +
                                " does not fit the 32-bit index math of the CPU pipelines");
  return static_cast<int>(value);
}

Buffer<float> wrap(const float *data, int64_t w, int64_t h, int64_t c, int64_t n) {
  return Buffer<float>(const_cast<float *>(data), {toInt(w, "width"), toInt(h, "height"),
                                                   toInt(c, "channels"), toInt(n, "batch")});
}

/// A [C, W, H, N] view of an NCHW or NHWC image (the channels-last
/// pipelines' buffers).
Buffer<float> wrapImage(const float *data, int64_t w, int64_t h, int64_t c, int64_t n,
                        bool channelsLast) {
  const int C = toInt(c, "channels"), W = toInt(w, "width"), H = toInt(h, "height");
  const int N = toInt(n, "batch");
  toInt(c * w * h * n, "tensor size");
  halide_dimension_t dims[4];
  if (channelsLast) {
    dims[0] = {0, C, 1};
    dims[1] = {0, W, C};
    dims[2] = {0, H, W * C};
    dims[3] = {0, N, H * W * C};
  } else {
    dims[0] = {0, C, H * W};
    dims[1] = {0, W, 1};
    dims[2] = {0, H, W};
    dims[3] = {0, N, C * H * W};
  }
  return Buffer<float>(const_cast<float *>(data), 4, dims);
}

/// Sizes of the plane a pass reads and of the plane it writes (for
/// backward-weight: the dy positions it sums over), untransposed.
struct PassSizes {
  int64_t readH, readW, writeH, writeW;
};

PassSizes passSizes(const KernelSpec &spec, Pass pass, int64_t h, int64_t w) {
  const int64_t oh = spec.outHeight(h), ow = spec.outWidth(w);
  if (pass == Pass::BackwardData)
    return {oh, ow, h, w};
  return {h, w, oh, ow};
}

/// Lowest and highest du / dv over the groups that read one plane.
struct Reach {
  int duMin = 0, duMax = 0, dvMin = 0, dvMax = 0;
  void add(const TapGroup &g) {
    duMin = std::min(duMin, g.duMin);
    duMax = std::max(duMax, g.duMax);
    dvMin = std::min(dvMin, g.dvMin);
    dvMax = std::max(dvMax, g.dvMax);
  }
};

} // namespace

struct CpuLkConv::Prepared {
  CpuSchedule schedule;
  TapPlan plan;
  PassSizes sizes{};
  // Conv passes: one pipeline call, or one per group with per-branch outputs.
  struct ConvRun {
    std::shared_ptr<ConvPipeline> pipeline;
    ConvCall call;
    std::vector<int> groups; // plan group of each call group
  };
  std::vector<ConvRun> conv;
  // Backward-weight: one call per group, then a scatter into dense dW.
  struct WeightRun {
    std::shared_ptr<WeightGradPipeline> pipeline;
    WeightGradCall call;
    int group = 0;
    std::vector<int32_t> outputIndex; // per planned tap
  };
  std::vector<WeightRun> weight;
  // The same with the channels-last pipelines (schedule.channelsLast).
  struct BlockConvRun {
    std::shared_ptr<ChannelsLastConvPipeline> pipeline;
    ChannelsLastConvCall call;
    std::vector<int> groups;
  };
  std::vector<BlockConvRun> blockConv;
  struct BlockWeightRun {
    std::shared_ptr<ChannelsLastWeightGradPipeline> pipeline;
    ChannelsLastWeightGradCall call;
    int group = 0;
    std::vector<int32_t> outputIndex; // per planned tap, lane 0
  };
  std::vector<BlockWeightRun> blockWeight;

  /// The weights the conv calls' tap weights were gathered from. Gathering
  /// scatters every live tap of every channel (slower than the whole conv at
  /// batch 1 on small images); an unchanged set (inference, the repeated
  /// calls of one layer) keeps what was gathered.
  std::vector<std::vector<float>> gatheredFrom;
  /// True when `weights` equal gatheredFrom; otherwise records them.
  bool sameWeights(const KernelSpec &spec, const std::vector<const float *> &weights) {
    bool same = gatheredFrom.size() == weights.size();
    gatheredFrom.resize(weights.size());
    for (size_t b = 0; b < weights.size(); ++b) {
      const Branch &br = spec.branches[b];
      const size_t n = static_cast<size_t>(spec.channels * br.kernelH * br.kernelW);
      std::vector<float> &saved = gatheredFrom[b];
      if (same && saved.size() == n &&
          std::memcmp(saved.data(), weights[b], n * sizeof(float)) == 0)
        continue;
      same = false;
      saved.assign(weights[b], weights[b] + n);
    }
    return same;
  }
};

CpuLkConv::CpuLkConv(const KernelSpec &spec) : CpuLkConv(spec, defaultCpuSchedule(spec, 56, 56)) {
  autoSchedule_ = true;
}

CpuSchedule CpuLkConv::scheduleFor(int64_t height, int64_t width) const {
  return autoSchedule_ ? defaultCpuSchedule(spec_, height, width) : schedule_;
}

CpuLkConv::CpuLkConv(const KernelSpec &spec, const CpuSchedule &schedule)
    : spec_(spec), schedule_(schedule) {
  if (std::string err = spec.validate(); !err.empty())
    throw std::invalid_argument("CpuLkConv: invalid spec: " + err);
  if (std::string err = schedule.validate(); !err.empty())
    throw std::invalid_argument("CpuLkConv: " + err);
  if (spec.elementType != ElementType::F32)
    throw std::invalid_argument(std::string("CpuLkConv: element type ") +
                                elementTypeName(spec.elementType) +
                                " is not supported by the CPU backend; convert to f32 at the "
                                "boundary (spec.elementType = F32)");
}

CpuLkConv::~CpuLkConv() = default;

void CpuLkConv::setTaps(const TapTable &table) {
  std::lock_guard<std::mutex> lock(mutex_);
  taps_ = table;
  prepared_.clear();
}

void CpuLkConv::checkShape(const char *fn, const Shape &in) const {
  auto fail = [&](const std::string &what) {
    throw std::invalid_argument(std::string("CpuLkConv::") + fn + ": " + what);
  };
  if (in.n <= 0 || in.c <= 0 || in.h <= 0 || in.w <= 0)
    fail("input shape " + std::to_string(in.n) + "x" + std::to_string(in.c) + "x" +
         std::to_string(in.h) + "x" + std::to_string(in.w) + " has a non-positive dimension");
  if (in.c != spec_.channels)
    fail("input has " + std::to_string(in.c) + " channels, expected " +
         std::to_string(spec_.channels) + " (spec.channels)");
  if (spec_.height != -1 && in.h != spec_.height)
    fail("input height is " + std::to_string(in.h) + ", expected " + std::to_string(spec_.height));
  if (spec_.width != -1 && in.w != spec_.width)
    fail("input width is " + std::to_string(in.w) + ", expected " + std::to_string(spec_.width));
  if (spec_.outHeight(in.h) <= 0 || spec_.outWidth(in.w) <= 0)
    fail("input " + std::to_string(in.h) + "x" + std::to_string(in.w) +
         " gives an empty output; it must be at least kernel - 2 * padding");
}

void CpuLkConv::prepare(Pass pass, int64_t height, int64_t width) {
  std::lock_guard<std::mutex> lock(mutex_);
  prepared(pass, height, width);
}

CpuLkConv::Prepared &CpuLkConv::prepared(Pass pass, int64_t h, int64_t w) {
  auto key = std::make_tuple(static_cast<int>(pass), h, w);
  if (auto it = prepared_.find(key); it != prepared_.end())
    return *it->second;
  auto prep = std::make_unique<Prepared>();
  prep->schedule = scheduleFor(h, w);
  const CpuSchedule &sched = prep->schedule;
  prep->plan = planTaps(spec_, sched, pass, taps_ ? &*taps_ : nullptr, h, w);
  prep->sizes = passSizes(spec_, pass, h, w);
  const TapPlan &plan = prep->plan;
  const PassSizes &sz = prep->sizes;
  const int64_t C = spec_.channels;
  if (sched.channelsLast) {
    prepareChannelsLast(*prep);
    return *prepared_.emplace(key, std::move(prep)).first->second;
  }

  if (pass != Pass::BackwardWeight) {
    const bool bias = spec_.hasBias && pass == Pass::Forward && !plan.outputPerGroup;
    for (const std::vector<int> &members : pipelineRuns(plan)) {
      Prepared::ConvRun run;
      run.groups = members;
      std::vector<ConvGroupShape> shapes;
      for (int g : members)
        shapes.push_back(
            {plan.outputPerGroup ? 0 : plan.groups[g].slot, plan.groups[g].transposed});
      const int slots = plan.outputPerGroup ? 1 : plan.numSlots;
      run.pipeline = ConvPipeline::get(shapes, slots, bias, sched);
      const ConvPipeline &pipe = *run.pipeline;
      run.call.inputs.resize(slots);

      // Padded layout of each input plane: every tile row / column the
      // pipeline may compute, shifted by every offset of its groups, must
      // land inside one padded row. Rows need only tileRows - 1 of padding:
      // taps that cannot reach a band of tile rows do not run for it (a block
      // of P taps reaches P - 1 rows further).
      const int A = pipe.alignment();
      const int P = plan.groups.empty() ? 1 : plan.groups.front().tapBlock;
      const int R = sched.tileRows, reachRows = R - 1 + P - 1;
      for (const ConvGroupShape &q : pipe.planes()) {
        Reach reach;
        for (size_t m = 0; m < members.size(); ++m)
          if (shapes[m].slot == q.slot && shapes[m].transposed == q.transposed)
            reach.add(plan.groups[members[m]]);
        const int64_t planeW = q.transposed ? sz.readH : sz.readW;
        const int64_t planeH = q.transposed ? sz.readW : sz.readH;
        const int64_t cols = pipe.computedCols(q.transposed, sz.writeH, sz.writeW);
        ConvCall::Plane layout;
        layout.padTop = reachRows;
        layout.padLeft = std::max(0, -reach.dvMin);
        layout.stride =
            toInt(roundUp(layout.padLeft + std::max(planeW, cols + std::max(0, reach.dvMax)), A),
                  "padded plane width");
        layout.rows = toInt(planeH + 2 * reachRows, "padded plane height");
        layout.copyStride =
            toInt(layout.rows * int64_t{layout.stride} + 2 * A, "padded plane size");
        run.call.planes.push_back(layout);
      }
      // Which shifted copies each plane needs (filled below, per tap).
      std::vector<std::vector<int>> copyOfShift(pipe.planes().size(), std::vector<int>(A, -1));
      std::vector<std::vector<int32_t>> shiftsUsed(pipe.planes().size());
      for (size_t m = 0; m < members.size(); ++m) {
        const TapGroup &g = plan.groups[members[m]];
        const auto planeIt =
            std::find_if(pipe.planes().begin(), pipe.planes().end(), [&](const ConvGroupShape &q) {
              return q.slot == shapes[m].slot && q.transposed == shapes[m].transposed;
            });
        const size_t planeIndex = planeIt - pipe.planes().begin();
        const ConvCall::Plane &layout = run.call.planes[planeIndex];
        const int64_t S = layout.stride;
        const int64_t taps = std::max<int64_t>(1, g.numTaps());
        ConvCall::Group data;
        data.offsets = Buffer<int32_t>(toInt(taps, "tap count"));
        data.weights = Buffer<float>(toInt(taps, "tap count"));
        data.offsets.fill(0);
        data.weights.fill(0.0f);
        int64_t offMin = 0, offMax = 0;
        for (int64_t t = 0; t < g.numTaps(); ++t) {
          const int64_t offset = g.du[t] * S + g.dv[t];
          const int shift =
              sched.alignLoads ? static_cast<int>(((layout.padLeft + offset) % A + A) % A) : 0;
          int &copy = copyOfShift[planeIndex][shift];
          if (copy < 0) {
            copy = static_cast<int>(shiftsUsed[planeIndex].size());
            shiftsUsed[planeIndex].push_back(shift);
          }
          const int64_t at = copy * static_cast<int64_t>(layout.copyStride) + offset - shift;
          data.offsets(t) = toInt(at, "tap offset");
          offMin = std::min(offMin, at);
          offMax = std::max(offMax, at);
        }
        data.offsetMin = toInt(offMin, "tap offset");
        data.offsetMax = toInt(offMax, "tap offset");
        // Taps (blocks of P taps: indices in blocks) that reach the rows of
        // each band of tiles: a contiguous range, blocks being sorted by du0.
        const int tiles = pipe.tilesFor(g.transposed, sz.writeH, sz.writeW);
        const int64_t planeH = g.transposed ? sz.readW : sz.readH;
        data.ranges = Buffer<int32_t>(2, tiles, toInt(C, "channels"));
        std::vector<int32_t> du0;
        for (int64_t c = 0; c < C; ++c) {
          du0.clear();
          for (int64_t t = g.channelBegin[c]; t < g.channelBegin[c + 1]; t += P)
            du0.push_back(g.du[t]);
          const int32_t base = g.channelBegin[c] / P;
          for (int t = 0; t < tiles; ++t) {
            const auto [first, last] = blocksReachingBand(du0, t, R, P, planeH);
            data.ranges(0, t, c) = base + static_cast<int32_t>(first);
            data.ranges(1, t, c) = base + static_cast<int32_t>(last);
          }
        }
        run.call.groups.push_back(std::move(data));
      }
      for (size_t q = 0; q < shiftsUsed.size(); ++q) {
        if (shiftsUsed[q].empty())
          shiftsUsed[q].push_back(0);
        Buffer<int32_t> shifts(static_cast<int>(shiftsUsed[q].size()));
        for (size_t k = 0; k < shiftsUsed[q].size(); ++k)
          shifts(static_cast<int>(k)) = shiftsUsed[q][k];
        run.call.planes[q].shifts = shifts;
      }
      prep->conv.push_back(std::move(run));
    }
  } else {
    const int K = sched.weightTaps, SW = sched.weightStripWidth();
    for (size_t gi = 0; gi < plan.groups.size(); ++gi) {
      const TapGroup &g = plan.groups[gi];
      Prepared::WeightRun run;
      run.group = static_cast<int>(gi);
      run.pipeline = WeightGradPipeline::get(g.transposed, sched);
      WeightGradCall &call = run.call;
      const int64_t xH = g.transposed ? sz.readW : sz.readH;
      const int64_t xW = g.transposed ? sz.readH : sz.readW;
      const int64_t dyH = g.transposed ? sz.writeW : sz.writeH;
      const int64_t dyW = g.transposed ? sz.writeH : sz.writeW;
      call.stripCount = toInt((dyW + SW - 1) / SW, "strip count");
      call.dyStride = call.stripCount * SW;
      // Blocks of K du-sorted taps; a block runs over the dy rows that any
      // of its taps can reach, so the others read at most (du spread of the
      // block) rows outside the image: that is all the padding needed.
      const int A = WeightGradPipeline::alignment(sched);
      int64_t blocks = 1, spread = 0;
      for (int64_t c = 0; c < C; ++c) {
        const int64_t first = g.channelBegin[c], count = g.channelBegin[c + 1] - first;
        blocks = std::max<int64_t>(blocks, (count + K - 1) / K);
        for (int64_t b = 0; b * K < count; ++b) {
          const int64_t last = first + std::min<int64_t>(count, b * K + K) - 1;
          spread = std::max<int64_t>(spread, g.du[last] - g.du[first + b * K]);
        }
      }
      call.padTop = toInt(spread, "padding");
      call.padLeft = std::max(0, -g.dvMin);
      call.stride = toInt(
          roundUp(call.padLeft + std::max<int64_t>(xW, call.dyStride + std::max(0, g.dvMax)), A),
          "padded plane width");
      call.copyStride = toInt((xH + 2 * spread) * call.stride + 2 * A, "padded plane size");
      const int64_t S = call.stride;
      std::vector<int> copyOfShift(A, -1);
      std::vector<int32_t> shiftsUsed;
      const int B = toInt(blocks, "tap blocks");
      call.offsets = Buffer<int32_t>(K, B, toInt(C, "channels"));
      call.rows = Buffer<int32_t>(2, B, toInt(C, "channels"));
      call.output = Buffer<float>(K, B, toInt(C, "channels"));
      call.offsets.fill(0);
      call.rows.fill(0);
      run.outputIndex.assign(g.numTaps(), 0);
      int64_t offMin = 0, offMax = 0;
      for (int64_t c = 0; c < C; ++c) {
        const int64_t first = g.channelBegin[c], count = g.channelBegin[c + 1] - first;
        for (int64_t b = 0; b * K < count; ++b) {
          for (int64_t k = 0; k < K && b * K + k < count; ++k) {
            const int64_t t = first + b * K + k;
            const int64_t offset = g.du[t] * S + g.dv[t];
            const int shift =
                sched.alignLoads ? static_cast<int>(((call.padLeft + offset) % A + A) % A) : 0;
            if (copyOfShift[shift] < 0) {
              copyOfShift[shift] = static_cast<int>(shiftsUsed.size());
              shiftsUsed.push_back(shift);
            }
            const int64_t at =
                copyOfShift[shift] * static_cast<int64_t>(call.copyStride) + offset - shift;
            call.offsets(k, b, c) = toInt(at, "tap offset");
            offMin = std::min(offMin, at);
            offMax = std::max(offMax, at);
            run.outputIndex[t] = toInt((c * B + b) * K + k, "dW index");
          }
          const auto [rowLo, rowHi] = weightBlockRows(g, c, b, K, dyH, xH);
          call.rows(0, b, c) = toInt(rowLo, "row");
          call.rows(1, b, c) = toInt(rowHi, "row");
        }
      }
      call.offsetMin = toInt(offMin, "tap offset");
      call.offsetMax = toInt(offMax, "tap offset");
      if (shiftsUsed.empty())
        shiftsUsed.push_back(0);
      call.shifts = Buffer<int32_t>(static_cast<int>(shiftsUsed.size()));
      for (size_t k = 0; k < shiftsUsed.size(); ++k)
        call.shifts(static_cast<int>(k)) = shiftsUsed[k];
      prep->weight.push_back(std::move(run));
    }
  }
  return *prepared_.emplace(key, std::move(prep)).first->second;
}

void CpuLkConv::prepareChannelsLast(Prepared &prep) {
  const CpuSchedule &sched = prep.schedule;
  const TapPlan &plan = prep.plan;
  const PassSizes &sz = prep.sizes;
  const int V = sched.vectorWidth;
  const int64_t blocks = plan.numBlocks(spec_.channels);
  const int NB = toInt(blocks, "channel blocks");
  if (plan.pass != Pass::BackwardWeight) {
    const bool bias = spec_.hasBias && plan.pass == Pass::Forward && !plan.outputPerGroup;
    const int P = plan.groups.empty() ? 1 : plan.groups.front().tapBlock;
    const int R = sched.tileRows, reachRows = R - 1 + P - 1;
    for (const std::vector<int> &members : pipelineRuns(plan)) {
      Prepared::BlockConvRun run;
      run.groups = members;
      std::vector<ConvGroupShape> shapes;
      for (int g : members)
        shapes.push_back(
            {plan.outputPerGroup ? 0 : plan.groups[g].slot, plan.groups[g].transposed});
      const int slots = plan.outputPerGroup ? 1 : plan.numSlots;
      run.pipeline = ChannelsLastConvPipeline::get(shapes, slots, bias, sched);
      const ChannelsLastConvPipeline &pipe = *run.pipeline;
      run.call.inputs.resize(slots);
      // Padded planes as in the width-vectorised pipeline, in pixels.
      for (const ConvGroupShape &q : pipe.planes()) {
        Reach reach;
        for (size_t m = 0; m < members.size(); ++m)
          if (shapes[m].slot == q.slot && shapes[m].transposed == q.transposed)
            reach.add(plan.groups[members[m]]);
        const int64_t planeW = q.transposed ? sz.readH : sz.readW;
        const int64_t planeH = q.transposed ? sz.readW : sz.readH;
        const int64_t cols = pipe.computedCols(q.transposed, sz.writeH, sz.writeW);
        ChannelsLastConvCall::Plane layout;
        layout.padTop = reachRows;
        layout.padLeft = std::max(0, -reach.dvMin);
        layout.stride = toInt(layout.padLeft + std::max(planeW, cols + std::max(0, reach.dvMax)),
                              "padded plane width");
        layout.rows = toInt(planeH + 2 * reachRows, "padded plane height");
        toInt(int64_t{layout.rows} * layout.stride * V, "padded plane size");
        run.call.planes.push_back(layout);
      }
      for (size_t m = 0; m < members.size(); ++m) {
        const TapGroup &g = plan.groups[members[m]];
        const auto planeIt =
            std::find_if(pipe.planes().begin(), pipe.planes().end(), [&](const ConvGroupShape &q) {
              return q.slot == shapes[m].slot && q.transposed == shapes[m].transposed;
            });
        const ChannelsLastConvCall::Plane &layout =
            run.call.planes[planeIt - pipe.planes().begin()];
        const int taps = toInt(std::max<int64_t>(1, g.numTaps()), "tap count");
        ChannelsLastConvCall::Group data;
        data.offsets = Buffer<int32_t>(taps);
        data.weights = Buffer<float>(V, taps);
        data.offsets.fill(0);
        data.weights.fill(0.0f);
        int64_t offMin = 0, offMax = 0;
        for (int64_t t = 0; t < g.numTaps(); ++t) {
          const int64_t offset = int64_t{g.du[t]} * layout.stride + g.dv[t];
          data.offsets(static_cast<int>(t)) = toInt(offset, "tap offset");
          offMin = std::min(offMin, offset);
          offMax = std::max(offMax, offset);
        }
        data.offsetMin = toInt(offMin, "tap offset");
        data.offsetMax = toInt(offMax, "tap offset");
        const int tiles = pipe.tilesFor(g.transposed, sz.writeH, sz.writeW);
        const int64_t planeH = g.transposed ? sz.readW : sz.readH;
        data.ranges = Buffer<int32_t>(2, tiles, NB);
        std::vector<int32_t> du0;
        for (int64_t u = 0; u < blocks; ++u) {
          du0.clear();
          for (int64_t t = g.channelBegin[u]; t < g.channelBegin[u + 1]; t += P)
            du0.push_back(g.du[t]);
          const int32_t base = g.channelBegin[u] / P;
          for (int t = 0; t < tiles; ++t) {
            const auto [first, last] = blocksReachingBand(du0, t, R, P, planeH);
            data.ranges(0, t, static_cast<int>(u)) = base + static_cast<int32_t>(first);
            data.ranges(1, t, static_cast<int>(u)) = base + static_cast<int32_t>(last);
          }
        }
        run.call.groups.push_back(std::move(data));
      }
      prep.blockConv.push_back(std::move(run));
    }
    return;
  }
  const int K = sched.weightTaps, SV = sched.weightVectors;
  for (size_t gi = 0; gi < plan.groups.size(); ++gi) {
    const TapGroup &g = plan.groups[gi];
    Prepared::BlockWeightRun run;
    run.group = static_cast<int>(gi);
    run.pipeline = ChannelsLastWeightGradPipeline::get(g.transposed, sched);
    ChannelsLastWeightGradCall &call = run.call;
    const int64_t xH = g.transposed ? sz.readW : sz.readH;
    const int64_t xW = g.transposed ? sz.readH : sz.readW;
    const int64_t dyH = g.transposed ? sz.writeW : sz.writeH;
    const int64_t dyW = g.transposed ? sz.writeH : sz.writeW;
    call.stripCount = toInt((dyW + SV - 1) / SV, "strip count");
    call.dyStride = call.stripCount * SV;
    // Blocks: runs of at most K consecutive columns of one tap row, from
    // each channel block's (du, dv)-sorted taps.
    std::vector<std::vector<TapRun>> runs(blocks);
    int64_t tapBlocks = 1;
    for (int64_t u = 0; u < blocks; ++u) {
      runs[u] = weightTapRuns(g, u, K, dyH, xH);
      tapBlocks = std::max<int64_t>(tapBlocks, static_cast<int64_t>(runs[u].size()));
    }
    // A block's taps share one row, so the dy rows it runs over keep its
    // reads inside the image rows: the plane is padded in columns only, and
    // reaches K - 1 past the last tap column (the unused columns of a run).
    call.padLeft = std::max(0, -g.dvMin);
    call.stride =
        toInt(call.padLeft + std::max<int64_t>(xW, call.dyStride + std::max(0, g.dvMax + K - 1)),
              "padded plane width");
    toInt(xH * call.stride * V, "padded plane size");
    const int B = toInt(tapBlocks, "tap blocks");
    call.offsets = Buffer<int32_t>(B, NB);
    call.rows = Buffer<int32_t>(2, B, NB);
    call.output = Buffer<float>(V, K, B, NB);
    call.offsets.fill(0);
    call.rows.fill(0);
    run.outputIndex.assign(g.numTaps(), 0);
    int64_t offMin = 0, offMax = 0;
    for (int64_t u = 0; u < blocks; ++u) {
      for (size_t b = 0; b < runs[u].size(); ++b) {
        const TapRun &r = runs[u][b];
        const int64_t offset = int64_t{r.du} * call.stride + r.dv;
        call.offsets(static_cast<int>(b), static_cast<int>(u)) = toInt(offset, "tap offset");
        offMin = std::min(offMin, offset);
        offMax = std::max(offMax, offset);
        call.rows(0, static_cast<int>(b), static_cast<int>(u)) = toInt(r.rowBegin, "row");
        call.rows(1, static_cast<int>(b), static_cast<int>(u)) = toInt(r.rowEnd, "row");
      }
      for (size_t b = 0; b < runs[u].size(); ++b) {
        const TapRun &r = runs[u][b];
        for (int64_t t = r.firstTap; t < r.endTap; ++t)
          run.outputIndex[t] =
              toInt(((u * B + static_cast<int64_t>(b)) * K + (g.dv[t] - r.dv)) * V, "dW index");
      }
    }
    call.offsetMin = toInt(offMin, "tap offset");
    call.offsetMax = toInt(offMax, "tap offset");
    prep.blockWeight.push_back(std::move(run));
  }
}

void CpuLkConv::checkLayout(const char *fn, const Shape &in, const Prepared &prep) const {
  if (in.channelsLast && !prep.schedule.channelsLast)
    throw std::invalid_argument(std::string("CpuLkConv::") + fn +
                                ": NHWC tensors need a channels-last schedule; schedule '" +
                                prep.schedule.str() +
                                "' vectorises along the width and reads NCHW (convert, or "
                                "set CpuSchedule::channelsLast)");
}

namespace {

void checkCount(const char *fn, const char *what, size_t actual, size_t expected, const char *why) {
  if (actual != expected)
    throw std::invalid_argument(std::string("CpuLkConv::") + fn + ": got " +
                                std::to_string(actual) + " " + what + ", expected " +
                                std::to_string(expected) + " (" + why + ")");
}

void checkPointers(const char *fn, const char *what, const std::vector<const float *> &ptrs) {
  for (size_t i = 0; i < ptrs.size(); ++i)
    if (ptrs[i] == nullptr)
      throw std::invalid_argument(std::string("CpuLkConv::") + fn + ": " + what + " " +
                                  std::to_string(i) + " is null");
}

/// Sums each planned tap's weight sources into the call's weight buffer
/// ([taps], or [lanes, taps] for a plan with blocks of `lanes` channels).
void gatherWeights(const TapGroup &g, int lanes, const std::vector<const float *> &weights,
                   Buffer<float> &out) {
  out.fill(0.0f);
  float *w = out.data();
  for (size_t s = 0; s < g.sourceTap.size(); ++s)
    w[int64_t{g.sourceTap[s]} * lanes + g.sourceLane[s]] +=
        weights[g.sourceBranch[s]][g.sourceIndex[s]];
}

/// Bias padded to whole channel blocks (the channels-last pipelines read a
/// full vector per block).
Buffer<float> paddedBias(const float *bias, int64_t channels, int64_t blocks, int lanes) {
  Buffer<float> out(toInt(blocks * lanes, "channels"));
  out.fill(0.0f);
  std::copy(bias, bias + channels, out.data());
  return out;
}

} // namespace

void CpuLkConv::checkDy(const char *fn, const std::vector<const float *> &dy) const {
  checkCount(fn, "dy tensors", dy.size(), spec_.perBranchOutputs ? spec_.branches.size() : 1,
             spec_.perBranchOutputs ? "one per branch: spec.perBranchOutputs"
                                    : "one shared by all branches: summed output");
  checkPointers(fn, "dy", dy);
}

void CpuLkConv::forward(const Shape &in, const float *x, const std::vector<const float *> &weights,
                        const float *bias, const std::vector<float *> &outputs, int threads) {
  const char *fn = "forward";
  checkShape(fn, in);
  checkCount(fn, "weights", weights.size(), spec_.branches.size(), "one per branch");
  checkPointers(fn, "weight", weights);
  const size_t numOutputs = spec_.perBranchOutputs ? spec_.branches.size() : 1;
  checkCount(fn, "outputs", outputs.size(), numOutputs,
             spec_.perBranchOutputs ? "one per branch: spec.perBranchOutputs" : "summed output");
  if (x == nullptr || std::any_of(outputs.begin(), outputs.end(), [](float *p) { return !p; }))
    throw std::invalid_argument("CpuLkConv::forward: x or an output is null");
  if (spec_.hasBias && bias == nullptr)
    throw std::invalid_argument("CpuLkConv::forward: spec.hasBias but bias is null");
  std::lock_guard<std::mutex> lock(mutex_);
  Prepared &prep = prepared(Pass::Forward, in.h, in.w);
  checkLayout(fn, in, prep);
  setHalideThreads(threads);
  const int64_t oh = prep.sizes.writeH, ow = prep.sizes.writeW;
  const int lanes = prep.plan.channelBlock;
  const bool gathered = prep.sameWeights(spec_, weights);
  for (Prepared::BlockConvRun &run : prep.blockConv) {
    run.call.inputs[0] = wrapImage(x, in.w, in.h, in.c, in.n, in.channelsLast);
    for (size_t m = 0; m < run.groups.size() && !gathered; ++m)
      gatherWeights(prep.plan.groups[run.groups[m]], lanes, weights, run.call.groups[m].weights);
    if (spec_.hasBias && !spec_.perBranchOutputs)
      run.call.bias = paddedBias(bias, in.c, prep.plan.numBlocks(in.c), lanes);
    float *out = outputs[spec_.perBranchOutputs ? prep.plan.groups[run.groups[0]].branches[0] : 0];
    run.call.output = wrapImage(out, ow, oh, in.c, in.n, in.channelsLast);
    run.pipeline->run(run.call);
  }
  for (size_t r = 0; r < prep.conv.size(); ++r) {
    Prepared::ConvRun &run = prep.conv[r];
    run.call.inputs[0] = wrap(x, in.w, in.h, in.c, in.n);
    for (size_t m = 0; m < run.groups.size() && !gathered; ++m)
      gatherWeights(prep.plan.groups[run.groups[m]], 1, weights, run.call.groups[m].weights);
    if (spec_.hasBias && !spec_.perBranchOutputs)
      run.call.bias = Buffer<float>(const_cast<float *>(bias), toInt(in.c, "channels"));
    // Per-branch runs go in branch order (one group per branch).
    float *out = outputs[spec_.perBranchOutputs ? prep.plan.groups[run.groups[0]].branches[0] : 0];
    run.call.output = Buffer<float>(out, {toInt(ow, "width"), toInt(oh, "height"),
                                          toInt(in.c, "channels"), toInt(in.n, "batch")});
    run.pipeline->run(run.call);
  }
}

void CpuLkConv::backwardData(const Shape &in, const std::vector<const float *> &dy,
                             const std::vector<const float *> &weights, float *dx, int threads) {
  const char *fn = "backwardData";
  checkShape(fn, in);
  checkCount(fn, "weights", weights.size(), spec_.branches.size(), "one per branch");
  checkPointers(fn, "weight", weights);
  checkDy(fn, dy);
  if (dx == nullptr)
    throw std::invalid_argument("CpuLkConv::backwardData: dx is null");
  std::lock_guard<std::mutex> lock(mutex_);
  Prepared &prep = prepared(Pass::BackwardData, in.h, in.w);
  checkLayout(fn, in, prep);
  setHalideThreads(threads);
  const int64_t oh = prep.sizes.readH, ow = prep.sizes.readW;
  const bool gathered = prep.sameWeights(spec_, weights);
  if (!prep.blockConv.empty()) {
    Prepared::BlockConvRun &run = prep.blockConv.front();
    for (size_t s = 0; s < run.call.inputs.size(); ++s)
      run.call.inputs[s] = wrapImage(dy[s], ow, oh, in.c, in.n, in.channelsLast);
    for (size_t m = 0; m < run.groups.size() && !gathered; ++m)
      gatherWeights(prep.plan.groups[run.groups[m]], prep.plan.channelBlock, weights,
                    run.call.groups[m].weights);
    run.call.output = wrapImage(dx, in.w, in.h, in.c, in.n, in.channelsLast);
    run.pipeline->run(run.call);
    return;
  }
  Prepared::ConvRun &run = prep.conv.front();
  for (size_t s = 0; s < run.call.inputs.size(); ++s)
    run.call.inputs[s] = wrap(dy[s], ow, oh, in.c, in.n);
  for (size_t m = 0; m < run.groups.size() && !gathered; ++m)
    gatherWeights(prep.plan.groups[run.groups[m]], 1, weights, run.call.groups[m].weights);
  run.call.output = wrap(dx, in.w, in.h, in.c, in.n);
  run.pipeline->run(run.call);
}

void CpuLkConv::backwardWeight(const Shape &in, const float *x,
                               const std::vector<const float *> &dy,
                               const std::vector<float *> &weightGrads, int threads) {
  const char *fn = "backwardWeight";
  checkShape(fn, in);
  checkDy(fn, dy);
  checkCount(fn, "weight gradients", weightGrads.size(), spec_.branches.size(), "one per branch");
  if (x == nullptr ||
      std::any_of(weightGrads.begin(), weightGrads.end(), [](float *p) { return !p; }))
    throw std::invalid_argument("CpuLkConv::backwardWeight: x or a weight gradient is null");
  std::lock_guard<std::mutex> lock(mutex_);
  Prepared &prep = prepared(Pass::BackwardWeight, in.h, in.w);
  checkLayout(fn, in, prep);
  setHalideThreads(threads);
  for (size_t b = 0; b < spec_.branches.size(); ++b)
    std::memset(weightGrads[b], 0, sizeof(float) * spec_.channels * spec_.branches[b].windowSize());
  const int64_t oh = prep.sizes.writeH, ow = prep.sizes.writeW;
  for (Prepared::BlockWeightRun &run : prep.blockWeight) {
    const TapGroup &g = prep.plan.groups[run.group];
    run.call.x = wrapImage(x, in.w, in.h, in.c, in.n, in.channelsLast);
    run.call.dy = wrapImage(dy[g.slot], ow, oh, in.c, in.n, in.channelsLast);
    run.pipeline->run(run.call);
    const float *out = run.call.output.data();
    for (size_t s = 0; s < g.sourceTap.size(); ++s)
      weightGrads[g.sourceBranch[s]][g.sourceIndex[s]] =
          out[run.outputIndex[g.sourceTap[s]] + g.sourceLane[s]];
  }
  for (Prepared::WeightRun &run : prep.weight) {
    const TapGroup &g = prep.plan.groups[run.group];
    run.call.x = wrap(x, in.w, in.h, in.c, in.n);
    run.call.dy = wrap(dy[g.slot], ow, oh, in.c, in.n);
    run.pipeline->run(run.call);
    const float *out = run.call.output.data();
    for (size_t s = 0; s < g.sourceTap.size(); ++s)
      weightGrads[g.sourceBranch[s]][g.sourceIndex[s]] = out[run.outputIndex[g.sourceTap[s]]];
  }
}

void CpuLkConv::backwardBias(const Shape &in, const std::vector<const float *> &dy, float *dbias,
                             int threads) {
  const char *fn = "backwardBias";
  checkShape(fn, in);
  checkDy(fn, dy);
  if (dbias == nullptr)
    throw std::invalid_argument("CpuLkConv::backwardBias: dbias is null");
  setHalideThreads(threads);
  const int64_t oh = spec_.outHeight(in.h), ow = spec_.outWidth(in.w);
  std::vector<float> part(in.c);
  std::fill(dbias, dbias + in.c, 0.0f);
  if (in.channelsLast) { // channels innermost: one running sum per channel
    for (const float *g : dy)
      for (int64_t p = 0; p < in.n * oh * ow; ++p)
        for (int64_t c = 0; c < in.c; ++c)
          dbias[c] += g[p * in.c + c];
    return;
  }
  for (const float *g : dy) {
    Buffer<float> dyBuf = wrap(g, ow, oh, in.c, in.n);
    Buffer<float> out(part.data(), toInt(in.c, "channels"));
    BiasGradPipeline::get()->run(dyBuf, out);
    for (int64_t c = 0; c < in.c; ++c)
      dbias[c] += part[c];
  }
}

} // namespace slak::codegen::cpu

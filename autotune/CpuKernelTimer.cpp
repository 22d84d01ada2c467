#include "autotune/CpuKernelTimer.h"

#include <functional>
#include <random>
#include <stdexcept>
#include <vector>

#include "autotune/CpuScheduleSpace.h"
#include "codegen/halide/CpuLkConv.h"

namespace slak::autotune {

struct CpuKernelTimer::Buffers {
  codegen::cpu::Shape shape;
  codegen::TapTable table;
  bool sparse = false;
  std::vector<float> x, bias, dx;
  std::vector<std::vector<float>> weights, outputs, dy, dw;
};

CpuKernelTimer::CpuKernelTimer(int threads) : cpu_(hostCpu(threads)) {}
CpuKernelTimer::~CpuKernelTimer() = default;

CpuKernelTimer::Buffers &CpuKernelTimer::buffers(const KernelSpec &spec, const Workload &w) {
  const std::string key = problemSignature(spec) + " | " + w.str();
  if (buffers_ && buffersKey_ == key)
    return *buffers_;
  // One set of data at a time keeps memory flat across layers.
  buffers_.reset();
  buffersKey_ = key;
  ++dataSetsCreated_;
  auto b = std::make_unique<Buffers>();
  b->shape = {w.batch, spec.channels, w.height, w.width};
  b->sparse = spec.anySparse();
  b->table = randomTapTable(spec, w.density, w.seed);
  std::mt19937 rng(w.seed + 7);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  auto fill = [&](std::vector<float> &v, int64_t n) {
    v.resize(n);
    for (float &e : v)
      e = dist(rng);
  };
  const int64_t in = w.batch * spec.channels * w.height * w.width;
  const int64_t out = w.batch * spec.channels * spec.outHeight(w.height) * spec.outWidth(w.width);
  const size_t numOut = spec.perBranchOutputs ? spec.branches.size() : 1;
  fill(b->x, in);
  fill(b->bias, spec.channels);
  b->dx.resize(in);
  for (const codegen::Branch &br : spec.branches) {
    b->weights.emplace_back();
    fill(b->weights.back(), spec.channels * br.windowSize());
    b->dw.emplace_back(spec.channels * br.windowSize());
  }
  for (size_t i = 0; i < numOut; ++i) {
    b->outputs.emplace_back(out);
    b->dy.emplace_back();
    fill(b->dy.back(), out);
  }
  buffers_ = std::move(b);
  return *buffers_;
}

Timing CpuKernelTimer::time(const KernelSpec &specIn, const CpuSchedule &schedule,
                            const Workload &w, KernelKind kind, const MeasureOptions &options) {
  if (std::string err = checkWorkload(specIn, w); !err.empty())
    throw std::invalid_argument("CpuKernelTimer: " + err);
  KernelSpec spec = specIn;
  spec.elementType = codegen::ElementType::F32; // the CPU backend computes in f32
  Buffers &b = buffers(spec, w);
  codegen::cpu::CpuLkConv conv(spec, schedule);
  if (b.sparse)
    conv.setTaps(b.table);
  conv.prepare(cpuPassOf(kind), w.height, w.width); // compiles; not timed
  std::vector<const float *> weights, dy;
  for (const auto &v : b.weights)
    weights.push_back(v.data());
  for (const auto &v : b.dy)
    dy.push_back(v.data());
  std::vector<float *> outputs, dw;
  for (auto &v : b.outputs)
    outputs.push_back(v.data());
  for (auto &v : b.dw)
    dw.push_back(v.data());
  const int threads = options.threads > 0 ? options.threads : cpu_.threads;
  std::function<void()> once;
  switch (kind) {
  case KernelKind::Forward:
    once = [&] { conv.forward(b.shape, b.x.data(), weights, b.bias.data(), outputs, threads); };
    break;
  case KernelKind::BackwardData:
    once = [&] { conv.backwardData(b.shape, dy, weights, b.dx.data(), threads); };
    break;
  default:
    once = [&] { conv.backwardWeight(b.shape, b.x.data(), dy, dw, threads); };
    break;
  }
  return timeMedian(once, options);
}

} // namespace slak::autotune

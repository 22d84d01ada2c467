// slak-bench: the large-kernel layers of SLaK-T (stages 1..4) as users call
// them, against what a PyTorch user runs instead, in one process with the
// same thread count.
//
//   - slak: the op slak::lk_conv (runtime/LkConvOp.h) with its argument
//     checks, its taps of the masks and its autograd: forward = one op call
//     (no grad), forward+backward = the op and backward through autograd to x
//     and every branch weight. x is in the layout the CPU schedule computes
//     in place (channels_last where codegen::cpu::defaultCpuSchedule
//     vectorises across channels, else NCHW; --slak-layout overrides).
//   - LibTorch: one torch::conv2d(groups = C) per branch, summed (the
//     official SLaK layer), in NCHW and in channels_last (oneDNN); masked
//     layers run the dense conv of the masked weights, as a PyTorch user does.
//
// For each stage, batch and mask density the bodies alternate round by
// round and the table reports medians, the speedup over the faster PyTorch
// layout (named), GFLOP/s counting only in-image live taps, and that as a
// share of this machine's fp32 FMA peak (measured at start-up by a
// register-resident FMA loop on all threads).
//
//   slak-bench [--stages 1,2,3,4] [--layer C,S,M] [--batch 8,1] [--densities 1,0.6]
//              [--threads 2] [--repeats R] [--slak-layout auto|nchw|channels_last]
//              [--quick] [--quiet F] [--max-wait S] [--markdown FILE] [--json FILE]
//   slak-bench --train ...: whole-model images/s (bench/TrainBench.cpp)
#include "bench/BenchArgs.h"
#include "codegen/KernelSpec.h"
#include "codegen/halide/CpuSchedule.h"
#include "runtime/LkConvOp.h"
#include "tools/common/HostMemory.h"
#include "tools/common/ErrorMessage.h"
#ifdef SLAK_BENCH_WITH_TRAIN
#include "bench/TrainBench.h"
#endif

#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <immintrin.h>
#include <iostream>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace {

using slak::bench::ArgWalker;
using slak::bench::splitCommas;

using Clock = std::chrono::steady_clock;

/// One large-kernel layer: C channels, S x S images, branches M x 5, 5 x M, 5 x 5.
struct Stage {
  std::string name; // "1".."4" for SLaK-T's stages, "custom" for --layer
  int channels, size, m;
};
// SLaK-T at 224 px: dims int(96, 192, 384, 768 x 1.3), kernels 51/49/47/13, N = 5.
const Stage kStages[] = {
    {"1", 124, 56, 51}, {"2", 249, 28, 49}, {"3", 499, 14, 47}, {"4", 998, 7, 13}};
constexpr int kSmall = 5;

enum class Layout { Auto, Nchw, ChannelsLast };

struct Options {
  std::vector<Stage> stages;
  std::vector<int> batches = {8, 1};
  std::vector<double> densities = {1.0, 0.6};
  int threads = 2;
  int repeats = 10;
  bool quick = false;
  Layout slakLayout = Layout::Auto;
  double quiet = 0.85;  // wait for this share of the best FMA rate before each run
  double maxWait = 3.0; // seconds per run
  std::string markdown, json;
};

[[noreturn]] void usage(const std::string &error) {
  if (!error.empty())
    std::cerr << "slak-bench: " << error << "\n";
  std::cerr
      << "usage: slak-bench [--stages 1,2,3,4] [--layer C,S,M] [--batch 8,1] [--densities 1,0.6]\n"
         "                  [--threads 2] [--repeats 10] [--slak-layout auto|nchw|channels_last]\n"
         "                  [--quick] [--quiet F] [--max-wait SECONDS]\n"
         "                  [--markdown FILE] [--json FILE]\n"
         "  The SLaK-T large-kernel layers (stage 1: 124 ch 56x56 M=51, 2: 249 ch 28x28 M=49,\n"
         "  3: 499 ch 14x14 M=47, 4: 998 ch 7x7 M=13; branches Mx5 + 5xM + 5x5) through\n"
         "  slak::lk_conv (checks, taps, autograd) against LibTorch conv2d(groups=C) branches\n"
         "  in NCHW and channels_last; forward and forward+backward; medians of alternating\n"
         "  runs.\n"
         "  --layer C,S,M: a layer of C channels, SxS images, M x 5 + 5 x M + 5 x 5 branches\n"
         "             instead of --stages (repeatable).\n"
         "  --densities: live fraction of the weights per row (1 = dense, 0.6 = 40% sparse).\n"
         "  --slak-layout: the op's input layout; auto = channels_last where the default CPU\n"
         "             schedule vectorises across channels, else NCHW.\n"
         "  --quiet F: before each timed run, wait (at most --max-wait seconds, default 3)\n"
         "             until a short FMA probe on all threads reaches F (default 0.85) of\n"
         "             the best rate seen, i.e. until other jobs leave the cores free;\n"
         "             0 disables. Runs that had to go ahead anyway are counted.\n"
         "       slak-bench --train [...]: whole-model training and inference images/s,\n"
         "             runtime vs LibTorch backends (slak-bench --train --help)\n";
  std::exit(error.empty() ? 0 : 2);
}

std::vector<int> parseList(const std::string &text, const char *flag) {
  std::vector<int> out;
  for (const std::string &item : splitCommas(text)) {
    char *end = nullptr;
    const long v = std::strtol(item.c_str(), &end, 10);
    if (item.empty() || *end != '\0' || v <= 0)
      usage(std::string(flag) + " expects a comma-separated list of positive integers, got '" +
            text + "'");
    out.push_back(static_cast<int>(v));
  }
  if (out.empty())
    usage(std::string(flag) + " expects at least one value");
  return out;
}

double parseNumber(const std::string &text, const std::string &flag, double lo, double hi) {
  char *end = nullptr;
  const double v = std::strtod(text.c_str(), &end);
  if (text.empty() || *end != '\0' || !(v >= lo && v <= hi))
    usage(flag + " expects a number in [" + std::to_string(lo).substr(0, 4) + ", " +
          std::to_string(hi).substr(0, 4) + "], got '" + text + "'");
  return v;
}

Options parseOptions(int argc, char **argv) {
  Options o;
  bool stagesGiven = false;
  std::vector<Stage> custom;
  ArgWalker args(argc, argv, [](const std::string &e) { usage(e); });
  while (!args.done()) {
    const std::string arg = args.next();
    if (arg == "--stages") {
      stagesGiven = true;
      for (int s : parseList(args.value(), "--stages")) {
        if (s > 4)
          usage("--stages: SLaK-T has stages 1..4, got " + std::to_string(s));
        o.stages.push_back(kStages[s - 1]);
      }
    } else if (arg == "--layer") {
      const std::vector<int> v = parseList(args.value(), "--layer");
      if (v.size() != 3 || v[2] % 2 == 0)
        usage("--layer expects C,S,M (channels, image size, odd large kernel), e.g. 124,56,51");
      custom.push_back({"custom", v[0], v[1], v[2]});
    } else if (arg == "--batch") {
      o.batches = parseList(args.value(), "--batch");
    } else if (arg == "--densities") {
      o.densities.clear();
      for (const std::string &item : splitCommas(args.value()))
        o.densities.push_back(parseNumber(item, "--densities", 0.0, 1.0));
      if (o.densities.empty())
        usage("--densities expects at least one value");
    } else if (arg == "--threads") {
      o.threads = parseList(args.value(), "--threads").front();
    } else if (arg == "--repeats") {
      o.repeats = parseList(args.value(), "--repeats").front();
    } else if (arg == "--slak-layout") {
      const std::string v = args.value();
      if (v == "auto")
        o.slakLayout = Layout::Auto;
      else if (v == "nchw")
        o.slakLayout = Layout::Nchw;
      else if (v == "channels_last")
        o.slakLayout = Layout::ChannelsLast;
      else
        usage("--slak-layout expects auto, nchw or channels_last, got '" + v + "'");
    } else if (arg == "--quiet") {
      o.quiet = parseNumber(args.value(), arg, 0.0, 1.0);
    } else if (arg == "--max-wait") {
      o.maxWait = parseNumber(args.value(), arg, 0.0, 3600.0);
    } else if (arg == "--quick") {
      o.quick = true;
    } else if (arg == "--markdown") {
      o.markdown = args.value();
    } else if (arg == "--json") {
      o.json = args.value();
    } else if (arg == "--help" || arg == "-h") {
      usage("");
    } else {
      usage("unknown option " + arg);
    }
  }
  if (!stagesGiven && custom.empty())
    o.stages.assign(std::begin(kStages), std::end(kStages));
  o.stages.insert(o.stages.end(), custom.begin(), custom.end());
  if (o.quick)
    o.repeats = std::min(o.repeats, 3);
  return o;
}

// --- FMA peak -----------------------------------------------------------------

// Twelve independent accumulator chains cover the FMA latency on every x86
// core we know; the loop body is nothing but register-resident FMAs.
#define SLAK_FMA12(fma, a)                                                                         \
  a##0 = fma(a##0, m, b);                                                                          \
  a##1 = fma(a##1, m, b);                                                                          \
  a##2 = fma(a##2, m, b);                                                                          \
  a##3 = fma(a##3, m, b);                                                                          \
  a##4 = fma(a##4, m, b);                                                                          \
  a##5 = fma(a##5, m, b);                                                                          \
  a##6 = fma(a##6, m, b);                                                                          \
  a##7 = fma(a##7, m, b);                                                                          \
  a##8 = fma(a##8, m, b);                                                                          \
  a##9 = fma(a##9, m, b);                                                                          \
  a##10 = fma(a##10, m, b);                                                                        \
  a##11 = fma(a##11, m, b);

__attribute__((target("avx512f"))) float fmaLoop512(long iterations) {
  const __m512 m = _mm512_set1_ps(0.999f), b = _mm512_set1_ps(0.001f);
  __m512 a0 = _mm512_set1_ps(0), a1 = _mm512_set1_ps(1), a2 = _mm512_set1_ps(2),
         a3 = _mm512_set1_ps(3), a4 = _mm512_set1_ps(4), a5 = _mm512_set1_ps(5),
         a6 = _mm512_set1_ps(6), a7 = _mm512_set1_ps(7), a8 = _mm512_set1_ps(8),
         a9 = _mm512_set1_ps(9), a10 = _mm512_set1_ps(10), a11 = _mm512_set1_ps(11);
  for (long k = 0; k < iterations; ++k) {
    SLAK_FMA12(_mm512_fmadd_ps, a)
  }
  __m512 s = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)),
                           _mm512_add_ps(_mm512_add_ps(a4, a5), _mm512_add_ps(a6, a7)));
  s = _mm512_add_ps(s, _mm512_add_ps(_mm512_add_ps(a8, a9), _mm512_add_ps(a10, a11)));
  float lanes[16];
  _mm512_storeu_ps(lanes, s);
  return lanes[0] + lanes[15];
}

__attribute__((target("avx2,fma"))) float fmaLoop256(long iterations) {
  const __m256 m = _mm256_set1_ps(0.999f), b = _mm256_set1_ps(0.001f);
  __m256 a0 = _mm256_set1_ps(0), a1 = _mm256_set1_ps(1), a2 = _mm256_set1_ps(2),
         a3 = _mm256_set1_ps(3), a4 = _mm256_set1_ps(4), a5 = _mm256_set1_ps(5),
         a6 = _mm256_set1_ps(6), a7 = _mm256_set1_ps(7), a8 = _mm256_set1_ps(8),
         a9 = _mm256_set1_ps(9), a10 = _mm256_set1_ps(10), a11 = _mm256_set1_ps(11);
  for (long k = 0; k < iterations; ++k) {
    SLAK_FMA12(_mm256_fmadd_ps, a)
  }
  __m256 s = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)),
                           _mm256_add_ps(_mm256_add_ps(a4, a5), _mm256_add_ps(a6, a7)));
  s = _mm256_add_ps(s, _mm256_add_ps(_mm256_add_ps(a8, a9), _mm256_add_ps(a10, a11)));
  float lanes[8];
  _mm256_storeu_ps(lanes, s);
  return lanes[0] + lanes[7];
}

/// What the machine gives this process: the fp32 FMA rate of a
/// register-resident loop on all threads. The best rate seen is the peak;
/// on a machine shared with other jobs, cores come and go for seconds at a
/// time, so each timed run first waits until a short probe is back near it.
class Machine {
public:
  explicit Machine(const Options &opt) : opt_(opt) {}

  /// GFLOP/s of `iterations` loop trips on every thread (best of `runs`).
  double probe(long iterations, int runs = 1) {
    double rate = 0.0;
    for (int run = 0; run < runs; ++run) {
      std::vector<std::thread> pool;
      std::vector<float> sink(opt_.threads);
      const auto start = Clock::now();
      for (int t = 0; t < opt_.threads; ++t)
        pool.emplace_back(
            [&, t] { sink[t] = avx512_ ? fmaLoop512(iterations) : fmaLoop256(iterations); });
      for (std::thread &t : pool)
        t.join();
      const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
      rate = std::max(rate, opt_.threads * iterations * 12.0 * lanes() * 2.0 / seconds / 1e9);
    }
    best_ = std::max(best_, rate);
    return rate;
  }
  void measurePeak() { probe(opt_.quick ? 4'000'000 : 12'000'000, 3); }
  /// Blocks until the cores look free (or --max-wait passes).
  void waitUntilQuiet() {
    ++runs_;
    if (opt_.quiet <= 0)
      return;
    const auto start = Clock::now();
    while (probe(600'000) < opt_.quiet * best_) {
      if (std::chrono::duration<double>(Clock::now() - start).count() > opt_.maxWait) {
        ++busyRuns_;
        return;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  }
  double peak() const { return best_; }
  int runs() const { return runs_; }
  int busyRuns() const { return busyRuns_; }

private:
  int lanes() const { return avx512_ ? 16 : 8; }
  const Options &opt_;
  const bool avx512_ = __builtin_cpu_supports("avx512f");
  double best_ = 0.0;
  int runs_ = 0, busyRuns_ = 0;
};

// --- Layers -------------------------------------------------------------------

struct Window {
  int kh, kw;
};
std::vector<Window> stageWindows(const Stage &s) {
  return {{s.m, kSmall}, {kSmall, s.m}, {kSmall, kSmall}};
}

/// Number of output positions whose input under window offset `k` (of a
/// kernel with padding `pad`) is inside an image of `size`.
int64_t inImage(int k, int pad, int64_t size) {
  const int64_t d = k - pad;
  return std::max<int64_t>(0, std::min(size, size - d) - std::max<int64_t>(0, -d));
}

/// FLOP (2 per multiply-add) of one forward pass counting in-image live taps
/// only; `masks` empty = dense.
double forwardFlops(const std::vector<Window> &windows, const std::vector<torch::Tensor> &masks,
                    int64_t n, int64_t c, int64_t h, int64_t w) {
  double macs = 0;
  for (size_t b = 0; b < windows.size(); ++b) {
    const Window &win = windows[b];
    // Live channels per window position.
    std::vector<int64_t> live(win.kh * win.kw, c);
    if (!masks.empty()) {
      const torch::Tensor perTap = masks[b].ne(0).sum(0).reshape({-1}).to(torch::kLong);
      for (int64_t k = 0; k < perTap.numel(); ++k)
        live[k] = perTap[k].item<int64_t>();
    }
    for (int u = 0; u < win.kh; ++u)
      for (int v = 0; v < win.kw; ++v)
        macs += static_cast<double>(live[u * win.kw + v]) * inImage(u, win.kh / 2, h) *
                inImage(v, win.kw / 2, w);
  }
  return 2.0 * macs * n;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

const char *layoutName(bool channelsLast) { return channelsLast ? "channels_last" : "NCHW"; }

/// The op's input layout for a layer: where its CPU schedule computes in place.
bool slakChannelsLast(const Stage &s, Layout layout) {
  if (layout != Layout::Auto)
    return layout == Layout::ChannelsLast;
  slak::codegen::KernelSpec spec;
  spec.channels = s.channels;
  for (const Window &w : stageWindows(s))
    spec.branches.push_back(slak::codegen::Branch::same(w.kh, w.kw));
  return slak::codegen::cpu::defaultCpuSchedule(spec, s.size, s.size).channelsLast;
}

struct Row {
  std::string stage;
  int channels, size, m, batch;
  double density;
  std::string pass;
  double torchNchwMs, torchClMs, slakMs, gflop, maxError;
  bool slakChannelsLast;
  double bestTorchMs() const { return std::min(torchNchwMs, torchClMs); }
  const char *bestTorchLayout() const { return layoutName(torchClMs < torchNchwMs); }
};

/// One layer at one batch and mask density, three ways: the slak op in its
/// layout, LibTorch NCHW and LibTorch channels_last; same inputs, same
/// (masked) weights.
class LayerBench {
public:
  LayerBench(const Stage &stage, int batch, double density, bool slakChannelsLast)
      : stage_(stage), batch_(batch), density_(density), slakCl_(slakChannelsLast),
        windows_(stageWindows(stage)) {
    const int64_t C = stage.channels, S = stage.size;
    torch::manual_seed(1234 + stage.channels * 10 + batch);
    const auto cl = torch::MemoryFormat::ChannelsLast;
    for (const Window &w : windows_) {
      torch::Tensor weight = torch::rand({C, 1, w.kh, w.kw}) * 2 - 1;
      if (density < 1.0) {
        masks_.push_back(torch::rand({C, 1, w.kh, w.kw}).lt(density).to(torch::kFloat32));
        weight = weight * masks_.back(); // what a masked model's weights hold
      }
      weights_.push_back(weight);
    }
    x_ = torch::rand({batch, C, S, S}) * 2 - 1;
    dy_ = torch::rand({batch, C, S, S}) * 2 - 1;
    for (bool channelsLast : {false, true}) {
      Inputs &in = channelsLast ? torchCl_ : torchNchw_;
      in.x = channelsLast ? x_.contiguous(cl) : x_.clone();
      in.dy = channelsLast ? dy_.contiguous(cl) : dy_.clone();
      for (const torch::Tensor &w : weights_)
        in.w.push_back(channelsLast ? w.contiguous(cl) : w.clone());
      in.makeLeaves();
    }
    slak_.x = slakCl_ ? x_.contiguous(cl) : x_.clone();
    slak_.dy = slakCl_ ? dy_.contiguous(cl) : dy_.clone();
    for (const torch::Tensor &w : weights_)
      slak_.w.push_back(w.clone());
    slak_.makeLeaves();
  }

  void slakForward() {
    torch::NoGradGuard noGrad;
    slakY_ = slak::lk_conv(slak_.x, slak_.w, masks_);
  }
  void slakTraining() { slak_.backward(slak::lk_conv(slak_.xg, slak_.wg, masks_)); }
  void torchForward(bool channelsLast) {
    torch::NoGradGuard noGrad;
    Inputs &in = channelsLast ? torchCl_ : torchNchw_;
    (channelsLast ? torchClY_ : torchNchwY_) = torchLayer(in.x, in.w);
  }
  void torchTraining(bool channelsLast) {
    Inputs &in = channelsLast ? torchCl_ : torchNchw_;
    in.backward(torchLayer(in.xg, in.wg));
  }

  /// Largest |slak - LibTorch| forward difference (over both PyTorch
  /// layouts) relative to max |LibTorch|.
  double forwardError() {
    slakForward();
    torchForward(false);
    torchForward(true);
    const double scale = std::max(torchNchwY_.abs().max().item<double>(), 1e-30);
    return std::max((slakY_ - torchNchwY_).abs().max().item<double>(),
                    (slakY_ - torchClY_).abs().max().item<double>()) /
           scale;
  }
  double gflop() const {
    return forwardFlops(windows_, masks_, batch_, stage_.channels, stage_.size, stage_.size) / 1e9;
  }
  Row row(const std::string &pass, double nchwMs, double clMs, double slakMs, double error) const {
    // Backward-data and backward-weight each do the forward's multiply-adds.
    const double scale = pass == "fwd" ? 1.0 : 3.0;
    return {stage_.name, stage_.channels, stage_.size,     stage_.m, batch_, density_, pass, nchwMs,
            clMs,        slakMs,          scale * gflop(), error,    slakCl_};
  }

private:
  struct Inputs {
    torch::Tensor x, dy, xg;
    std::vector<torch::Tensor> w, wg;
    void makeLeaves() {
      xg = x.detach().clone().requires_grad_(true);
      for (const torch::Tensor &t : w)
        wg.push_back(t.detach().clone().requires_grad_(true));
    }
    /// Backward of `y` to x and every weight; the gradients are dropped so
    /// that each run allocates them as a training step does.
    void backward(const torch::Tensor &y) {
      y.backward(dy);
      xg.mutable_grad() = torch::Tensor();
      for (torch::Tensor &t : wg)
        t.mutable_grad() = torch::Tensor();
    }
  };

  torch::Tensor torchLayer(const torch::Tensor &input, const std::vector<torch::Tensor> &ws) {
    torch::Tensor out;
    for (size_t b = 0; b < ws.size(); ++b) {
      const Window &w = windows_[b];
      torch::Tensor t =
          torch::conv2d(input, ws[b], {}, 1, {w.kh / 2, w.kw / 2}, 1, stage_.channels);
      out = b == 0 ? t : out + t;
    }
    return out;
  }

  Stage stage_;
  int batch_;
  double density_;
  bool slakCl_;
  std::vector<Window> windows_;
  std::vector<torch::Tensor> weights_, masks_;
  torch::Tensor x_, dy_, slakY_, torchNchwY_, torchClY_;
  Inputs slak_, torchNchw_, torchCl_;
};

/// Median milliseconds per call of each body over `repeats` rounds. Each
/// round runs every body in turn, each after a short pause (LibTorch's
/// OpenMP threads and Halide's workers both spin for a while after a
/// parallel loop) and once the cores look free: on a machine shared with
/// other jobs, all bodies then see the same conditions, so their ratios stay
/// meaningful even when the absolute times drift. A timed run is a block of
/// back-to-back calls lasting about kBlockMs (at most kMaxCalls; the count
/// is fixed per body from its warm-up), so that a millisecond-scale layer is
/// not timed as one cold call after an idle pause: each body is measured the
/// way a model calls it, one layer after the other with warm threads.
std::vector<double> timeRoundsMs(Machine &machine, const std::vector<std::function<void()>> &bodies,
                                 int repeats, int warmup) {
  constexpr double kBlockMs = 20.0;
  constexpr int kMaxCalls = 20;
  const auto settle = [] { std::this_thread::sleep_for(std::chrono::milliseconds(20)); };
  std::vector<int> calls(bodies.size(), 1);
  for (int i = 0; i < warmup; ++i)
    for (size_t k = 0; k < bodies.size(); ++k) {
      const auto start = Clock::now();
      bodies[k]();
      const double ms = std::chrono::duration<double, std::milli>(Clock::now() - start).count();
      if (i + 1 == warmup)
        calls[k] = std::clamp(static_cast<int>(kBlockMs / std::max(ms, 1e-3)), 1, kMaxCalls);
      settle();
    }
  std::vector<std::vector<double>> ms(bodies.size());
  for (int i = 0; i < repeats; ++i)
    for (size_t k = 0; k < bodies.size(); ++k) {
      settle();
      machine.waitUntilQuiet();
      const auto start = Clock::now();
      for (int c = 0; c < calls[k]; ++c)
        bodies[k]();
      ms[k].push_back(std::chrono::duration<double, std::milli>(Clock::now() - start).count() /
                      calls[k]);
    }
  std::vector<double> medians;
  for (const auto &v : ms)
    medians.push_back(median(v));
  return medians;
}

/// Times one layer at one batch for every density, forward and
/// forward+backward, all bodies of a pass alternating; appends two rows per
/// density.
void benchStage(const Stage &stage, int batch, const Options &opt, Machine &machine,
                std::vector<Row> &rows) {
  const bool slakCl = slakChannelsLast(stage, opt.slakLayout);
  std::vector<std::unique_ptr<LayerBench>> layers;
  for (double density : opt.densities)
    layers.push_back(std::make_unique<LayerBench>(stage, batch, density, slakCl));
  std::vector<std::function<void()>> forward, training;
  for (auto &l : layers) {
    LayerBench *p = l.get();
    forward.push_back([p] { p->slakForward(); });
    forward.push_back([p] { p->torchForward(false); });
    forward.push_back([p] { p->torchForward(true); });
    training.push_back([p] { p->slakTraining(); });
    training.push_back([p] { p->torchTraining(false); });
    training.push_back([p] { p->torchTraining(true); });
  }
  // The warm-up runs compile the op's kernels and read the masks' taps.
  const int warmup = opt.quick ? 1 : 2;
  const std::vector<double> fwd = timeRoundsMs(machine, forward, opt.repeats, warmup);
  const std::vector<double> train = timeRoundsMs(machine, training, opt.repeats, 1);
  for (size_t k = 0; k < layers.size(); ++k) {
    const double error = layers[k]->forwardError();
    rows.push_back(layers[k]->row("fwd", fwd[3 * k + 1], fwd[3 * k + 2], fwd[3 * k], error));
    rows.push_back(
        layers[k]->row("fwd+bwd", train[3 * k + 1], train[3 * k + 2], train[3 * k], error));
  }
}

std::string formatTable(const std::vector<Row> &rows, const Machine &machine, const Options &opt) {
  std::ostringstream os;
  char line[640];
  const double peak = machine.peak();
  os << "Large-kernel layers (branches Mx5 + 5xM + 5x5), fp32, " << opt.threads
     << " threads, median of " << opt.repeats
     << " alternating runs, ms per call (a run = back-to-back calls for about 20 ms, at most "
        "20). slak = the op slak::lk_conv as users call it (checks, taps, "
        "autograd; fwd under no_grad, fwd+bwd = backward to x and weights), input in the "
        "layout named; PyTorch = conv2d(groups=C) per branch, summed, masked weights as dense "
        "kernels. vs best = PyTorch's faster layout / slak. GFLOP/s and % of the measured fp32 "
        "FMA peak ("
     << static_cast<int>(std::round(peak))
     << " GFLOP/s) count in-image live taps only (2 FLOP per multiply-add; fwd+bwd = 3x the "
        "forward's). ";
  if (opt.quiet > 0)
    os << machine.busyRuns() << " of " << machine.runs() << " timed runs went ahead while the "
       << "cores were busy with other work (FMA probe below " << opt.quiet << " x peak after "
       << opt.maxWait << " s).";
  os << "\n\n";
  os << "| stage | C | HxW | M | batch | density | pass | PyTorch NCHW ms | PyTorch channels_last "
        "ms | slak op ms (layout) | vs best PyTorch | GFLOP/s | % peak | max rel err |\n";
  os << "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n";
  for (const Row &r : rows) {
    const double gflops = r.gflop / (r.slakMs / 1e3);
    std::snprintf(line, sizeof line,
                  "| %s | %d | %dx%d | %d | %d | %.2f | %s | %.2f | %.2f | %.2f (%s) | %.2fx (%s) "
                  "| %.1f | %.1f%% | %.1e |\n",
                  r.stage.c_str(), r.channels, r.size, r.size, r.m, r.batch, r.density,
                  r.pass.c_str(), r.torchNchwMs, r.torchClMs, r.slakMs,
                  layoutName(r.slakChannelsLast), r.bestTorchMs() / r.slakMs, r.bestTorchLayout(),
                  gflops, 100.0 * gflops / peak, r.maxError);
    os << line;
  }
  return os.str();
}

std::string formatJson(const std::vector<Row> &rows, const Machine &machine, const Options &opt) {
  std::ostringstream os;
  const double peak = machine.peak();
  os << "{\n  \"threads\": " << opt.threads << ",\n  \"repeats\": " << opt.repeats
     << ",\n  \"peak_gflops\": " << peak << ",\n  \"timed_runs\": " << machine.runs()
     << ",\n  \"busy_runs\": " << machine.busyRuns() << ",\n  \"rows\": [\n";
  for (size_t k = 0; k < rows.size(); ++k) {
    const Row &r = rows[k];
    const double gflops = r.gflop / (r.slakMs / 1e3);
    os << "    {\"stage\": \"" << r.stage << "\", \"channels\": " << r.channels
       << ", \"size\": " << r.size << ", \"m\": " << r.m << ", \"batch\": " << r.batch
       << ", \"density\": " << r.density << ", \"pass\": \"" << r.pass
       << "\", \"torch_nchw_ms\": " << r.torchNchwMs
       << ", \"torch_channels_last_ms\": " << r.torchClMs << ", \"slak_ms\": " << r.slakMs
       << ", \"slak_layout\": \"" << layoutName(r.slakChannelsLast)
       << "\", \"best_torch_layout\": \"" << r.bestTorchLayout()
       << "\", \"speedup_vs_best\": " << r.bestTorchMs() / r.slakMs << ", \"gflop\": " << r.gflop
       << ", \"gflops\": " << gflops << ", \"peak_fraction\": " << gflops / peak
       << ", \"max_rel_error\": " << r.maxError << "}" << (k + 1 < rows.size() ? "," : "") << "\n";
  }
  os << "  ]\n}\n";
  return os.str();
}

} // namespace

int main(int argc, char **argv) {
  slak::tools::retainFreedHostMemory();
#ifdef SLAK_BENCH_WITH_TRAIN
  // --train (or --model): whole-model images/s (TrainBench.cpp).
  for (int a = 1; a < argc; ++a)
    if (std::string(argv[a]) == "--train" || std::string(argv[a]) == "--model")
      return slak::bench::runTrainBench(argc, argv);
#endif
  const Options opt = parseOptions(argc, argv);
  torch::set_num_threads(opt.threads);
  std::cerr << "slak-bench: " << opt.threads << " threads, measuring the FMA peak...\n";
  Machine machine(opt);
  machine.measurePeak();
  std::vector<Row> rows;
  try {
    for (const Stage &stage : opt.stages)
      for (int batch : opt.batches) {
        std::cerr << "slak-bench: stage " << stage.name << " (" << stage.channels << " ch, "
                  << stage.size << "x" << stage.size << ", M=" << stage.m << ") batch " << batch
                  << "\n";
        benchStage(stage, batch, opt, machine, rows);
      }
  } catch (const std::exception &e) {
    std::cerr << "slak-bench: error: " << slak::tools::errorMessage(e) << "\n";
    return 1;
  }
  // Other work on the machine only ever lowers the rate: the peak is the
  // best seen, here or in any probe.
  machine.measurePeak();
  const std::string table = formatTable(rows, machine, opt);
  std::cout << table;
  if (!opt.markdown.empty())
    std::ofstream(opt.markdown) << table;
  if (!opt.json.empty())
    std::ofstream(opt.json) << formatJson(rows, machine, opt);
  return 0;
}

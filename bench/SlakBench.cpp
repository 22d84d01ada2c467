// slak-bench: the Halide CPU backend against LibTorch eager on the SLaK-T
// large-kernel layers (stages 1..4), in the same process with the same
// thread count. For each stage, batch and mask density it times the forward
// and forward+backward (backward-data + backward-weight) passes, reports the
// median, the speedup over LibTorch, GFLOP/s counting only in-image taps, and
// that as a share of this machine's fp32 FMA peak (measured at start-up by a
// register-resident FMA loop on all threads).
//
//   slak-bench [--stages 1,2,3,4] [--batch 8,1] [--threads N] [--repeats R]
//              [--quick] [--markdown FILE] [--json FILE]
#include "codegen/halide/CpuLkConv.h"
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
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace {

using slak::codegen::Branch;
using slak::codegen::BranchMask;
using slak::codegen::KernelSpec;
using Clock = std::chrono::steady_clock;

struct Options {
  std::vector<int> stages = {1, 2, 3, 4};
  std::vector<int> batches = {8, 1};
  int threads = 0;
  int repeats = 10;
  bool quick = false;
  double quiet = 0.85;  // wait for this share of the best FMA rate before each run
  double maxWait = 3.0; // seconds per run
  std::string markdown, json;
};

[[noreturn]] void usage(const std::string &error) {
  if (!error.empty())
    std::cerr << "slak-bench: " << error << "\n";
  std::cerr << "usage: slak-bench [--stages 1,2,3,4] [--batch 8,1] [--threads N] [--repeats R]\n"
               "                  [--quick] [--markdown FILE] [--json FILE]\n"
               "                  [--quiet F] [--max-wait SECONDS]\n"
               "  --quiet F: before each timed run, wait (at most --max-wait seconds, default 3)\n"
               "             until a short FMA probe on all threads reaches F (default 0.85) of\n"
               "             the best rate seen, i.e. until other jobs leave the cores free;\n"
               "             0 disables. Runs that had to go ahead anyway are counted.\n"
               "       slak-bench --train [...]: training images/s, runtime vs LibTorch\n"
               "             branches (slak-bench --train --help)\n";
  std::exit(error.empty() ? 0 : 2);
}

std::vector<int> parseList(const std::string &text, const char *flag) {
  std::vector<int> out;
  std::stringstream ss(text);
  std::string item;
  while (std::getline(ss, item, ',')) {
    char *end = nullptr;
    const long v = std::strtol(item.c_str(), &end, 10);
    if (item.empty() || *end != '\0' || v <= 0)
      usage(std::string(flag) + " expects a comma-separated list of positive integers, got '" +
            text + "'");
    out.push_back(static_cast<int>(v));
  }
  return out;
}

Options parseOptions(int argc, char **argv) {
  Options o;
  for (int a = 1; a < argc; ++a) {
    const std::string arg = argv[a];
    auto value = [&]() -> std::string {
      if (a + 1 >= argc)
        usage(arg + " needs a value");
      return argv[++a];
    };
    if (arg == "--stages") {
      o.stages = parseList(value(), "--stages");
      for (int s : o.stages)
        if (s > 4)
          usage("--stages: SLaK-T has stages 1..4, got " + std::to_string(s));
    } else if (arg == "--batch") {
      o.batches = parseList(value(), "--batch");
    } else if (arg == "--threads") {
      o.threads = parseList(value(), "--threads").front();
    } else if (arg == "--repeats") {
      o.repeats = parseList(value(), "--repeats").front();
    } else if (arg == "--quiet" || arg == "--max-wait") {
      const std::string text = value();
      char *end = nullptr;
      const double v = std::strtod(text.c_str(), &end);
      if (text.empty() || *end != '\0' || v < 0 || (arg == "--quiet" && v > 1))
        usage(arg + " expects a number" + (arg == "--quiet" ? " in [0, 1]" : " >= 0") + ", got '" +
              text + "'");
      (arg == "--quiet" ? o.quiet : o.maxWait) = v;
    } else if (arg == "--quick") {
      o.quick = true;
    } else if (arg == "--markdown") {
      o.markdown = value();
    } else if (arg == "--json") {
      o.json = value();
    } else if (arg == "--help" || arg == "-h") {
      usage("");
    } else {
      usage("unknown option " + arg);
    }
  }
  if (o.quick)
    o.repeats = std::min(o.repeats, 3);
  if (o.threads <= 0)
    o.threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
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

struct Stage {
  int index, channels, size, m;
};
const Stage kStages[] = {{1, 124, 56, 51}, {2, 249, 28, 49}, {3, 499, 14, 47}, {4, 998, 7, 13}};

KernelSpec stageSpec(const Stage &s, bool sparse) {
  KernelSpec spec;
  spec.channels = s.channels;
  spec.branches = {Branch::same(s.m, 5, !sparse), Branch::same(5, s.m, !sparse),
                   Branch::same(5, 5, !sparse)};
  return spec;
}

/// Number of output positions whose input under window offset `k` (of a
/// kernel of size `kernel` with padding `pad`) is inside an image of `size`.
int64_t inImage(int k, int pad, int64_t size) {
  const int64_t d = k - pad;
  return std::max<int64_t>(0, std::min(size, size - d) - std::max<int64_t>(0, -d));
}

/// Multiply-adds of one forward pass counting in-image live taps only.
double forwardFlops(const KernelSpec &spec, const std::vector<BranchMask> &masks, int64_t n,
                    int64_t h, int64_t w) {
  double macs = 0;
  for (size_t b = 0; b < spec.branches.size(); ++b) {
    const Branch &br = spec.branches[b];
    for (int64_t c = 0; c < spec.channels; ++c)
      for (int u = 0; u < br.kernelH; ++u)
        for (int v = 0; v < br.kernelW; ++v)
          if (masks[b].empty() || masks[b][(c * br.kernelH + u) * br.kernelW + v])
            macs += static_cast<double>(inImage(u, br.padH, h)) * inImage(v, br.padW, w);
  }
  return 2.0 * macs * n;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

struct Row {
  int stage, channels, size, m, batch;
  double density;
  std::string pass;
  double torchMs, halideMs, gflop, maxError;
  double denseHalideMs = 0; // sparse rows: the dense time of the same pass
};

torch::Tensor toTensor(const std::vector<float> &v, std::vector<int64_t> shape) {
  return torch::from_blob(const_cast<float *>(v.data()), shape, torch::kFloat32).clone();
}

/// One SLaK-T layer at one batch and mask density, on both implementations:
/// same inputs, same (masked) weights.
class LayerBench {
public:
  LayerBench(const Stage &stage, int batch, double density, int threads)
      : stage_(stage), batch_(batch), density_(density), threads_(threads),
        spec_(stageSpec(stage, density < 1.0)), shape_{batch, stage.channels, stage.size,
                                                       stage.size} {
    const int64_t C = stage.channels, H = stage.size, W = stage.size;
    std::mt19937 rng(1234 + stage.index * 10 + batch);
    std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
    auto random = [&](size_t size) {
      std::vector<float> v(size);
      for (float &e : v)
        e = dist(rng);
      return v;
    };
    masks_.resize(spec_.branches.size());
    for (size_t b = 0; b < spec_.branches.size(); ++b) {
      const int64_t window = C * spec_.branches[b].windowSize();
      weights_.push_back(random(window));
      if (density < 1.0) {
        std::bernoulli_distribution live(density);
        masks_[b].resize(window);
        for (int64_t k = 0; k < window; ++k) {
          masks_[b][k] = live(rng) ? 1 : 0;
          if (!masks_[b][k])
            weights_[b][k] = 0.0f; // the model multiplies weights by masks
        }
      }
    }
    x_ = random(shape_.numel());
    dy_ = random(shape_.numel());
    y_.resize(x_.size());
    dx_.resize(x_.size());
    conv_ = std::make_unique<slak::codegen::cpu::CpuLkConv>(
        spec_, slak::codegen::cpu::defaultCpuSchedule(spec_, H, W));
    if (density < 1.0)
      conv_->setTaps(slak::codegen::buildTapTable(spec_, masks_));
    for (const auto &w : weights_)
      weightPtrs_.push_back(w.data());
    dw_.resize(weights_.size());
    for (size_t b = 0; b < weights_.size(); ++b) {
      dw_[b].resize(weights_[b].size());
      dwPtrs_.push_back(dw_[b].data());
    }
    // LibTorch eager: three depthwise conv2d + adds, autograd for the backward.
    tx_ = toTensor(x_, {batch, C, H, W});
    tdy_ = toTensor(dy_, {batch, C, H, W});
    txg_ = tx_.clone().requires_grad_(true);
    for (size_t b = 0; b < weights_.size(); ++b) {
      tw_.push_back(
          toTensor(weights_[b], {C, 1, spec_.branches[b].kernelH, spec_.branches[b].kernelW}));
      twg_.push_back(tw_.back().clone().requires_grad_(true));
    }
  }

  void halideForward() {
    conv_->forward(shape_, x_.data(), weightPtrs_, nullptr, {y_.data()}, threads_);
  }
  void halideTraining() {
    halideForward();
    conv_->backwardData(shape_, {dy_.data()}, weightPtrs_, dx_.data(), threads_);
    conv_->backwardWeight(shape_, x_.data(), {dy_.data()}, dwPtrs_, threads_);
  }
  void torchForward() {
    torch::NoGradGuard guard;
    torchY_ = torchLayer(tx_, tw_);
  }
  void torchTraining() {
    torch::Tensor out = torchLayer(txg_, twg_);
    out.backward(tdy_);
    txg_.mutable_grad() = torch::Tensor();
    for (torch::Tensor &w : twg_)
      w.mutable_grad() = torch::Tensor();
  }
  /// Largest |Halide - LibTorch| forward difference over max |LibTorch|.
  double forwardError() {
    halideForward();
    torchForward();
    const float *ref = torchY_.contiguous().data_ptr<float>();
    double worst = 0, scale = 0;
    for (size_t k = 0; k < y_.size(); ++k) {
      worst = std::max(worst, static_cast<double>(std::abs(y_[k] - ref[k])));
      scale = std::max(scale, static_cast<double>(std::abs(ref[k])));
    }
    return worst / std::max(scale, 1e-30);
  }
  double gflop() const {
    return forwardFlops(spec_, masks_, batch_, stage_.size, stage_.size) / 1e9;
  }
  Row row(const std::string &pass, double torchMs, double halideMs, double error) const {
    const double scale = pass == "fwd" ? 1.0 : 3.0;
    return {stage_.index, stage_.channels, stage_.size, stage_.m,        batch_, density_,
            pass,         torchMs,         halideMs,    scale * gflop(), error};
  }

private:
  torch::Tensor torchLayer(const torch::Tensor &input, const std::vector<torch::Tensor> &ws) {
    torch::Tensor out;
    for (size_t b = 0; b < ws.size(); ++b) {
      const Branch &br = spec_.branches[b];
      torch::Tensor t = torch::conv2d(input, ws[b], {}, 1, {br.padH, br.padW}, 1, stage_.channels);
      out = b == 0 ? t : out + t;
    }
    return out;
  }

  Stage stage_;
  int batch_;
  double density_;
  int threads_;
  KernelSpec spec_;
  slak::codegen::cpu::Shape shape_;
  std::vector<BranchMask> masks_;
  std::vector<std::vector<float>> weights_, dw_;
  std::vector<float> x_, dy_, y_, dx_;
  std::vector<const float *> weightPtrs_;
  std::vector<float *> dwPtrs_;
  std::unique_ptr<slak::codegen::cpu::CpuLkConv> conv_;
  torch::Tensor tx_, tdy_, txg_, torchY_;
  std::vector<torch::Tensor> tw_, twg_;
};

/// Median milliseconds of each body over `repeats` rounds. Each round runs
/// every body once, in turn, each after a short pause (LibTorch's OpenMP
/// threads and Halide's workers both spin for a while after a parallel loop)
/// and once the cores look free: on a machine shared with other jobs, all
/// bodies then see the same conditions, so their ratios stay meaningful even
/// when the absolute times drift.
std::vector<double> timeRoundsMs(Machine &machine, const std::vector<std::function<void()>> &bodies,
                                 int repeats, int warmup) {
  const auto settle = [] { std::this_thread::sleep_for(std::chrono::milliseconds(20)); };
  for (int i = 0; i < warmup; ++i)
    for (const auto &body : bodies) {
      body();
      settle();
    }
  std::vector<std::vector<double>> ms(bodies.size());
  for (int i = 0; i < repeats; ++i)
    for (size_t k = 0; k < bodies.size(); ++k) {
      settle();
      machine.waitUntilQuiet();
      const auto start = Clock::now();
      bodies[k]();
      ms[k].push_back(std::chrono::duration<double, std::milli>(Clock::now() - start).count());
    }
  std::vector<double> medians;
  for (const auto &v : ms)
    medians.push_back(median(v));
  return medians;
}

/// Times one stage at one batch, dense and 40% sparse, forward and
/// forward+backward; appends four rows.
void benchStage(const Stage &stage, int batch, const Options &opt, Machine &machine,
                std::vector<Row> &rows) {
  LayerBench dense(stage, batch, 1.0, opt.threads), sparse(stage, batch, 0.6, opt.threads);
  // Compile and regroup the taps outside the timing.
  dense.halideTraining();
  sparse.halideTraining();
  const int warmup = opt.quick ? 1 : 2;
  const std::vector<double> fwd =
      timeRoundsMs(machine,
                   {[&] { dense.halideForward(); }, [&] { dense.torchForward(); },
                    [&] { sparse.halideForward(); }, [&] { sparse.torchForward(); }},
                   opt.repeats, warmup);
  const std::vector<double> train =
      timeRoundsMs(machine,
                   {[&] { dense.halideTraining(); }, [&] { dense.torchTraining(); },
                    [&] { sparse.halideTraining(); }, [&] { sparse.torchTraining(); }},
                   opt.repeats, 1);
  const double denseError = dense.forwardError(), sparseError = sparse.forwardError();
  rows.push_back(dense.row("fwd", fwd[1], fwd[0], denseError));
  rows.push_back(dense.row("fwd+bwd", train[1], train[0], denseError));
  rows.push_back(sparse.row("fwd", fwd[3], fwd[2], sparseError));
  rows.back().denseHalideMs = fwd[0];
  rows.push_back(sparse.row("fwd+bwd", train[3], train[2], sparseError));
  rows.back().denseHalideMs = train[0];
}

std::string formatTable(const std::vector<Row> &rows, const Machine &machine, const Options &opt) {
  std::ostringstream os;
  char line[512];
  const double peak = machine.peak();
  os << "SLaK-T layers (branches MxN + NxM + 5x5, N = 5), fp32, " << opt.threads
     << " threads, median of " << opt.repeats << " runs; fp32 FMA peak measured "
     << static_cast<int>(std::round(peak)) << " GFLOP/s. GFLOP counts in-image live taps "
     << "(2 FLOP per multiply-add); fwd+bwd = forward + backward-data + backward-weight. ";
  if (opt.quiet > 0)
    os << machine.busyRuns() << " of " << machine.runs() << " timed runs went ahead while the "
       << "cores were busy with other work (FMA probe below " << opt.quiet << " x peak after "
       << opt.maxWait << " s).";
  os << "\n\n";
  os << "| stage | C | HxW | M | batch | density | pass | LibTorch ms | Halide ms | speedup | "
        "GFLOP/s | % peak | sparse/dense | max rel err |\n";
  os << "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n";
  for (const Row &r : rows) {
    const double gflops = r.gflop / (r.halideMs / 1e3);
    std::string ratio = r.denseHalideMs > 0 ? std::to_string(r.halideMs / r.denseHalideMs) : "";
    if (!ratio.empty())
      ratio = ratio.substr(0, 4) + "x";
    std::snprintf(line, sizeof line,
                  "| %d | %d | %dx%d | %d | %d | %.1f | %s | %.2f | %.2f | %.1fx | %.1f | %.1f%% | "
                  "%s | %.1e |\n",
                  r.stage, r.channels, r.size, r.size, r.m, r.batch, r.density, r.pass.c_str(),
                  r.torchMs, r.halideMs, r.torchMs / r.halideMs, gflops, 100.0 * gflops / peak,
                  ratio.c_str(), r.maxError);
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
    const double gflops = r.gflop / (r.halideMs / 1e3);
    os << "    {\"stage\": " << r.stage << ", \"channels\": " << r.channels
       << ", \"size\": " << r.size << ", \"m\": " << r.m << ", \"batch\": " << r.batch
       << ", \"density\": " << r.density << ", \"pass\": \"" << r.pass
       << "\", \"torch_ms\": " << r.torchMs << ", \"halide_ms\": " << r.halideMs
       << ", \"speedup\": " << r.torchMs / r.halideMs << ", \"gflop\": " << r.gflop
       << ", \"gflops\": " << gflops << ", \"peak_fraction\": " << gflops / peak;
    if (r.denseHalideMs > 0)
      os << ", \"sparse_over_dense\": " << r.halideMs / r.denseHalideMs;
    os << ", \"max_rel_error\": " << r.maxError << "}" << (k + 1 < rows.size() ? "," : "") << "\n";
  }
  os << "  ]\n}\n";
  return os.str();
}

} // namespace

int main(int argc, char **argv) {
#ifdef SLAK_BENCH_WITH_TRAIN
  // --train: training throughput, runtime vs LibTorch branches (TrainBench.cpp).
  for (int a = 1; a < argc; ++a)
    if (std::string(argv[a]) == "--train")
      return slak::bench::runTrainBench(argc, argv);
#endif
  const Options opt = parseOptions(argc, argv);
  torch::set_num_threads(opt.threads);
  std::cerr << "slak-bench: " << opt.threads << " threads, measuring the FMA peak...\n";
  Machine machine(opt);
  machine.measurePeak();
  std::vector<Row> rows;
  for (int stageIndex : opt.stages) {
    const Stage &stage = kStages[stageIndex - 1];
    for (int batch : opt.batches) {
      std::cerr << "slak-bench: stage " << stage.index << " batch " << batch << "\n";
      benchStage(stage, batch, opt, machine, rows);
    }
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

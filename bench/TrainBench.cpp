// slak-bench --train: training throughput (images/s) of a registry model
// (default slak_nano on Fashion-MNIST) with its large kernels through our
// runtime (`--lk-backend runtime`: slak::LKConv2d, tap tables skip dead taps)
// against the same model built from LibTorch conv2d branches (`torch`), in
// one process with the same thread count. Each run is a fresh Trainer (the
// full step: forward, label-smoothed loss, backward, AdamW, masks, metrics)
// over the same images from the same seed; the backends alternate run by run
// so that drifting load hits both alike, and the table reports medians.
#include "bench/TrainBench.h"

#include "models/train/Trainer.h"

#include <torch/torch.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <ftw.h>
#include <iostream>
#include <sstream>
#include <string>
#include <thread>
#include <unistd.h>
#include <vector>

namespace slak::bench {

namespace {

struct TrainBenchOptions {
  std::string model = "slak_nano";
  std::string dataset = "fashion-mnist";
  int64_t batch = 128;
  int64_t steps = 20; // timed optimizer steps per run (one epoch)
  int repeats = 3;
  int threads = 0;
  double sparsity = -1; // the model's default
  std::string markdown;
};

[[noreturn]] void trainUsage(const std::string &error) {
  if (!error.empty())
    std::cerr << "slak-bench --train: " << error << "\n";
  std::cerr << "usage: slak-bench --train [--model slak_nano] [--dataset fashion-mnist|synthetic]\n"
               "                          [--batch 128] [--steps 20] [--repeats 3] [--threads N]\n"
               "                          [--sparsity S] [--markdown FILE]\n"
               "  Training images/s of the model with --lk-backend runtime vs torch, alternating\n"
               "  the two, --repeats runs each of --steps optimizer steps (one epoch of\n"
               "  --steps x --batch images, SNIP masks from one batch, no mask update inside),\n"
               "  medians. The first run of each backend also JIT-compiles; all runs count.\n";
  std::exit(error.empty() ? 0 : 2);
}

int64_t parsePositive(const std::string &flag, const std::string &text) {
  char *end = nullptr;
  const long long v = std::strtoll(text.c_str(), &end, 10);
  if (text.empty() || *end != '\0' || v <= 0)
    trainUsage(flag + " expects a positive integer, got '" + text + "'");
  return v;
}

TrainBenchOptions parseTrainOptions(int argc, char **argv) {
  TrainBenchOptions o;
  for (int a = 1; a < argc; ++a) {
    const std::string arg = argv[a];
    auto value = [&]() -> std::string {
      if (a + 1 >= argc)
        trainUsage(arg + " needs a value");
      return argv[++a];
    };
    if (arg == "--train") {
      continue;
    } else if (arg == "--model") {
      o.model = value();
    } else if (arg == "--dataset") {
      o.dataset = value();
      if (o.dataset != "fashion-mnist" && o.dataset != "synthetic")
        trainUsage("--dataset expects fashion-mnist or synthetic, got '" + o.dataset + "'");
    } else if (arg == "--batch") {
      o.batch = parsePositive(arg, value());
    } else if (arg == "--steps") {
      o.steps = parsePositive(arg, value());
    } else if (arg == "--repeats") {
      o.repeats = static_cast<int>(parsePositive(arg, value()));
    } else if (arg == "--threads") {
      o.threads = static_cast<int>(parsePositive(arg, value()));
    } else if (arg == "--sparsity") {
      const std::string text = value();
      char *end = nullptr;
      o.sparsity = std::strtod(text.c_str(), &end);
      if (text.empty() || *end != '\0' || o.sparsity < 0 || o.sparsity >= 1)
        trainUsage("--sparsity expects a number in [0, 1), got '" + text + "'");
    } else if (arg == "--markdown") {
      o.markdown = value();
    } else if (arg == "--help" || arg == "-h") {
      trainUsage("");
    } else {
      trainUsage("unknown option " + arg);
    }
  }
  if (o.threads <= 0)
    o.threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  return o;
}

struct Run {
  std::string backend;
  double imagesPerSecond = 0;
  double seconds = 0;
  double loss = 0;
};

Run trainOnce(const TrainBenchOptions &b, const std::string &backend,
              const std::filesystem::path &dir) {
  train::TrainOptions o;
  o.model = b.model;
  o.dataset = b.dataset;
  o.overrides.backend = models::parseLkBackend(backend);
  if (b.sparsity >= 0)
    o.overrides.sparsity = b.sparsity;
  o.batchSize = b.batch;
  o.epochs = 1;
  o.trainLimit = b.batch * b.steps;
  o.synthetic.size = b.batch * b.steps;
  o.testLimit = 1;
  o.syntheticTestSize = 1;
  o.evalEachEpoch = false;
  o.threads = b.threads;
  o.progress = false;
  o.outDir = (dir / backend).string();
  o.sparse.updateFrequency = 0; // a fixed mask: both backends do the same work
  train::Trainer trainer(o);
  auto r = trainer.run();
  return {backend, r.imagesPerSecond, r.trainSeconds, r.trainLoss};
}

/// Removes the runs' scratch directory. (POSIX nftw: std::filesystem::remove_all
/// can bind to a copy inside libtorch.so that crashes here.)
void removeTree(const std::filesystem::path &dir) {
  ::nftw(
      dir.c_str(),
      [](const char *path, const struct stat *, int, struct FTW *) { return ::remove(path); }, 16,
      FTW_DEPTH | FTW_PHYS);
}

/// The 1-minute load average: the cores are shared, so the table says how
/// busy they were.
double loadAverage() {
  std::ifstream in("/proc/loadavg");
  double load = -1;
  in >> load;
  return load;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n == 0 ? 0 : (n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]));
}

} // namespace

int runTrainBench(int argc, char **argv) {
  const TrainBenchOptions b = parseTrainOptions(argc, argv);
  torch::set_num_threads(b.threads);
  const auto dir =
      std::filesystem::temp_directory_path() / ("slak-train-bench-" + std::to_string(::getpid()));
  const std::vector<std::string> backends = {"runtime", "torch"};
  std::vector<Run> runs;
  const double loadBefore = loadAverage();
  try {
    for (int r = 0; r < b.repeats; ++r)
      for (size_t k = 0; k < backends.size(); ++k) {
        // Alternate which backend goes first, so neither always follows the other.
        const auto &backend = backends[(k + r) % backends.size()];
        std::cerr << "slak-bench --train: run " << r + 1 << "/" << b.repeats << " " << backend
                  << "\n";
        runs.push_back(trainOnce(b, backend, dir));
        std::cerr << "  " << runs.back().imagesPerSecond << " images/s, loss " << runs.back().loss
                  << "\n";
      }
  } catch (const std::exception &e) {
    removeTree(dir);
    std::cerr << "slak-bench --train: error: " << e.what() << "\n";
    return 1;
  }
  removeTree(dir);
  const double loadAfter = loadAverage();

  std::ostringstream table;
  char line[256];
  std::snprintf(line, sizeof(line),
                "Training throughput, %s on %s: batch %lld, %lld steps per run, %d threads, "
                "%d runs per backend (alternating), medians; %u cores, load average %.1f "
                "before, %.1f after\n\n",
                b.model.c_str(), b.dataset.c_str(), (long long)b.batch, (long long)b.steps,
                b.threads, b.repeats, std::thread::hardware_concurrency(), loadBefore, loadAfter);
  table << line;
  table << "| large-kernel backend | images/s (median) | min | max | runs | train loss "
           "(first run) | vs torch |\n";
  table << "|---|---|---|---|---|---|---|\n";
  struct Summary {
    std::vector<double> rates;
    double loss = 0;
    std::string each;
  };
  std::vector<Summary> summaries(backends.size());
  for (size_t k = 0; k < backends.size(); ++k)
    for (const auto &run : runs)
      if (run.backend == backends[k]) {
        auto &s = summaries[k];
        if (s.rates.empty())
          s.loss = run.loss;
        std::snprintf(line, sizeof(line), "%s%.1f", s.rates.empty() ? "" : ", ",
                      run.imagesPerSecond);
        s.each += line;
        s.rates.push_back(run.imagesPerSecond);
      }
  const double torchMedian = median(summaries.back().rates);
  for (size_t k = 0; k < backends.size(); ++k) {
    const auto &s = summaries[k];
    const char *name =
        backends[k] == "runtime" ? "runtime (slak::LKConv2d)" : "torch (LibTorch conv2d branches)";
    std::snprintf(line, sizeof(line), "| %s | %.1f | %.1f | %.1f | %s | %.4f | %.2fx |\n", name,
                  median(s.rates), *std::min_element(s.rates.begin(), s.rates.end()),
                  *std::max_element(s.rates.begin(), s.rates.end()), s.each.c_str(), s.loss,
                  median(s.rates) / torchMedian);
    table << line;
  }
  std::cout << table.str();
  if (!b.markdown.empty())
    std::ofstream(b.markdown) << table.str();
  return 0;
}

} // namespace slak::bench

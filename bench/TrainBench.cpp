// slak-bench --train: whole-model speed of registry models at any image size,
// as images/s of training steps and of inference batches, for each
// configuration of large-kernel backend and memory layout:
//
//   runtime/nchw            slak::LKConv2d / slak::lk_conv (tap tables skip dead taps)
//   torch/nchw              LibTorch conv2d branches, NCHW (the baseline)
//   torch/channels_last     the same with input and model .to(channels_last) (oneDNN)
//   runtime/channels_last   the runtime with input and model .to(channels_last)
//
// A training step is forward, label-smoothed cross entropy, backward, AdamW
// and re-applying the masks (fixed SNIP masks scored on the first batch, as
// the trainer starts); an inference batch is an eval-mode forward under
// no_grad (the runtime folds BN and merges branches). Every configuration
// builds its model once from the same seed; the first training step (SNIP
// scoring included) and the first inference batch compile the kernels and
// are reported apart. Then the configurations alternate round by round,
// training rounds first, inference rounds after (weights fixed), and the
// table reports medians.
#include "bench/TrainBench.h"
#include "bench/BenchArgs.h"

#include "models/Models.h"
#include "models/data/Datasets.h"
#include "models/sparse/Masking.h"
#include "models/train/FusedAdamW.h"
#include "models/train/FusedAdamW.h"
#include "tools/common/ErrorMessage.h"

#include <ATen/record_function.h>
#include <torch/torch.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <mutex>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace slak::bench {

namespace {

using slak::bench::ArgWalker;
using slak::bench::splitCommas;

using Clock = std::chrono::steady_clock;

struct Configuration {
  models::LkBackend backend;
  bool channelsLast;
  std::string name() const {
    return std::string(backend == models::LkBackend::Runtime ? "runtime" : "torch") +
           (channelsLast ? "/channels_last" : "/nchw");
  }
};

struct TrainBenchOptions {
  std::vector<std::string> models = {"slak_tiny", "slak_nano"};
  int64_t imageSize = 224;
  std::string dataset = "synthetic";
  std::string dataDir = data::kFashionMnistDir;
  int64_t batch = 8;
  int64_t steps = 2; // timed training steps (and inference batches) per run
  int repeats = 3;
  int threads = 2;
  double sparsity = -1; // the model's default
  std::vector<Configuration> configurations = {{models::LkBackend::Runtime, false},
                                               {models::LkBackend::Torch, false},
                                               {models::LkBackend::Torch, true}};
  std::string markdown;
  int profileTop = 0; // --profile N: the N ops with the most self time per configuration
};

[[noreturn]] void trainUsage(const std::string &error) {
  if (!error.empty())
    std::cerr << "slak-bench --train: " << error << "\n";
  std::cerr << "usage: slak-bench --train [--model slak_tiny,slak_nano] [--image-size 224]\n"
               "                          [--dataset synthetic|fashion-mnist] [--data-dir DIR]\n"
               "                          [--batch 8] [--steps 2] [--repeats 3] [--threads 2]\n"
               "                          [--configs runtime/nchw,torch/nchw,torch/channels_last]\n"
               "                          [--sparsity S] [--markdown FILE] [--profile N]\n"
               "  Training and inference images/s of each registry model (comma-separated) at\n"
               "  --image-size px, for each configuration (large-kernel backend runtime|torch /\n"
               "  layout nchw|channels_last). Each run times --steps training steps (forward,\n"
               "  loss, backward, AdamW, masks) or --steps inference batches; configurations\n"
               "  alternate, --repeats runs each, medians. The first training step and the\n"
               "  first inference batch (kernel compilation) are reported apart.\n"
               "  Synthetic images have the model's input channels; Fashion-MNIST (1 channel,\n"
               "  28 px) is resized to --image-size.\n"
               "  --profile N: after the timed runs, one more training run and inference run\n"
               "  per configuration under LibTorch's RecordFunction, and a table of the N ops\n"
               "  (and autograd nodes) with the most self time per step.\n";
  std::exit(error.empty() ? 0 : 2);
}

/// A configuration that cannot run: one line, exit code 2.
[[noreturn]] void refuse(const std::string &error) {
  std::cerr << "slak-bench --train: " << error << "\n";
  std::exit(2);
}

int64_t parsePositive(const std::string &flag, const std::string &text) {
  char *end = nullptr;
  const long long v = std::strtoll(text.c_str(), &end, 10);
  if (text.empty() || *end != '\0' || v <= 0)
    trainUsage(flag + " expects a positive integer, got '" + text + "'");
  return v;
}

std::vector<std::string> splitList(const std::string &flag, const std::string &text) {
  std::vector<std::string> out = splitCommas(text);
  if (out.empty())
    trainUsage(flag + " expects a comma-separated list, got '" + text + "'");
  return out;
}

Configuration parseConfiguration(const std::string &text) {
  const size_t slash = text.find('/');
  const std::string backend = text.substr(0, slash);
  const std::string layout = slash == std::string::npos ? "nchw" : text.substr(slash + 1);
  if ((backend != "runtime" && backend != "torch") ||
      (layout != "nchw" && layout != "channels_last"))
    trainUsage("--configs expects entries runtime|torch[/nchw|/channels_last], got '" + text + "'");
  return {models::parseLkBackend(backend), layout == "channels_last"};
}

TrainBenchOptions parseTrainOptions(int argc, char **argv) {
  TrainBenchOptions o;
  ArgWalker args(argc, argv, [](const std::string &e) { trainUsage(e); });
  while (!args.done()) {
    const std::string arg = args.next();
    if (arg == "--train") {
      continue;
    } else if (arg == "--model") {
      o.models = splitList(arg, args.value());
    } else if (arg == "--image-size") {
      o.imageSize = parsePositive(arg, args.value());
    } else if (arg == "--dataset") {
      o.dataset = args.value();
      if (o.dataset != "fashion-mnist" && o.dataset != "synthetic")
        trainUsage("--dataset expects synthetic or fashion-mnist, got '" + o.dataset + "'");
    } else if (arg == "--data-dir") {
      o.dataDir = args.value();
    } else if (arg == "--batch") {
      o.batch = parsePositive(arg, args.value());
    } else if (arg == "--steps") {
      o.steps = parsePositive(arg, args.value());
    } else if (arg == "--repeats") {
      o.repeats = static_cast<int>(parsePositive(arg, args.value()));
    } else if (arg == "--threads") {
      o.threads = static_cast<int>(parsePositive(arg, args.value()));
    } else if (arg == "--configs") {
      o.configurations.clear();
      for (const std::string &c : splitList(arg, args.value()))
        o.configurations.push_back(parseConfiguration(c));
    } else if (arg == "--sparsity") {
      const std::string text = args.value();
      char *end = nullptr;
      o.sparsity = std::strtod(text.c_str(), &end);
      if (text.empty() || *end != '\0' || !(o.sparsity >= 0 && o.sparsity < 1))
        trainUsage("--sparsity expects a number in [0, 1), got '" + text + "'");
    } else if (arg == "--markdown") {
      o.markdown = args.value();
    } else if (arg == "--profile") {
      o.profileTop = static_cast<int>(parsePositive(arg, args.value()));
    } else if (arg == "--help" || arg == "-h") {
      trainUsage("");
    } else {
      trainUsage("unknown option " + arg);
    }
  }
  return o;
}

/// The model's configuration for the bench's data (input channels and ten
/// classes), checked against the image size before anything is built: a
/// model that downsamples the image to nothing is refused in one line.
models::ModelConfig benchConfig(const TrainBenchOptions &o, const std::string &name,
                                const Configuration &c) {
  models::ModelOverrides overrides;
  overrides.backend = c.backend;
  overrides.numClasses = 10;
  if (o.dataset == "fashion-mnist")
    overrides.inChannels = 1;
  if (o.sparsity >= 0)
    overrides.sparsity = o.sparsity;
  models::ModelConfig config;
  try {
    config = models::modelConfig(name, overrides);
  } catch (const std::invalid_argument &e) {
    refuse(e.what());
  }
  const int64_t minimum = models::minimumImageSize(config);
  if (o.imageSize < minimum)
    refuse("model " + name + " needs images of at least " + std::to_string(minimum) +
           " px, got --image-size " + std::to_string(o.imageSize) +
           " (its stem and downsamplings leave no pixel below that)");
  return config;
}

/// steps x batch images of the data set at the bench's size.
std::vector<data::Batch> benchBatches(const TrainBenchOptions &o, int64_t channels) {
  const int64_t count = o.steps * o.batch;
  data::Dataset d;
  if (o.dataset == "synthetic") {
    data::SyntheticOptions s;
    s.size = count;
    s.channels = channels;
    s.height = s.width = o.imageSize;
    d = data::makeSynthetic(s, 0);
  } else {
    d = data::loadFashionMnist(o.dataDir, true);
    if (d.size() < count)
      throw std::runtime_error(
          "Fashion-MNIST has " + std::to_string(d.size()) +
          " training images, fewer than --steps x --batch = " + std::to_string(count));
    d.images = d.images.slice(0, 0, count);
    d.labels = d.labels.slice(0, 0, count);
    if (o.imageSize != d.height())
      d.images = torch::nn::functional::interpolate(
          d.images, torch::nn::functional::InterpolateFuncOptions()
                        .size(std::vector<int64_t>{o.imageSize, o.imageSize})
                        .mode(torch::kBilinear)
                        .align_corners(false));
  }
  std::vector<data::Batch> out;
  for (int64_t s = 0; s < o.steps; ++s)
    out.push_back({d.images.slice(0, s * o.batch, (s + 1) * o.batch).contiguous(),
                   d.labels.slice(0, s * o.batch, (s + 1) * o.batch)});
  return out;
}

double secondsSince(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

/// Wall time spent inside the large-kernel ops slak::lk_conv and
/// slak::lk_conv_backward, from LibTorch's RecordFunction callbacks on the
/// dispatcher's calls (the outermost call of a nest counts once). Installed
/// for the whole bench, so every configuration pays the same callback cost.
class LkOpClock {
public:
  LkOpClock() {
    handle_ = at::addGlobalCallback(
        at::RecordFunctionCallback(&start, &end).scopes({at::RecordScope::FUNCTION}));
  }
  ~LkOpClock() { at::removeCallback(handle_); }
  LkOpClock(const LkOpClock &) = delete;
  LkOpClock &operator=(const LkOpClock &) = delete;

  static void reset() { nanos().store(0); }
  static double seconds() { return static_cast<double>(nanos().load()) * 1e-9; }

private:
  struct Started : at::ObserverContext {
    Clock::time_point t0;
    bool outermost = false;
  };
  static std::atomic<int64_t> &nanos() {
    static std::atomic<int64_t> total{0};
    return total;
  }
  static int &depth() {
    thread_local int d = 0;
    return d;
  }
  static std::unique_ptr<at::ObserverContext> start(const at::RecordFunction &fn) {
    if (std::strncmp(fn.name(), "slak::lk_conv", 13) != 0)
      return nullptr;
    auto s = std::make_unique<Started>();
    s->outermost = depth()++ == 0;
    s->t0 = Clock::now();
    return s;
  }
  static void end(const at::RecordFunction &, at::ObserverContext *context) {
    auto *s = dynamic_cast<Started *>(context);
    if (s == nullptr)
      return;
    --depth();
    if (s->outermost)
      nanos().fetch_add(
          std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - s->t0).count());
  }
  at::CallbackHandle handle_;
};

/// --profile: self time per LibTorch op and autograd node (RecordFunction,
/// ops nested in another op count only in the innermost), over the runs it
/// is installed for.
class OpProfile {
public:
  struct Entry {
    std::string name;
    int64_t calls = 0;
    double seconds = 0;
  };

  OpProfile() {
    instance() = this;
    handle_ = at::addGlobalCallback(
        at::RecordFunctionCallback(&start, &end)
            .scopes({at::RecordScope::FUNCTION, at::RecordScope::BACKWARD_FUNCTION}));
  }
  ~OpProfile() {
    at::removeCallback(handle_);
    instance() = nullptr;
  }
  OpProfile(const OpProfile &) = delete;
  OpProfile &operator=(const OpProfile &) = delete;

  /// Entries by self time, largest first.
  std::vector<Entry> entries() const {
    std::lock_guard<std::mutex> lock(mutex_);
    std::vector<Entry> out;
    for (const auto &[name, e] : byName_)
      out.push_back(e);
    std::sort(out.begin(), out.end(),
              [](const Entry &a, const Entry &b) { return a.seconds > b.seconds; });
    return out;
  }

private:
  struct Frame : at::ObserverContext {
    Clock::time_point t0;
    double childSeconds = 0;
    Frame *parent = nullptr;
  };
  static OpProfile *&instance() {
    static OpProfile *p = nullptr;
    return p;
  }
  static Frame *&top() {
    thread_local Frame *t = nullptr;
    return t;
  }
  static std::unique_ptr<at::ObserverContext> start(const at::RecordFunction &) {
    auto f = std::make_unique<Frame>();
    f->parent = top();
    top() = f.get();
    f->t0 = Clock::now();
    return f;
  }
  static void end(const at::RecordFunction &fn, at::ObserverContext *context) {
    auto *f = dynamic_cast<Frame *>(context);
    OpProfile *p = instance();
    if (f == nullptr || p == nullptr)
      return;
    const double total = std::chrono::duration<double>(Clock::now() - f->t0).count();
    top() = f->parent;
    if (f->parent)
      f->parent->childSeconds += total;
    std::lock_guard<std::mutex> lock(p->mutex_);
    Entry &e = p->byName_[fn.name()];
    e.name = fn.name();
    ++e.calls;
    e.seconds += total - f->childSeconds;
  }

  at::CallbackHandle handle_;
  mutable std::mutex mutex_;
  std::map<std::string, Entry> byName_;
};

/// One configuration's model, optimizer and masks, and its inputs in its layout.
class ModelRun {
public:
  ModelRun(const models::ModelConfig &config, const Configuration &c,
           const std::vector<data::Batch> &batches)
      : configuration_(c) {
    const auto format =
        c.channelsLast ? torch::MemoryFormat::ChannelsLast : torch::MemoryFormat::Contiguous;
    for (const data::Batch &b : batches)
      batches_.push_back({b.images.contiguous(format), b.labels});
    torch::manual_seed(0);
    model_ = models::createModel(config);
    // What model.to(memory_format=torch.channels_last) does: every 4-d
    // parameter (conv weights, large-kernel branches) in that layout.
    if (c.channelsLast) {
      torch::NoGradGuard noGrad;
      for (torch::Tensor &p : model_->parameters())
        if (p.dim() == 4)
          p.set_data(p.data().contiguous(format));
    }
    optimizer_ = std::make_unique<train::FusedAdamW>(
        model_->parameters(), torch::optim::AdamWOptions(2e-3).weight_decay(0.05));
    if (config.sparsity > 0) {
      sparse::Options s;
      s.sparsity = config.sparsity;
      masking_ = std::make_unique<sparse::Masking>(*model_, s);
    }
  }

  /// The first training step, SNIP scoring of the masks included (seconds).
  double firstTrainingStep() {
    const auto t0 = Clock::now();
    if (masking_) {
      const data::Batch &b = batches_.front();
      masking_->initialize([&] {
        return torch::nn::functional::cross_entropy(model_->forward(b.images), b.labels);
      });
      models::pushMasksToLargeKernels(*model_, masking_->maskMap());
      optimizer_->zero_grad();
    }
    trainingStep(batches_.front());
    return secondsSince(t0);
  }
  /// One inference batch (seconds); the first compiles the eval kernels.
  double inferenceBatch(size_t k = 0) {
    const auto t0 = Clock::now();
    model_->eval();
    {
      torch::NoGradGuard noGrad;
      model_->forward(batches_[k].images);
    }
    model_->train();
    return secondsSince(t0);
  }
  /// Images/s of one pass over the batches; `lkShare` gets the fraction of
  /// its wall time spent in the large-kernel ops (LkOpClock).
  double trainingRate(double *lkShare) {
    LkOpClock::reset();
    const auto t0 = Clock::now();
    for (const data::Batch &b : batches_)
      trainingStep(b);
    const double seconds = secondsSince(t0);
    *lkShare = LkOpClock::seconds() / seconds;
    return imageCount() / seconds;
  }
  double inferenceRate() {
    model_->eval();
    const auto t0 = Clock::now();
    {
      torch::NoGradGuard noGrad;
      for (const data::Batch &b : batches_)
        model_->forward(b.images);
    }
    const double rate = imageCount() / secondsSince(t0);
    model_->train();
    return rate;
  }
  const Configuration &configuration() const { return configuration_; }

private:
  void trainingStep(const data::Batch &b) {
    model_->train();
    auto loss = torch::nn::functional::cross_entropy(
        model_->forward(b.images), b.labels,
        torch::nn::functional::CrossEntropyFuncOptions().label_smoothing(0.1));
    loss.backward();
    optimizer_->step();
    if (masking_)
      masking_->applyToWeights();
    optimizer_->zero_grad();
  }
  double imageCount() const {
    double n = 0;
    for (const data::Batch &b : batches_)
      n += static_cast<double>(b.images.size(0));
    return n;
  }

  Configuration configuration_;
  std::vector<data::Batch> batches_;
  std::shared_ptr<models::Classifier> model_;
  std::unique_ptr<torch::optim::AdamW> optimizer_;
  std::unique_ptr<sparse::Masking> masking_;
};

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n == 0 ? 0 : (n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]));
}

/// The 1-minute load average: the cores may be shared, so the table says how
/// busy they were.
double loadAverage() {
  std::ifstream in("/proc/loadavg");
  double load = -1;
  in >> load;
  return load;
}

struct Result {
  std::string model;
  Configuration configuration{models::LkBackend::Torch, false};
  double firstTrainSeconds = 0, firstInferenceSeconds = 0;
  std::vector<double> train, inference; // images/s per run
  std::vector<double> lkShare;          // per training run: slak::lk_conv* time / step time
  std::vector<OpProfile::Entry> trainOps, inferenceOps; // --profile, totals over one run
  double trainProfileSeconds = 0, inferenceProfileSeconds = 0;
};

/// Builds every configuration of one model, times the first calls, then
/// alternates the configurations run by run.
std::vector<Result> benchModel(const TrainBenchOptions &o, const std::string &name) {
  std::vector<models::ModelConfig> configs;
  for (const Configuration &c : o.configurations)
    configs.push_back(benchConfig(o, name, c));
  const auto batches = benchBatches(o, configs.front().inChannels);
  std::vector<std::unique_ptr<ModelRun>> runs;
  std::vector<Result> results;
  for (size_t k = 0; k < configs.size(); ++k) {
    std::cerr << "slak-bench --train: " << name << " " << o.configurations[k].name()
              << ": first training step and inference batch\n";
    runs.push_back(std::make_unique<ModelRun>(configs[k], o.configurations[k], batches));
    Result r;
    r.model = name;
    r.configuration = o.configurations[k];
    r.firstTrainSeconds = runs.back()->firstTrainingStep();
    r.firstInferenceSeconds = runs.back()->inferenceBatch();
    results.push_back(r);
  }
  const size_t n = runs.size();
  for (int rep = 0; rep < o.repeats; ++rep)
    for (size_t k = 0; k < n; ++k) {
      // Rotate the order so that no configuration always follows the same one.
      const size_t i = (k + rep) % n;
      double share = 0;
      results[i].train.push_back(runs[i]->trainingRate(&share));
      results[i].lkShare.push_back(share);
      std::cerr << "slak-bench --train: " << name << " " << results[i].configuration.name()
                << " training run " << rep + 1 << "/" << o.repeats << ": "
                << results[i].train.back() << " images/s\n";
    }
  // The weights are fixed from here: one untimed batch lets the runtime
  // fold the trained weights before the inference runs.
  for (auto &run : runs)
    run->inferenceBatch();
  for (int rep = 0; rep < o.repeats; ++rep)
    for (size_t k = 0; k < n; ++k) {
      const size_t i = (k + rep) % n;
      results[i].inference.push_back(runs[i]->inferenceRate());
    }
  if (o.profileTop > 0)
    for (size_t i = 0; i < n; ++i) {
      std::cerr << "slak-bench --train: " << name << " " << results[i].configuration.name()
                << ": profiled training and inference run\n";
      double share = 0;
      {
        OpProfile profile;
        const auto t0 = Clock::now();
        runs[i]->trainingRate(&share);
        results[i].trainProfileSeconds = secondsSince(t0);
        results[i].trainOps = profile.entries();
      }
      {
        OpProfile profile;
        const auto t0 = Clock::now();
        runs[i]->inferenceRate();
        results[i].inferenceProfileSeconds = secondsSince(t0);
        results[i].inferenceOps = profile.entries();
      }
    }
  return results;
}

std::string formatTable(const TrainBenchOptions &o, const std::vector<Result> &results,
                        double loadBefore, double loadAfter) {
  std::ostringstream table;
  char line[1024];
  std::snprintf(line, sizeof line,
                "Whole models, fp32, %s images %lld px, batch %lld, %d threads; %lld training "
                "steps (forward, loss, backward, AdamW, masks) or inference batches (eval, "
                "no_grad) per run, %d runs per configuration (alternating), medians [min-max]; "
                "first calls (kernel compilation; the first step scores SNIP masks) apart. "
                "Large-kernel ops = wall time inside slak::lk_conv and its backward (LibTorch "
                "RecordFunction) over the training run's. "
                "vs best LibTorch = images/s over the faster LibTorch layout's. %u cores, load "
                "average %.1f before, %.1f after.\n\n",
                o.dataset.c_str(), (long long)o.imageSize, (long long)o.batch, o.threads,
                (long long)o.steps, o.repeats, std::thread::hardware_concurrency(), loadBefore,
                loadAfter);
  table << line;
  table << "| model | px | large-kernel backend | layout | train images/s | infer images/s | "
           "train vs best LibTorch | infer vs best LibTorch | large-kernel ops in a train "
           "step | first train step s | first inference s |\n";
  table << "|---|---|---|---|---|---|---|---|---|---|---|\n";
  auto range = [](const std::vector<double> &v) {
    char text[96];
    std::snprintf(text, sizeof text, "%.2f [%.2f-%.2f]", median(v),
                  *std::min_element(v.begin(), v.end()), *std::max_element(v.begin(), v.end()));
    return std::string(text);
  };
  for (const Result &r : results) {
    // The best LibTorch configuration of the same model (0 when none ran).
    double bestTrain = 0, bestInference = 0;
    for (const Result &t : results)
      if (t.model == r.model && t.configuration.backend == models::LkBackend::Torch) {
        bestTrain = std::max(bestTrain, median(t.train));
        bestInference = std::max(bestInference, median(t.inference));
      }
    auto ratio = [](double v, double best) {
      return best > 0 ? (std::to_string(v / best).substr(0, 4) + "x") : std::string("-");
    };
    // The runtime's ops are timed; LibTorch's branches are plain conv2d calls.
    char share[32] = "-";
    if (r.configuration.backend == models::LkBackend::Runtime && !r.lkShare.empty())
      std::snprintf(share, sizeof share, "%.0f%%", 100.0 * median(r.lkShare));
    std::snprintf(line, sizeof line,
                  "| %s | %lld | %s | %s | %s | %s | %s | %s | %s | %.2f | %.2f |\n",
                  r.model.c_str(), (long long)o.imageSize,
                  r.configuration.backend == models::LkBackend::Runtime ? "runtime (slak::lk_conv)"
                                                                        : "torch (conv2d branches)",
                  r.configuration.channelsLast ? "channels_last" : "NCHW", range(r.train).c_str(),
                  range(r.inference).c_str(), ratio(median(r.train), bestTrain).c_str(),
                  ratio(median(r.inference), bestInference).c_str(), share, r.firstTrainSeconds,
                  r.firstInferenceSeconds);
    table << line;
  }
  return table.str();
}

/// --profile: per configuration, the ops with the most self time per
/// training step and per inference batch.
std::string formatProfiles(const TrainBenchOptions &o, const std::vector<Result> &results) {
  std::ostringstream out;
  char line[512];
  auto section = [&](const Result &r, const char *what, const std::vector<OpProfile::Entry> &ops,
                     double seconds) {
    const double perStep = 1.0 / static_cast<double>(o.steps);
    std::snprintf(line, sizeof line,
                  "\n%s %s, %s: self time per %s (%.0f ms), top %d of %zu ops (RecordFunction; "
                  "an op nested in another counts in the innermost)\n\n",
                  r.model.c_str(), r.configuration.name().c_str(), what,
                  std::strcmp(what, "training") == 0 ? "step" : "batch", 1e3 * seconds * perStep,
                  o.profileTop, ops.size());
    out << line << "| op | calls | ms | share |\n|---|---|---|---|\n";
    for (size_t k = 0; k < ops.size() && k < static_cast<size_t>(o.profileTop); ++k) {
      std::snprintf(line, sizeof line, "| %s | %.0f | %.1f | %.1f%% |\n", ops[k].name.c_str(),
                    static_cast<double>(ops[k].calls) * perStep, 1e3 * ops[k].seconds * perStep,
                    100.0 * ops[k].seconds / seconds);
      out << line;
    }
  };
  for (const Result &r : results) {
    section(r, "training", r.trainOps, r.trainProfileSeconds);
    section(r, "inference", r.inferenceOps, r.inferenceProfileSeconds);
  }
  return out.str();
}

} // namespace

int runTrainBench(int argc, char **argv) {
  const TrainBenchOptions o = parseTrainOptions(argc, argv);
  // Refuse a model that does not fit before any work.
  for (const std::string &name : o.models)
    for (const Configuration &c : o.configurations)
      benchConfig(o, name, c);
  torch::set_num_threads(o.threads);
  LkOpClock lkOps;
  const double loadBefore = loadAverage();
  std::vector<Result> results;
  try {
    for (const std::string &name : o.models) {
      auto r = benchModel(o, name);
      results.insert(results.end(), r.begin(), r.end());
    }
  } catch (const std::exception &e) {
    std::cerr << "slak-bench --train: error: " << tools::errorMessage(e) << "\n";
    return 1;
  }
  std::string table = formatTable(o, results, loadBefore, loadAverage());
  if (o.profileTop > 0)
    table += formatProfiles(o, results);
  std::cout << table;
  if (!o.markdown.empty())
    std::ofstream(o.markdown) << table;
  return 0;
}

} // namespace slak::bench

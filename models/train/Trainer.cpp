#include "models/train/Trainer.h"

#include "models/deploy/Checkpoint.h"
#include "models/deploy/ZipChecksums.h"
#include "models/train/OutputDirectoryLock.h"
#include "runtime/Log.h"

#include <ATen/CPUGeneratorImpl.h>
#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <sstream>
#include <stdexcept>

namespace slak::train {

namespace fs = std::filesystem;
using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

namespace {

constexpr int64_t kCheckpointFormat = 1;

double secondsSince(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

json configJson(const models::ModelConfig &c) {
  return json{{"name", c.name},
              {"depths", c.depths},
              {"dims", c.dims()},
              {"kernel_sizes", c.kernelSizes},
              {"small_kernel", c.smallKernel},
              {"decomposed", c.decomposed},
              {"branch_bn", c.branchBatchNorm},
              {"in_channels", c.inChannels},
              {"num_classes", c.numClasses},
              {"stem_kernel", c.stemKernel},
              {"stem_stride", c.stemStride},
              {"sparsity", c.sparsity}};
}

std::string formatDuration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0)
    return "--:--";
  int64_t s = static_cast<int64_t>(seconds + 0.5);
  char buf[32];
  if (s >= 3600)
    std::snprintf(buf, sizeof(buf), "%lld:%02lld:%02lld", (long long)(s / 3600),
                  (long long)(s / 60 % 60), (long long)(s % 60));
  else
    std::snprintf(buf, sizeof(buf), "%02lld:%02lld", (long long)(s / 60), (long long)(s % 60));
  return buf;
}

/// One line on stderr redrawn in place on a terminal; elsewhere a line per
/// tenth of the epoch, so logs stay short.
class ProgressBar {
public:
  ProgressBar(bool enabled, int64_t epoch, int64_t epochs, int64_t total)
      : enabled_(enabled), tty_(isatty(STDERR_FILENO)), epoch_(epoch), epochs_(epochs),
        total_(total) {}

  void update(int64_t done, double loss, double accuracy, double imagesPerSecond,
              double etaSeconds) {
    if (!enabled_)
      return;
    bool last = done == total_;
    if (tty_) {
      auto now = Clock::now();
      if (!last && done > 1 && std::chrono::duration<double>(now - lastDraw_).count() < 0.2)
        return;
      lastDraw_ = now;
    } else {
      int64_t tenth = std::max<int64_t>(1, total_ / 10);
      if (!last && done % tenth != 0)
        return;
    }
    const int width = 24;
    int filled = static_cast<int>(width * done / std::max<int64_t>(total_, 1));
    std::string bar(filled, '=');
    if (filled < width)
      bar += '>' + std::string(width - filled - 1, ' ');
    char line[256];
    std::snprintf(line, sizeof(line),
                  "epoch %lld/%lld [%s] %lld/%lld loss %.4f acc %5.1f%% %7.1f img/s ETA %s",
                  (long long)epoch_ + 1, (long long)epochs_, bar.c_str(), (long long)done,
                  (long long)total_, loss, 100.0 * accuracy, imagesPerSecond,
                  formatDuration(etaSeconds).c_str());
    if (tty_)
      std::cerr << '\r' << line << "\033[K" << (last ? "\n" : "") << std::flush;
    else
      std::cerr << line << '\n' << std::flush;
  }

private:
  bool enabled_, tty_;
  int64_t epoch_, epochs_, total_;
  Clock::time_point lastDraw_{};
};

/// Flushes a file, or a directory's entries (a rename), to the disk, so that
/// a checkpoint survives a power loss as well as a killed process.
void fsyncPath(const std::string &path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd >= 0) {
    ::fsync(fd);
    ::close(fd);
  }
}

/// The first sentence of a LibTorch message (it may add advice and context
/// lines that do not fit a one-line error).
std::string firstSentence(const std::string &text) {
  std::string line = text.substr(0, text.find('\n'));
  return line.substr(0, line.find(". "));
}

} // namespace

// ------------------------------------------------------------- evaluation

Evaluation evaluate(models::Classifier &model, const data::Dataset &d, int64_t batchSize,
                    const std::string &device, ProcessGroup *group) {
  torch::NoGradGuard noGrad;
  bool wasTraining = model.is_training();
  model.eval();
  double lossSum = 0;
  int64_t correct = 0;
  // This rank's contiguous shard of the test split.
  const int64_t ranks = group ? group->size() : 1, rank = group ? group->rank() : 0;
  const int64_t first = d.size() * rank / ranks, last = d.size() * (rank + 1) / ranks;
  for (int64_t start = first; start < last; start += batchSize) {
    int64_t n = std::min(batchSize, last - start);
    auto x = d.images.slice(0, start, start + n).to(device);
    auto y = d.labels.slice(0, start, start + n).to(device);
    auto logits = model.forward(x);
    lossSum +=
        torch::nn::functional::cross_entropy(
            logits, y, torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kSum))
            .item<double>();
    correct += logits.argmax(1).eq(y).sum().item<int64_t>();
  }
  model.train(wasTraining);
  if (ranks > 1) {
    auto sums = group->sum({lossSum, static_cast<double>(correct)});
    lossSum = sums[0];
    correct = std::llround(sums[1]);
  }
  double n = static_cast<double>(std::max<int64_t>(d.size(), 1));
  return {lossSum / n, static_cast<double>(correct) / n};
}

// ----------------------------------------------------------------- Trainer

struct Trainer::State {
  TrainOptions options;
  models::ModelConfig config;
  data::Dataset train, test;
  std::shared_ptr<models::Classifier> model, ema;
  std::unique_ptr<torch::optim::AdamW> optimizer;
  std::unique_ptr<sparse::Masking> masking;
  std::unique_ptr<ProcessGroup> group; // a one-rank group when not distributed
  std::unique_ptr<GradientBucket> bucket;
  torch::Device device{torch::kCPU};
  int64_t step = 0;
  int64_t stepsPerEpoch = 0, totalSteps = 0, warmupSteps = 0;
  // Running sums of the current epoch (kept in checkpoints for exact logs).
  double epochLossSum = 0, epochTrainSeconds = 0;
  int64_t epochCorrect = 0, epochSeen = 0;
  std::string logPath, checkpointPath;
  // Rank 0 holds these while it trains: one trainer per output directory.
  std::vector<std::unique_ptr<OutputDirectoryLock>> locks;

  bool root() const { return group->isRoot(); }
  bool distributed() const { return group->size() > 1; }

  /// One write() per record on an O_APPEND descriptor: a record is on disk
  /// whole or not at all when the process is killed, and never split.
  void log(const json &record) const {
    if (!root())
      return;
    const std::string line = record.dump() + '\n';
    const int fd = ::open(logPath.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0)
      throw std::runtime_error("cannot append to the log " + logPath + ": " + std::strerror(errno) +
                               "; pass a writable --out-dir or --log");
    const ssize_t n = ::write(fd, line.data(), line.size());
    const int err = errno;
    ::close(fd);
    if (n != static_cast<ssize_t>(line.size()))
      throw std::runtime_error("cannot append to the log " + logPath + ": " +
                               (n < 0 ? std::strerror(err) : "short write (disk full?)"));
  }

  double learningRate(int64_t s) const {
    const auto &o = options;
    if (s < warmupSteps)
      return o.lr * static_cast<double>(s + 1) / static_cast<double>(warmupSteps);
    double span = static_cast<double>(std::max<int64_t>(totalSteps - warmupSteps, 1));
    double t = std::min(1.0, static_cast<double>(s - warmupSteps) / span);
    return o.minLr + 0.5 * (o.lr - o.minLr) * (1.0 + std::cos(M_PI * t));
  }

  /// Rank 0's parameters and buffers on every rank (start of training).
  void broadcastModel(models::Classifier &m) {
    torch::NoGradGuard noGrad;
    for (auto &p : m.parameters())
      group->broadcast(p);
    syncBuffers(m);
  }

  /// Buffers (BatchNorm running statistics) are updated per rank from its own
  /// batches; before evaluation and checkpoints every rank takes rank 0's, as
  /// DDP broadcasts them (train-mode BN normalises with batch statistics, so
  /// doing this only here gives the same rank-0 trajectory as every step).
  void syncBuffers(models::Classifier &m) {
    if (!distributed())
      return;
    torch::NoGradGuard noGrad;
    for (auto &b : m.buffers())
      group->broadcast(b);
  }

  /// Fails loudly when the ranks' masks differ.
  void checkMasks(const std::string &when) {
    if (!distributed() || !masking)
      return;
    std::vector<std::string> names;
    for (const auto &l : masking->layers())
      names.push_back("the mask of " + l.name);
    group->requireIdentical(masking->checksums(), names, when);
  }

  /// Fails loudly when the ranks' weights differ (epoch ends).
  void checkParameters(const std::string &when) {
    if (!distributed())
      return;
    torch::NoGradGuard noGrad;
    std::vector<std::string> names;
    std::vector<double> sums;
    for (const auto &p : model->named_parameters()) {
      auto flat = p.value().detach().to(torch::kCPU, torch::kFloat64).flatten();
      auto w = torch::arange(flat.numel(), torch::kFloat64).remainder(1021.0).div(1021.0).add(1.0);
      names.push_back("parameter " + p.key());
      sums.push_back(flat.dot(w).item<double>());
    }
    group->requireIdentical(torch::tensor(sums, torch::kFloat64), names, when);
  }

  void setDenseWeightGrads(bool dense) {
    for (auto &layer : models::largeKernelLayers(*model))
      layer.second->setDenseWeightGrad(dense);
  }

  void updateEma() {
    torch::NoGradGuard noGrad;
    const double decay = options.emaDecay;
    auto source = model->named_parameters();
    for (auto &p : ema->named_parameters())
      p.value().mul_(decay).add_(source[p.key()], 1.0 - decay);
    auto sourceBuffers = model->named_buffers();
    for (auto &b : ema->named_buffers()) {
      const auto &v = sourceBuffers[b.key()];
      if (b.value().is_floating_point())
        b.value().mul_(decay).add_(v, 1.0 - decay);
      else
        b.value().copy_(v);
    }
    if (masking)
      masking->applyTo(*ema);
  }

  void logMasks(const std::string &event, int64_t atStep, double pruneRate,
                const std::vector<sparse::LayerUpdate> *updates) const {
    json layers = json::object();
    for (const auto &l : masking->layers())
      layers[l.name] = l.density();
    json record{{"event", event},
                {"step", atStep},
                {"density", masking->overallDensity()},
                {"layers", layers}};
    if (updates) {
      int64_t moved = 0;
      for (const auto &u : *updates)
        moved += u.pruned;
      record["prune_rate"] = pruneRate;
      record["regrown"] = moved;
    }
    log(record);
  }

  void saveOptimizer(torch::serialize::OutputArchive &archive) const {
    int64_t count = 0;
    for (const auto &p : model->named_parameters()) {
      auto it = optimizer->state().find(p.value().unsafeGetTensorImpl());
      if (it == optimizer->state().end())
        continue;
      auto &state = static_cast<torch::optim::AdamWParamState &>(*it->second);
      torch::serialize::OutputArchive entry(archive.compilation_unit());
      entry.write("name", c10::IValue(p.key()));
      entry.write("step", torch::tensor(state.step()));
      entry.write("exp_avg", state.exp_avg().cpu());
      entry.write("exp_avg_sq", state.exp_avg_sq().cpu());
      archive.write(std::to_string(count++), entry);
    }
    archive.write("count", torch::tensor(count));
  }

  void loadOptimizer(torch::serialize::InputArchive &archive) {
    torch::Tensor count;
    archive.read("count", count);
    auto params = model->named_parameters();
    optimizer->state().clear();
    for (int64_t i = 0; i < count.item<int64_t>(); ++i) {
      torch::serialize::InputArchive entry;
      archive.read(std::to_string(i), entry);
      c10::IValue name;
      torch::Tensor step, expAvg, expAvgSq;
      entry.read("name", name);
      entry.read("step", step);
      entry.read("exp_avg", expAvg);
      entry.read("exp_avg_sq", expAvgSq);
      auto *param = params.find(name.toStringRef());
      if (!param)
        throw std::runtime_error("checkpoint has optimizer state for " + name.toStringRef() +
                                 ", which this model does not have");
      auto state = std::make_unique<torch::optim::AdamWParamState>();
      state->step(step.item<int64_t>());
      state->exp_avg(expAvg.to(device));
      state->exp_avg_sq(expAvgSq.to(device));
      optimizer->state()[param->unsafeGetTensorImpl()] = std::move(state);
    }
  }

  /// A collective in distributed runs: buffers are synchronised and the
  /// ranks' generator states gathered; rank 0 writes `path` (with
  /// checkpointAllRanks every rank r > 0 also writes path.rank<r>).
  void save(const std::string &path) {
    syncBuffers(*model);
    if (ema)
      syncBuffers(*ema);
    std::vector<torch::Tensor> cpuStates =
        group->allgather(at::detail::getDefaultCPUGenerator().get_state());
    std::vector<torch::Tensor> cudaStates;
    if (device.is_cuda())
      cudaStates = group->allgather(at::globalContext().defaultGenerator(device).get_state());
    std::string target = path;
    if (!group->isRoot()) {
      if (!options.checkpointAllRanks)
        return;
      target = path + ".rank" + std::to_string(group->rank());
    }
    torch::serialize::OutputArchive root;
    torch::serialize::OutputArchive modelArchive(root.compilation_unit());
    model->save(modelArchive);
    root.write("model", modelArchive);
    if (ema) {
      torch::serialize::OutputArchive emaArchive(root.compilation_unit());
      ema->save(emaArchive);
      root.write("ema", emaArchive);
    }
    torch::serialize::OutputArchive optArchive(root.compilation_unit());
    saveOptimizer(optArchive);
    root.write("optimizer", optArchive);
    if (masking) {
      torch::serialize::OutputArchive maskArchive(root.compilation_unit());
      masking->save(maskArchive);
      root.write("masks", maskArchive);
    }
    torch::serialize::OutputArchive rng(root.compilation_unit());
    rng.write("cpu", cpuStates[0]);
    for (size_t r = 1; r < cpuStates.size(); ++r)
      rng.write("cpu_rank" + std::to_string(r), cpuStates[r]);
    for (size_t r = 0; r < cudaStates.size(); ++r)
      rng.write(r == 0 ? std::string("cuda") : "cuda_rank" + std::to_string(r), cudaStates[r]);
    root.write("rng", rng);
    torch::serialize::OutputArchive meta(root.compilation_unit());
    meta.write("format", torch::tensor(kCheckpointFormat));
    meta.write("step", torch::tensor(step));
    meta.write("world_size", torch::tensor(static_cast<int64_t>(group->size())));
    meta.write("epoch_loss_sum", torch::tensor(epochLossSum, torch::kFloat64));
    meta.write("epoch_train_seconds", torch::tensor(epochTrainSeconds, torch::kFloat64));
    meta.write("epoch_correct", torch::tensor(epochCorrect));
    meta.write("epoch_seen", torch::tensor(epochSeen));
    meta.write("config", c10::IValue(configJson(config).dump()));
    root.write("meta", meta);

    if (auto dir = fs::path(target).parent_path(); !dir.empty())
      fs::create_directories(dir);
    const std::string tmp = target + ".tmp";
    try {
      root.save_to(tmp);
    } catch (const c10::Error &e) {
      throw std::runtime_error("cannot write the checkpoint " + tmp + " (" +
                               e.what_without_backtrace() +
                               "): make --out-dir / --checkpoint a writable file path");
    }
    fsyncPath(tmp);
    // Atomic: a reader (or a --resume after a kill) sees the old or the new file.
    if (::rename(tmp.c_str(), target.c_str()) != 0)
      throw std::runtime_error("cannot rename the checkpoint " + tmp + " to " + target + ": " +
                               std::strerror(errno));
    const std::string dir = fs::path(target).parent_path().string();
    fsyncPath(dir.empty() ? "." : dir);
  }

  /// LibTorch's errors (a truncated or foreign file) become one line naming
  /// the file and the fix.
  void load(const std::string &path) {
    if (!fs::exists(path))
      throw std::runtime_error("--resume " + path + ": no such checkpoint");
    try {
      // LibTorch's zip reader does not check CRCs: refuse damaged records
      // before their bytes become weights.
      models::checkPyTorchArchive(path);
    } catch (const std::runtime_error &e) {
      throw std::runtime_error("--resume " + path + " is not an intact checkpoint: " + e.what() +
                               "; resume from an intact checkpoint or start afresh without "
                               "--resume");
    }
    try {
      loadArchive(path);
    } catch (const c10::Error &e) {
      throw std::runtime_error(
          "--resume " + path + " cannot be read as a slak-train checkpoint (" +
          firstSentence(e.what_without_backtrace()) +
          "): the file is truncated, corrupt or not a checkpoint; resume from an intact "
          "checkpoint (slak-train writes checkpoint.pt whole or not at all) or start afresh "
          "without --resume" +
          (runtime::debugLogging() ? std::string("\n") + e.what() : std::string()));
    }
  }

  void loadArchive(const std::string &path) {
    torch::serialize::InputArchive root;
    root.load_from(path, device);
    torch::serialize::InputArchive meta;
    root.read("meta", meta);
    torch::Tensor format, savedStep, lossSum, seconds, correct, seen;
    meta.read("format", format);
    if (format.item<int64_t>() != kCheckpointFormat)
      throw std::runtime_error(path + ": checkpoint format " +
                               std::to_string(format.item<int64_t>()) + ", expected " +
                               std::to_string(kCheckpointFormat));
    c10::IValue savedConfig;
    meta.read("config", savedConfig);
    const std::string saved = models::upgradeCheckpointConfig(savedConfig.toStringRef());
    const std::string current = configJson(config).dump();
    if (saved != current)
      throw std::runtime_error(path + " was written for model " + saved + ", but this run builds " +
                               current + ": resume with the same --model and overrides");
    torch::Tensor savedWorld;
    const int64_t writtenBy =
        meta.try_read("world_size", savedWorld) ? savedWorld.item<int64_t>() : 1;
    if (writtenBy != group->size())
      throw std::runtime_error(
          path + " was written by a run of " + std::to_string(writtenBy) +
          " rank(s), this run has " + std::to_string(group->size()) + ": resume with " +
          (writtenBy == 1 ? std::string("one process (no --nproc)")
                          : "--nproc " + std::to_string(writtenBy)) +
          " so that the data shards and random streams continue where they stopped");
    meta.read("step", savedStep);
    meta.read("epoch_loss_sum", lossSum);
    meta.read("epoch_train_seconds", seconds);
    meta.read("epoch_correct", correct);
    meta.read("epoch_seen", seen);

    torch::serialize::InputArchive modelArchive;
    root.read("model", modelArchive);
    model->load(modelArchive);
    if (ema) {
      torch::serialize::InputArchive emaArchive;
      if (!root.try_read("ema", emaArchive))
        throw std::runtime_error(path + " has no EMA weights: resume with --ema-decay 0");
      ema->load(emaArchive);
    }
    torch::serialize::InputArchive optArchive;
    root.read("optimizer", optArchive);
    loadOptimizer(optArchive);
    if (masking) {
      torch::serialize::InputArchive maskArchive;
      if (!root.try_read("masks", maskArchive))
        throw std::runtime_error(path + " is a dense checkpoint: resume with --sparsity 0");
      masking->load(maskArchive);
      models::pushMasksToLargeKernels(*model, masking->maskMap());
      if (ema)
        models::pushMasksToLargeKernels(*ema, masking->maskMap());
    }
    torch::serialize::InputArchive rng;
    root.read("rng", rng);
    torch::Tensor cpuState;
    rng.read(group->rank() == 0 ? std::string("cpu") : "cpu_rank" + std::to_string(group->rank()),
             cpuState);
    {
      auto gen = at::detail::getDefaultCPUGenerator();
      std::lock_guard<std::mutex> lock(gen.mutex());
      gen.set_state(cpuState.cpu());
    }
    torch::Tensor cudaState;
    if (device.is_cuda() &&
        rng.try_read(group->rank() == 0 ? std::string("cuda")
                                        : "cuda_rank" + std::to_string(group->rank()),
                     cudaState)) {
      auto gen = at::globalContext().defaultGenerator(device);
      std::lock_guard<std::mutex> lock(gen.mutex());
      gen.set_state(cudaState.cpu());
    }

    step = savedStep.item<int64_t>();
    epochLossSum = lossSum.item<double>();
    epochTrainSeconds = seconds.item<double>();
    epochCorrect = correct.item<int64_t>();
    epochSeen = seen.item<int64_t>();
  }
};

namespace {

data::Dataset limit(data::Dataset d, int64_t n) {
  if (n > 0 && n < d.size()) {
    d.images = d.images.slice(0, 0, n);
    d.labels = d.labels.slice(0, 0, n);
  }
  return d;
}

/// A permutation of the training set fixed by (seed, epoch): resuming mid-epoch
/// recomputes it instead of storing it.
torch::Tensor epochOrder(int64_t n, uint64_t seed, int64_t epoch) {
  auto gen = at::detail::createCPUGenerator(seed * 1000003ULL + static_cast<uint64_t>(epoch) + 17);
  return torch::randperm(n, gen, torch::kLong);
}

} // namespace

Trainer::Trainer(TrainOptions options) : s_(std::make_unique<State>()) {
  auto &s = *s_;
  s.options = std::move(options);
  const auto &o = s.options;
  if (o.threads > 0)
    at::set_num_threads(o.threads);
  s.device = torch::Device(o.device);
  if (s.device.is_cuda() && !torch::cuda::is_available())
    throw std::runtime_error("--device " + o.device + ": no CUDA device is available");
  // One GPU per local rank unless the device names one.
  if (s.device.is_cuda() && !s.device.has_index() && o.distributed.enabled())
    s.device = torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(o.distributed.localRank));
  s.group = std::make_unique<ProcessGroup>(o.distributed, s.device);
  const int64_t ranks = s.group->size();

  // Outputs, locked before anything slow: a second trainer on the same
  // directory is refused at once. --print-params and --eval-only never get here.
  s.logPath = o.logPath.empty() ? (fs::path(o.outDir) / "log.jsonl").string() : o.logPath;
  s.checkpointPath =
      o.checkpointPath.empty() ? (fs::path(o.outDir) / "checkpoint.pt").string() : o.checkpointPath;
  if (s.root()) {
    std::vector<std::string> dirs;
    for (const std::string &file : {s.checkpointPath, s.logPath}) {
      std::string dir = fs::path(file).parent_path().string();
      if (dir.empty())
        dir = ".";
      if (std::find(dirs.begin(), dirs.end(), dir) == dirs.end())
        dirs.push_back(dir);
    }
    for (const std::string &dir : dirs)
      s.locks.push_back(std::make_unique<OutputDirectoryLock>(dir));
  }
  if (o.batchSize <= 0 || o.accumSteps <= 0 || o.epochs <= 0)
    throw std::invalid_argument("--batch-size, --accum-steps and --epochs must be positive");

  // Data.
  if (o.dataset == "fashion-mnist") {
    s.train = limit(data::loadFashionMnist(o.dataDir, true), o.trainLimit);
    s.test = limit(data::loadFashionMnist(o.dataDir, false), o.testLimit);
  } else if (o.dataset == "synthetic") {
    auto synth = o.synthetic;
    s.train = data::makeSynthetic(synth, 0);
    synth.size = o.syntheticTestSize;
    s.test = data::makeSynthetic(synth, 1);
  } else {
    throw std::invalid_argument("unknown dataset '" + o.dataset +
                                "': expected fashion-mnist or synthetic");
  }

  // Model (input channels and classes follow the data unless overridden).
  auto overrides = o.overrides;
  if (!overrides.inChannels)
    overrides.inChannels = s.train.channels();
  if (!overrides.numClasses)
    overrides.numClasses = s.train.numClasses;
  s.config = models::modelConfig(o.model, overrides);
  torch::manual_seed(o.seed);
  s.model = models::createModel(s.config);
  s.model->to(s.device);
  if (o.emaDecay > 0) {
    s.ema = models::createModel(s.config);
    s.ema->to(s.device);
    s.ema->eval();
  }

  // Schedule: an optimizer step takes batchSize x accumSteps images per rank.
  int64_t batchesPerEpoch = s.train.size() / (o.batchSize * ranks);
  s.stepsPerEpoch = batchesPerEpoch / o.accumSteps;
  if (s.stepsPerEpoch == 0)
    throw std::invalid_argument("the training set has " + std::to_string(s.train.size()) +
                                " images, fewer than one optimizer step of --batch-size " +
                                std::to_string(o.batchSize) + " x --accum-steps " +
                                std::to_string(o.accumSteps) + " x " + std::to_string(ranks) +
                                " rank(s)");
  s.totalSteps = o.epochs * s.stepsPerEpoch;
  s.warmupSteps = o.warmupSteps >= 0
                      ? o.warmupSteps
                      : static_cast<int64_t>(std::llround(o.warmupEpochs * s.stepsPerEpoch));

  // AdamW; no weight decay on rank <= 1 parameters (norms, biases, gamma).
  std::vector<torch::Tensor> decay, noDecay;
  for (auto &p : s.model->parameters())
    (p.dim() <= 1 ? noDecay : decay).push_back(p);
  std::vector<torch::optim::OptimizerParamGroup> groups;
  groups.emplace_back(decay, std::make_unique<torch::optim::AdamWOptions>(
                                 torch::optim::AdamWOptions(o.lr).weight_decay(o.weightDecay)));
  groups.emplace_back(noDecay, std::make_unique<torch::optim::AdamWOptions>(
                                   torch::optim::AdamWOptions(o.lr).weight_decay(0.0)));
  s.optimizer = std::make_unique<torch::optim::AdamW>(
      std::move(groups), torch::optim::AdamWOptions(o.lr).weight_decay(o.weightDecay));
  // Gradients of every parameter plus the step's loss and correct counts.
  s.bucket = std::make_unique<GradientBucket>(s.model->parameters(), 2);
  // Every rank starts from rank 0's weights (equal anyway: same seed).
  if (s.distributed())
    s.broadcastModel(*s.model);

  // Sparsity.
  if (s.config.sparsity > 0) {
    auto sparseOptions = o.sparse;
    sparseOptions.sparsity = s.config.sparsity;
    sparseOptions.totalSteps = s.totalSteps;
    sparseOptions.seed = o.seed;
    s.masking = std::make_unique<sparse::Masking>(*s.model, sparseOptions);
  }

  if (!o.resume.empty()) {
    s.load(o.resume);
    s.checkMasks("after loading " + o.resume);
    s.log({{"event", "resume"}, {"step", s.step}, {"checkpoint", o.resume}});
    return;
  }
  if (s.masking) {
    // SNIP scores one global batch drawn from the data with its own order
    // (every rank scores the same images, so one and many ranks agree).
    auto order = epochOrder(s.train.size(), o.seed, -1)
                     .slice(0, 0, std::min(s.train.size(), o.batchSize * ranks));
    auto batch = data::gather(s.train, order);
    auto x = batch.images.to(s.device), y = batch.labels.to(s.device);
    s.masking->initialize(
        [&] { return torch::nn::functional::cross_entropy(s.model->forward(x), y); });
    if (s.distributed()) {
      s.masking->synchronize([&](torch::Tensor &t) { s.group->broadcast(t); });
      s.checkMasks("after the mask initialisation");
    }
    models::pushMasksToLargeKernels(*s.model, s.masking->maskMap());
    s.logMasks("mask_init", 0, 0, nullptr);
  }
  // Drop path draws from LibTorch's default generator: a stream per rank.
  if (s.distributed())
    torch::manual_seed(o.seed + 0x9E3779B97F4A7C15ULL * static_cast<uint64_t>(s.group->rank()));
  if (s.ema) {
    torch::NoGradGuard noGrad;
    auto source = s.model->named_parameters();
    for (auto &p : s.ema->named_parameters())
      p.value().copy_(source[p.key()]);
    auto sourceBuffers = s.model->named_buffers();
    for (auto &b : s.ema->named_buffers())
      b.value().copy_(sourceBuffers[b.key()]);
    if (s.masking)
      models::pushMasksToLargeKernels(*s.ema, s.masking->maskMap());
  }
  s.log(
      {{"event", "start"},
       {"model", configJson(s.config)},
       {"layer_scale_init", s.config.layerScale},
       {"large_kernel_backend", models::largeKernelLayers(*s.model).empty()
                                    ? "none"
                                    : models::largeKernelLayers(*s.model)[0].second->backendName()},
       {"train_images", s.train.size()},
       {"test_images", s.test.size()},
       {"steps_per_epoch", s.stepsPerEpoch},
       {"epochs", o.epochs},
       {"batch_size", o.batchSize},
       {"accum_steps", o.accumSteps},
       {"lr", o.lr},
       {"warmup_steps", s.warmupSteps},
       {"weight_decay", o.weightDecay},
       {"label_smoothing", o.labelSmoothing},
       {"ema_decay", o.emaDecay},
       {"threads", at::get_num_threads()},
       {"ranks", ranks},
       {"process_group", s.group->backendName()},
       {"global_batch", o.batchSize * o.accumSteps * ranks},
       {"seed", o.seed}});
}

Trainer::~Trainer() = default;

models::Classifier &Trainer::model() { return *s_->model; }
models::Classifier *Trainer::ema() { return s_->ema.get(); }
sparse::Masking *Trainer::masking() { return s_->masking.get(); }
int64_t Trainer::step() const { return s_->step; }
int64_t Trainer::stepsPerEpoch() const { return s_->stepsPerEpoch; }
ProcessGroup &Trainer::processGroup() { return *s_->group; }
void Trainer::saveCheckpoint(const std::string &path) { s_->save(path); }

TrainResult Trainer::run() {
  auto &s = *s_;
  const auto &o = s.options;
  TrainResult result;
  auto lossOptions =
      torch::nn::functional::CrossEntropyFuncOptions().label_smoothing(o.labelSmoothing);
  const int64_t ranks = s.group->size(), rank = s.group->rank();
  const int64_t imagesPerStep = o.batchSize * o.accumSteps * ranks;
  result.rank = static_cast<int>(rank);
  result.worldSize = static_cast<int>(ranks);

  // The test split through the model (and the EMA): into the result and the
  // epoch's log record.
  auto testEvaluation = [&](int64_t epoch, json &record) {
    auto t0 = Clock::now();
    s.syncBuffers(*s.model);
    auto e = evaluate(*s.model, s.test, o.evalBatchSize, s.device.str(), s.group.get());
    result.testLoss = e.loss;
    result.testAccuracy = e.accuracy;
    record["test_loss"] = e.loss;
    record["test_acc"] = e.accuracy;
    if (s.ema) {
      s.syncBuffers(*s.ema);
      auto ee = evaluate(*s.ema, s.test, o.evalBatchSize, s.device.str(), s.group.get());
      result.testAccuracyEma = ee.accuracy;
      record["test_loss_ema"] = ee.loss;
      record["test_acc_ema"] = ee.accuracy;
    }
    record["eval_seconds"] = secondsSince(t0);
    if (o.progress && s.root()) {
      std::cerr << "epoch " << epoch + 1 << ": test acc " << 100.0 * e.accuracy << "%";
      if (s.ema)
        std::cerr << " (EMA " << 100.0 * result.testAccuracyEma << "%)";
      std::cerr << ", test loss " << e.loss << "\n";
    }
  };
  bool epochEnded = false;

  while (s.step < s.totalSteps) {
    const int64_t epoch = s.step / s.stepsPerEpoch;
    const int64_t firstStep = s.step % s.stepsPerEpoch;
    if (firstStep == 0) {
      s.epochLossSum = s.epochTrainSeconds = 0;
      s.epochCorrect = s.epochSeen = 0;
    }
    auto order = epochOrder(s.train.size(), o.seed, epoch);
    ProgressBar bar(o.progress && s.root(), epoch, o.epochs, s.stepsPerEpoch);
    s.model->train();

    for (int64_t i = firstStep; i < s.stepsPerEpoch; ++i) {
      auto t0 = Clock::now();
      const double lr = s.learningRate(s.step);
      for (auto &group : s.optimizer->param_groups())
        static_cast<torch::optim::AdamWOptions &>(group.options()).lr(lr);
      // Gradient regrowth ranks dead weights by their gradients: the runtime
      // computes them only for the step that ends in a mask update.
      const bool denseGrads = s.masking && o.sparse.growth == sparse::Growth::Gradient &&
                              s.masking->isUpdateStep(s.step + 1);
      if (denseGrads)
        s.setDenseWeightGrads(true);
      double stepLoss = 0, stepCorrect = 0;
      for (int64_t a = 0; a < o.accumSteps; ++a) {
        // Global micro-batch g is order[g*B*ranks, (g+1)*B*ranks); rank r
        // takes its r-th slice of B, so one process with batch B*ranks sees
        // the same images per step.
        int64_t start = ((i * o.accumSteps + a) * ranks + rank) * o.batchSize;
        auto batch = data::gather(s.train, order.slice(0, start, start + o.batchSize));
        auto x = batch.images.to(s.device), y = batch.labels.to(s.device);
        auto logits = s.model->forward(x);
        auto loss = torch::nn::functional::cross_entropy(logits, y, lossOptions);
        (loss / static_cast<double>(o.accumSteps)).backward();
        stepLoss += loss.item<double>() * o.batchSize;
        stepCorrect += static_cast<double>(logits.argmax(1).eq(y).sum().item<int64_t>());
      }
      // Average the gradients over the ranks (one flat allreduce) and sum the
      // step's metrics in the same message.
      auto sums = s.bucket->allreduce(*s.group, {stepLoss, stepCorrect});
      s.epochLossSum += sums[0];
      s.epochCorrect += std::llround(sums[1]);
      s.epochSeen += o.batchSize * o.accumSteps * ranks;
      s.optimizer->step();
      if (s.masking)
        s.masking->applyToWeights();
      ++s.step;
      if (s.masking && s.masking->isUpdateStep(s.step)) {
        auto report = s.masking->update(s.step, s.optimizer.get());
        s.checkMasks("after the mask update at step " + std::to_string(s.step));
        models::pushMasksToLargeKernels(*s.model, s.masking->maskMap());
        if (s.ema)
          models::pushMasksToLargeKernels(*s.ema, s.masking->maskMap());
        s.logMasks("mask_update", s.step, report.pruneRate, &report.layers);
      }
      if (denseGrads)
        s.setDenseWeightGrads(false);
      if (s.ema)
        s.updateEma();
      s.optimizer->zero_grad();
      s.epochTrainSeconds += secondsSince(t0);

      const int64_t done = i + 1;
      const double ips = s.epochSeen / std::max(s.epochTrainSeconds, 1e-9);
      bar.update(done, s.epochLossSum / s.epochSeen,
                 static_cast<double>(s.epochCorrect) / s.epochSeen, ips,
                 (s.stepsPerEpoch - done) * imagesPerStep / std::max(ips, 1e-9));
      result.trainSeconds += secondsSince(t0);

      const bool epochEnd = done == s.stepsPerEpoch;
      if (!epochEnd && o.checkpointEvery > 0 && s.step % o.checkpointEvery == 0)
        s.save(s.checkpointPath);
      if (!epochEnd && o.maxSteps >= 0 && s.step >= o.maxSteps) {
        s.save(s.checkpointPath);
        result.stoppedEarly = true;
        break;
      }
    }
    if (result.stoppedEarly)
      break;

    // Epoch end: evaluate, log, checkpoint.
    result.trainLoss = s.epochLossSum / s.epochSeen;
    result.trainAccuracy = static_cast<double>(s.epochCorrect) / s.epochSeen;
    result.imagesPerSecond = s.epochSeen / std::max(s.epochTrainSeconds, 1e-9);
    json record{{"event", "epoch"},
                {"epoch", epoch + 1},
                {"step", s.step},
                {"lr", s.learningRate(s.step - 1)},
                {"train_loss", result.trainLoss},
                {"train_acc", result.trainAccuracy},
                {"images_per_s", result.imagesPerSecond},
                {"train_seconds", s.epochTrainSeconds}};
    s.checkParameters("at the end of epoch " + std::to_string(epoch + 1));
    if (o.evalEachEpoch || s.step == s.totalSteps)
      testEvaluation(epoch, record);
    if (s.masking)
      record["density"] = s.masking->overallDensity();
    s.log(record);
    epochEnded = true;
    s.save(s.checkpointPath);
    if (o.maxSteps >= 0 && s.step >= o.maxSteps && s.step < s.totalSteps) {
      result.stoppedEarly = true;
      break;
    }
  }
  // Resumed from the final checkpoint of a run killed after writing it:
  // nothing is left to train, so report the last epoch as the run did (its
  // running sums are in the checkpoint, the evaluation is deterministic).
  if (!epochEnded && !result.stoppedEarly && s.step >= s.totalSteps && s.epochSeen > 0) {
    result.trainLoss = s.epochLossSum / s.epochSeen;
    result.trainAccuracy = static_cast<double>(s.epochCorrect) / s.epochSeen;
    result.imagesPerSecond = s.epochSeen / std::max(s.epochTrainSeconds, 1e-9);
    json unused;
    testEvaluation(s.step / s.stepsPerEpoch - 1, unused);
  }
  result.steps = s.step;
  result.epochsCompleted = s.step / s.stepsPerEpoch;
  result.density = s.masking ? s.masking->overallDensity() : 1.0;
  return result;
}

// ------------------------------------------------------------ parameter report

ParameterReport parameterReport(const std::string &model, const models::ModelOverrides &overrides,
                                const sparse::Options &sparseOptions, uint64_t seed) {
  torch::manual_seed(seed);
  ParameterReport report;
  report.config = models::modelConfig(model, overrides);
  auto net = models::createModel(report.config);
  for (const auto &p : net->parameters())
    if (p.dim() == 2 || p.dim() == 4)
      report.maskable += p.numel();
  int64_t dead = 0;
  if (report.config.sparsity > 0) {
    auto o = sparseOptions;
    o.sparsity = report.config.sparsity;
    o.seed = seed;
    sparse::Masking masking(*net, o);
    const auto &c = report.config;
    auto x = torch::randn({2, c.inChannels, c.imageSize, c.imageSize});
    auto y = torch::randint(c.numClasses, {2}, torch::kLong);
    masking.initialize([&] { return torch::nn::functional::cross_entropy(net->forward(x), y); });
    report.maskedLayers = static_cast<int64_t>(masking.layers().size());
    int64_t candidates = 0;
    for (const auto &p : net->parameters())
      candidates += (p.dim() == 2 || p.dim() == 4) ? 1 : 0;
    report.denseLayers = candidates - report.maskedLayers;
    for (const auto &l : masking.layers())
      dead += l.weight.numel() - l.live;
  }
  report.total = models::countParameters(*net).total;
  report.nonZero = report.total - dead;
  return report;
}

} // namespace slak::train

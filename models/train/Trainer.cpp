#include "models/train/Trainer.h"

#include "autotune/Progress.h"
#include "models/checkpoint/ConfigJson.h"
#include "models/checkpoint/TrainingCheckpoint.h"
#include "models/train/Ema.h"
#include "models/train/FusedAdamW.h"
#include "models/train/OutputDirectoryLock.h"

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
#include <stdexcept>

namespace slak::train {

namespace fs = std::filesystem;
using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

namespace {

double secondsSince(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

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
  std::shared_ptr<models::Classifier> model;
  std::unique_ptr<Ema> ema;
  std::unique_ptr<torch::optim::AdamW> optimizer;
  std::unique_ptr<sparse::Masking> masking;
  std::unique_ptr<ProcessGroup> group; // a one-rank group when not distributed
  std::unique_ptr<GradientBucket> bucket;
  torch::Device device{torch::kCPU};
  int64_t step = 0;
  int64_t stepsPerEpoch = 0, totalSteps = 0, warmupSteps = 0;
  // Running sums of the current epoch (kept in checkpoints for exact logs).
  checkpoint::EpochSums epoch;
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

  /// The epoch's training figures so far, into `result`.
  void epochResult(TrainResult &result) const {
    result.trainLoss = epoch.lossSum / epoch.seen;
    result.trainAccuracy = static_cast<double>(epoch.correct) / epoch.seen;
    result.imagesPerSecond = epoch.seen / std::max(epoch.trainSeconds, 1e-9);
  }

  /// "loss 0.1234 acc 55.0% 812.3 img/s": the epoch so far, for the progress bar.
  std::string epochFigures() const {
    TrainResult r;
    epochResult(r);
    char text[96];
    std::snprintf(text, sizeof text, "loss %.4f acc %.1f%% %.1f img/s", r.trainLoss,
                  100.0 * r.trainAccuracy, r.imagesPerSecond);
    return text;
  }

  // ------------------------------------------------- construction steps

  /// Threads, the device (one GPU per local rank) and the process group.
  void selectDevice() {
    const auto &o = options;
    if (o.threads > 0)
      at::set_num_threads(o.threads);
    device = torch::Device(o.device);
    if (device.is_cuda() && !torch::cuda::is_available())
      throw std::runtime_error("--device " + o.device + ": no CUDA device is available");
    if (device.is_cuda() && !device.has_index() && o.distributed.enabled())
      device = torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(o.distributed.localRank));
    group = std::make_unique<ProcessGroup>(o.distributed, device);
  }

  /// The log and checkpoint paths, their folders locked before anything
  /// slow: a second trainer on the same folder is refused at once.
  void lockOutputs() {
    const auto &o = options;
    logPath = o.logPath.empty() ? (fs::path(o.outDir) / "log.jsonl").string() : o.logPath;
    checkpointPath = o.checkpointPath.empty() ? (fs::path(o.outDir) / "checkpoint.pt").string()
                                              : o.checkpointPath;
    if (!root())
      return;
    std::vector<std::string> dirs;
    for (const std::string &file : {checkpointPath, logPath}) {
      std::string dir = fs::path(file).parent_path().string();
      if (dir.empty())
        dir = ".";
      if (std::find(dirs.begin(), dirs.end(), dir) == dirs.end())
        dirs.push_back(dir);
    }
    for (const std::string &dir : dirs)
      locks.push_back(std::make_unique<OutputDirectoryLock>(dir));
  }

  void loadData() {
    const auto &o = options;
    if (o.batchSize <= 0 || o.accumSteps <= 0 || o.epochs <= 0)
      throw std::invalid_argument("--batch-size, --accum-steps and --epochs must be positive");
    if (o.dataset == "fashion-mnist") {
      train = limit(data::loadFashionMnist(o.dataDir, true), o.trainLimit);
      test = limit(data::loadFashionMnist(o.dataDir, false), o.testLimit);
    } else if (o.dataset == "synthetic") {
      auto synth = o.synthetic;
      train = data::makeSynthetic(synth, 0);
      synth.size = o.syntheticTestSize;
      test = data::makeSynthetic(synth, 1);
    } else {
      throw std::invalid_argument("unknown dataset '" + o.dataset +
                                  "': expected fashion-mnist or synthetic");
    }
  }

  /// The model (input channels and classes follow the data unless
  /// overridden) and its EMA; every rank starts from the same weights.
  void buildModels() {
    const auto &o = options;
    auto overrides = o.overrides;
    if (!overrides.inChannels)
      overrides.inChannels = train.channels();
    if (!overrides.numClasses)
      overrides.numClasses = train.numClasses;
    config = models::modelConfig(o.model, overrides);
    torch::manual_seed(o.seed);
    model = models::createModel(config);
    model->to(device);
    if (o.emaDecay > 0)
      ema = std::make_unique<Ema>(config, device, o.emaDecay);
  }

  /// Steps per epoch (an optimizer step takes batchSize x accumSteps images
  /// per rank), total and warmup steps.
  void planSchedule() {
    const auto &o = options;
    const int64_t ranks = group->size();
    stepsPerEpoch = train.size() / (o.batchSize * ranks) / o.accumSteps;
    if (stepsPerEpoch == 0)
      throw std::invalid_argument("the training set has " + std::to_string(train.size()) +
                                  " images, fewer than one optimizer step of --batch-size " +
                                  std::to_string(o.batchSize) + " x --accum-steps " +
                                  std::to_string(o.accumSteps) + " x " + std::to_string(ranks) +
                                  " rank(s)");
    totalSteps = o.epochs * stepsPerEpoch;
    warmupSteps = o.warmupSteps >= 0
                      ? o.warmupSteps
                      : static_cast<int64_t>(std::llround(o.warmupEpochs * stepsPerEpoch));
  }

  /// AdamW without weight decay on rank <= 1 parameters (norms, biases,
  /// gamma), and the gradient bucket of the allreduce.
  void buildOptimizer() {
    const auto &o = options;
    std::vector<torch::Tensor> decay, noDecay;
    for (auto &p : model->parameters())
      (p.dim() <= 1 ? noDecay : decay).push_back(p);
    std::vector<torch::optim::OptimizerParamGroup> groups;
    groups.emplace_back(decay, std::make_unique<torch::optim::AdamWOptions>(
                                   torch::optim::AdamWOptions(o.lr).weight_decay(o.weightDecay)));
    groups.emplace_back(noDecay, std::make_unique<torch::optim::AdamWOptions>(
                                     torch::optim::AdamWOptions(o.lr).weight_decay(0.0)));
    optimizer = std::make_unique<FusedAdamW>(
        std::move(groups), torch::optim::AdamWOptions(o.lr).weight_decay(o.weightDecay));
    // Gradients of every parameter plus the step's loss and correct counts.
    bucket = std::make_unique<GradientBucket>(model->parameters(), 2);
    // Every rank starts from rank 0's weights (equal anyway: same seed).
    if (distributed())
      broadcastModel(*model);
  }

  /// The Masking of a sparse model (no masks drawn yet).
  void buildMasking() {
    if (config.sparsity <= 0)
      return;
    auto sparseOptions = options.sparse;
    sparseOptions.sparsity = config.sparsity;
    sparseOptions.totalSteps = totalSteps;
    sparseOptions.seed = options.seed;
    masking = std::make_unique<sparse::Masking>(*model, sparseOptions);
  }

  /// The first masks. SNIP scores one global batch drawn from the data with
  /// its own order (every rank scores the same images, so one and many
  /// ranks agree).
  void initializeMasks() {
    if (!masking)
      return;
    const auto &o = options;
    auto order = epochOrder(train.size(), o.seed, -1)
                     .slice(0, 0, std::min(train.size(), o.batchSize * group->size()));
    auto batch = data::gather(train, order);
    auto x = batch.images.to(device), y = batch.labels.to(device);
    masking->initialize([&] { return torch::nn::functional::cross_entropy(model->forward(x), y); });
    if (distributed()) {
      masking->synchronize([&](torch::Tensor &t) { group->broadcast(t); });
      checkMasks("after the mask initialisation");
    }
    models::pushMasksToLargeKernels(*model, masking->maskMap());
    logMasks("mask_init", 0, 0, nullptr);
  }

  /// Drop path draws from LibTorch's default generator: a stream per rank.
  void seedDropPath() {
    if (distributed())
      torch::manual_seed(options.seed +
                         0x9E3779B97F4A7C15ULL * static_cast<uint64_t>(group->rank()));
  }

  /// The log's `start` record: the model, the data and the recipe.
  void logStart() {
    const auto &o = options;
    const int64_t ranks = group->size();
    log({{"event", "start"},
         {"model", json::parse(checkpoint::configJson(config))},
         {"layer_scale_init", config.layerScale},
         {"large_kernel_backend", models::largeKernelLayers(*model).empty()
                                      ? "none"
                                      : models::largeKernelLayers(*model)[0].second->backendName()},
         {"train_images", train.size()},
         {"test_images", test.size()},
         {"steps_per_epoch", stepsPerEpoch},
         {"epochs", o.epochs},
         {"batch_size", o.batchSize},
         {"accum_steps", o.accumSteps},
         {"lr", o.lr},
         {"warmup_steps", warmupSteps},
         {"weight_decay", o.weightDecay},
         {"label_smoothing", o.labelSmoothing},
         {"ema_decay", o.emaDecay},
         {"threads", at::get_num_threads()},
         {"ranks", ranks},
         {"process_group", group->backendName()},
         {"global_batch", o.batchSize * o.accumSteps * ranks},
         {"seed", o.seed}});
  }

  // ----------------------------------------------------------- checkpoints

  /// A collective in distributed runs: buffers are synchronised and the
  /// ranks' generator states gathered; rank 0 writes `path` (with
  /// checkpointAllRanks every rank r > 0 also writes path.rank<r>).
  void save(const std::string &path) {
    syncBuffers(*model);
    if (ema)
      syncBuffers(ema->model());
    checkpoint::Snapshot snapshot;
    snapshot.cpuGenerators = group->allgather(at::detail::getDefaultCPUGenerator().get_state());
    if (device.is_cuda())
      snapshot.cudaGenerators =
          group->allgather(at::globalContext().defaultGenerator(device).get_state());
    std::string target = path;
    if (!root()) {
      if (!options.checkpointAllRanks)
        return;
      target = path + ".rank" + std::to_string(group->rank());
    }
    snapshot.model = model.get();
    snapshot.ema = ema ? &ema->model() : nullptr;
    snapshot.optimizer = optimizer.get();
    snapshot.masking = masking.get();
    snapshot.meta.step = step;
    snapshot.meta.worldSize = group->size();
    snapshot.meta.epoch = epoch;
    snapshot.meta.config = checkpoint::configJson(config);
    checkpoint::write(target, snapshot);
  }

  /// Continues the run that wrote `path`: the same model, ranks and
  /// sparsity, or a refusal naming the flag that differs.
  void resume(const std::string &path) {
    checkpoint::TrainingCheckpoint file(path, checkpoint::Reader::Resume);
    const checkpoint::Meta &meta = file.meta();
    const std::string current = checkpoint::configJson(config);
    if (meta.config != current)
      file.refuse("was written for model " + meta.config + ", but this run builds " + current +
                  ": resume with the same --model and overrides");
    if (meta.worldSize != group->size())
      file.refuse("was written by a run of " + std::to_string(meta.worldSize) +
                  " rank(s), this run has " + std::to_string(group->size()) + ": resume with " +
                  (meta.worldSize == 1 ? std::string("one process (no --nproc)")
                                       : "--nproc " + std::to_string(meta.worldSize)) +
                  " so that the data shards and random streams continue where they stopped");
    file.readWeights(*model, /*ema=*/false);
    if (ema) {
      if (!file.hasEma())
        file.refuse("has no EMA weights: resume with --ema-decay 0");
      file.readWeights(ema->model(), /*ema=*/true);
    }
    file.readOptimizer(*model, *optimizer, device);
    if (masking) {
      if (!file.hasMasks())
        file.refuse("is a dense checkpoint: resume with --sparsity 0");
      auto masks = file.readMasks(*model);
      masking->restore(masks.layers, masks.generator);
      models::pushMasksToLargeKernels(*model, masking->maskMap());
      if (ema)
        models::pushMasksToLargeKernels(ema->model(), masking->maskMap());
    }
    restoreGenerator(at::detail::getDefaultCPUGenerator(), file.cpuGenerator(group->rank()));
    if (device.is_cuda())
      restoreGenerator(at::globalContext().defaultGenerator(device),
                       file.cudaGenerator(group->rank()));
    step = meta.step;
    epoch = meta.epoch;
    checkMasks("after loading " + path);
    log({{"event", "resume"}, {"step", step}, {"checkpoint", path}});
  }

  static void restoreGenerator(at::Generator generator, const torch::Tensor &state) {
    if (!state.defined())
      return;
    std::lock_guard<std::mutex> lock(generator.mutex());
    generator.set_state(state.cpu());
  }
};

Trainer::Trainer(TrainOptions options) : s_(std::make_unique<State>()) {
  auto &s = *s_;
  s.options = std::move(options);
  s.selectDevice();
  s.lockOutputs();
  s.loadData();
  s.buildModels();
  s.planSchedule();
  s.buildOptimizer();
  s.buildMasking();
  if (!s.options.resume.empty()) {
    s.resume(s.options.resume);
    return;
  }
  s.initializeMasks();
  s.seedDropPath();
  if (s.ema)
    s.ema->start(*s.model, s.masking.get());
  s.logStart();
}

Trainer::~Trainer() = default;

models::Classifier &Trainer::model() { return *s_->model; }
models::Classifier *Trainer::ema() { return s_->ema ? &s_->ema->model() : nullptr; }
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
      s.syncBuffers(s.ema->model());
      auto ee = evaluate(s.ema->model(), s.test, o.evalBatchSize, s.device.str(), s.group.get());
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
    if (firstStep == 0)
      s.epoch = {};
    auto order = epochOrder(s.train.size(), o.seed, epoch);
    // This process runs steps [firstStep, lastStep) of the epoch (--max-steps may end it early).
    int64_t lastStep = s.stepsPerEpoch;
    if (o.maxSteps >= 0)
      lastStep = std::clamp(o.maxSteps - epoch * s.stepsPerEpoch, firstStep + 1, lastStep);
    autotune::ProgressBar bar(o.progress && s.root() ? &std::cerr : nullptr,
                              "epoch " + std::to_string(epoch + 1) + "/" +
                                  std::to_string(o.epochs) +
                                  (firstStep > 0 ? " from step " + std::to_string(firstStep) : ""),
                              static_cast<size_t>(lastStep - firstStep));
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
      s.epoch.lossSum += sums[0];
      s.epoch.correct += std::llround(sums[1]);
      s.epoch.seen += o.batchSize * o.accumSteps * ranks;
      s.optimizer->step();
      if (s.masking)
        s.masking->applyToWeights();
      ++s.step;
      if (s.masking && s.masking->isUpdateStep(s.step)) {
        auto report = s.masking->update(s.step, s.optimizer.get());
        s.checkMasks("after the mask update at step " + std::to_string(s.step));
        models::pushMasksToLargeKernels(*s.model, s.masking->maskMap());
        if (s.ema)
          models::pushMasksToLargeKernels(s.ema->model(), s.masking->maskMap());
        s.logMasks("mask_update", s.step, report.pruneRate, &report.layers);
      }
      if (denseGrads)
        s.setDenseWeightGrads(false);
      if (s.ema)
        s.ema->update(*s.model, s.masking.get());
      s.optimizer->zero_grad();
      s.epoch.trainSeconds += secondsSince(t0);

      const int64_t done = i + 1;
      bar.update(static_cast<size_t>(done - firstStep), s.epochFigures());
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
    bar.finish();
    if (o.progress && s.root())
      std::cerr << "epoch " << epoch + 1 << ": " << s.epochFigures() << "\n";
    if (result.stoppedEarly)
      break;

    // Epoch end: evaluate, log, checkpoint.
    s.epochResult(result);
    json record{{"event", "epoch"},
                {"epoch", epoch + 1},
                {"step", s.step},
                {"lr", s.learningRate(s.step - 1)},
                {"train_loss", result.trainLoss},
                {"train_acc", result.trainAccuracy},
                {"images_per_s", result.imagesPerSecond},
                {"train_seconds", s.epoch.trainSeconds}};
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
  if (!epochEnded && !result.stoppedEarly && s.step >= s.totalSteps && s.epoch.seen > 0) {
    s.epochResult(result);
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

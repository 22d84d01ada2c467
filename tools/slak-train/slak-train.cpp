// slak-train: trains a registry model (SLaK, ConvNeXt, RepLKNet, slak_nano)
// with SLaK's dynamic-sparsity recipe, or prints its parameter counts.
#include "models/deploy/Checkpoint.h"
#include "models/deploy/Deploy.h"
#include "models/train/Trainer.h"
#include "runtime/Log.h"
#include "tools/common/HostMemory.h"
#include "tools/common/ErrorMessage.h"
#include "tools/common/ModelFlags.h"

#include <CLI/CLI.hpp>

#include <cstdio>
#include <iostream>

namespace {

using namespace slak;

std::string joinInts(const std::vector<int64_t> &v) {
  std::string out;
  for (size_t i = 0; i < v.size(); ++i)
    out += (i ? "," : "") + std::to_string(v[i]);
  return out;
}

int printParams(const std::string &model, const models::ModelOverrides &overrides,
                const sparse::Options &sparse, uint64_t seed) {
  auto r = train::parameterReport(model, overrides, sparse, seed);
  const auto &c = r.config;
  std::vector<int64_t> kernels(c.kernelSizes.begin(), c.kernelSizes.end());
  std::printf("model %s: depths [%s] dims [%s] kernels [%s] small %d, %lld classes, %lld input "
              "channels\n",
              c.name.c_str(), joinInts(c.depths).c_str(), joinInts(c.dims()).c_str(),
              joinInts(kernels).c_str(), c.smallKernel, (long long)c.numClasses,
              (long long)c.inChannels);
  std::printf("dense parameters:    %lld (%.2fM)\n", (long long)r.total, r.total / 1e6);
  std::printf("maskable (rank 2/4): %lld (%.2fM)\n", (long long)r.maskable, r.maskable / 1e6);
  if (c.sparsity > 0)
    std::printf("non-zero parameters: %lld (%.2fM) at sparsity %.2f (%s init; %lld masked "
                "layers, %lld dense)\n",
                (long long)r.nonZero, r.nonZero / 1e6, c.sparsity, sparse::initName(sparse.init),
                (long long)r.maskedLayers, (long long)r.denseLayers);
  else
    std::printf("non-zero parameters: %lld (%.2fM) (dense model)\n", (long long)r.nonZero,
                r.nonZero / 1e6);
  return 0;
}

/// --eval-only: the test split through a checkpoint's model, its large-kernel
/// layers served by a kernel package when `kernels` is given.
int evaluateCheckpoint(const train::TrainOptions &o, const std::string &kernels, bool ema) {
  if (o.checkpointPath.empty())
    throw std::invalid_argument("--eval-only needs --checkpoint CKPT (a slak-train checkpoint)");
  data::Dataset test;
  if (o.dataset == "fashion-mnist") {
    test = data::loadFashionMnist(o.dataDir, false);
  } else {
    auto synth = o.synthetic;
    synth.size = o.syntheticTestSize;
    test = data::makeSynthetic(synth, 1);
  }
  if (o.testLimit > 0 && o.testLimit < test.size()) {
    test.images = test.images.slice(0, 0, o.testLimit);
    test.labels = test.labels.slice(0, 0, o.testLimit);
  }
  auto overrides = o.overrides;
  if (!overrides.inChannels)
    overrides.inChannels = test.channels();
  if (!overrides.numClasses)
    overrides.numClasses = test.numClasses;
  auto config = models::modelConfig(o.model, overrides);
  auto sourced = models::loadModel(config, o.checkpointPath, ema, o.seed);
  sourced.model->to(torch::Device(o.device));
  std::string served = "the JIT";
  if (!kernels.empty()) {
    models::DeployOptions d;
    d.imageSize = test.height();
    auto report = models::attachKernelPackage(*sourced.model, kernels, d);
    served = "kernel package " + kernels + " (" + std::to_string(report.layers.size()) +
             " layers, checked against the model)";
  }
  auto e = train::evaluate(*sourced.model, test, o.evalBatchSize, o.device);
  std::printf("%s from %s: test loss %.4f, test acc %.2f%% on %lld images; large-kernel layers "
              "served by %s\n",
              config.name.c_str(), sourced.source.c_str(), e.loss, 100 * e.accuracy,
              (long long)test.size(), served.c_str());
  return 0;
}

} // namespace

int main(int argc, char **argv) {
  slak::tools::retainFreedHostMemory();
  CLI::App app{"slak-train: train SLaK / ConvNeXt / RepLKNet models with dynamic sparsity "
               "(SLaK's recipe) on Fashion-MNIST or synthetic data, or print parameter counts."};
  app.set_help_all_flag("--help-all", "Print every option, grouped");

  train::TrainOptions o;
  bool printParamsOnly = false, listModels = false, noProgress = false, finalEvalOnly = false;
  bool evalOnly = false, evalEma = false;
  std::string kernels;
  std::string sparseInit = "snip", growth = "random", moments = "reset";
  tools::ModelFlags flags;

  auto *model = flags.add(app, "Model");
  model->add_flag("--list-models", listModels, "List the registry's models and exit");
  model->add_flag("--print-params", printParamsOnly,
                  "Print dense and non-zero parameter counts (masks initialised as training "
                  "would, SNIP on one random batch) and exit");

  auto *dataGroup = app.add_option_group("Data");
  dataGroup->add_option("--dataset", o.dataset, "fashion-mnist or synthetic")
      ->check(CLI::IsMember({"fashion-mnist", "synthetic"}))
      ->capture_default_str();
  dataGroup
      ->add_option("--data-dir", o.dataDir,
                   "Fashion-MNIST directory (Debian package dataset-fashion-mnist)")
      ->capture_default_str();
  dataGroup->add_option("--synthetic-train", o.synthetic.size, "Synthetic training images")
      ->capture_default_str();
  dataGroup->add_option("--synthetic-test", o.syntheticTestSize, "Synthetic test images")
      ->capture_default_str();
  dataGroup->add_option("--synthetic-size", o.synthetic.height, "Synthetic image height = width")
      ->capture_default_str();
  dataGroup
      ->add_option("--train-limit", o.trainLimit, "Use only the first N training images (0 = all)")
      ->capture_default_str();
  dataGroup->add_option("--test-limit", o.testLimit, "Use only the first N test images (0 = all)")
      ->capture_default_str();

  auto *optim = app.add_option_group("Optimisation");
  optim->add_option("--epochs", o.epochs, "Training epochs (SLaK: 300)")->capture_default_str();
  optim->add_option("--batch-size", o.batchSize, "Images per micro-batch")->capture_default_str();
  optim
      ->add_option("--accum-steps", o.accumSteps,
                   "Micro-batches accumulated per optimizer step (gradient accumulation)")
      ->capture_default_str();
  optim->add_option("--lr", o.lr, "Peak AdamW learning rate (SLaK: 4e-3 at batch 4096)")
      ->capture_default_str();
  optim->add_option("--min-lr", o.minLr, "Learning rate at the end of the cosine")
      ->capture_default_str();
  optim->add_option("--warmup-epochs", o.warmupEpochs, "Linear warmup length in epochs (SLaK: 20)")
      ->capture_default_str();
  optim->add_option("--warmup-steps", o.warmupSteps,
                    "Linear warmup length in optimizer steps (overrides --warmup-epochs)");
  optim
      ->add_option("--weight-decay", o.weightDecay,
                   "AdamW decoupled weight decay on rank >= 2 weights (SLaK: 0.05)")
      ->capture_default_str();
  optim->add_option("--label-smoothing", o.labelSmoothing, "Label smoothing (SLaK: 0.1)")
      ->capture_default_str();
  optim
      ->add_option("--ema-decay", o.emaDecay,
                   "EMA of the weights per optimizer step, masked like the model (SLaK: "
                   "0.9999; 0 = off)")
      ->capture_default_str();

  auto *sparseGroup = app.add_option_group("Dynamic sparsity");
  sparseGroup->add_option("--sparse-init", sparseInit, "Initial densities: snip, ERK or uniform")
      ->check(CLI::IsMember({"snip", "ERK", "erk", "uniform"}))
      ->capture_default_str();
  sparseGroup->add_option("--growth", growth, "Regrowth: random or gradient (largest |grad|)")
      ->check(CLI::IsMember({"random", "gradient"}))
      ->capture_default_str();
  sparseGroup
      ->add_option("--prune-rate", o.sparse.pruneRate,
                   "Initial fraction of live weights pruned and regrown per update "
                   "(SLaK: 0.3; SLaK-T command: 0.5)")
      ->capture_default_str();
  sparseGroup
      ->add_option("--prune-rate-min", o.sparse.pruneRateMin,
                   "Prune rate at the end of its cosine decay")
      ->capture_default_str();
  sparseGroup
      ->add_option("--update-frequency", o.sparse.updateFrequency,
                   "Optimizer steps between mask updates (SLaK: 100; SLaK-T command: "
                   "2000; 0 = static masks)")
      ->capture_default_str();
  sparseGroup
      ->add_option("--moments", moments,
                   "AdamW moments at positions whose mask changed: reset (zeroed) or keep "
                   "(the official code's stale moments)")
      ->check(CLI::IsMember({"reset", "keep"}))
      ->capture_default_str();

  auto *run = app.add_option_group("Run");
  run->add_option("--out-dir", o.outDir, "Directory for log.jsonl and checkpoint.pt")
      ->capture_default_str();
  run->add_option("--log", o.logPath, "JSONL log (default <out-dir>/log.jsonl); appended to");
  run->add_option("--checkpoint", o.checkpointPath,
                  "Checkpoint path (default <out-dir>/checkpoint.pt), written atomically");
  run->add_option("--resume", o.resume, "Continue from this checkpoint");
  run->add_option("--max-steps", o.maxSteps,
                  "Stop after this optimizer step, writing a checkpoint (-1 = run all epochs)")
      ->capture_default_str();
  run->add_option("--checkpoint-every", o.checkpointEvery,
                  "Also checkpoint every N optimizer steps (0 = at epoch ends and stops only)")
      ->capture_default_str();
  run->add_option("--eval-batch-size", o.evalBatchSize, "Batch size for the test split")
      ->capture_default_str();
  run->add_flag("--final-eval-only", finalEvalOnly,
                "Evaluate on the test split after the last epoch only");
  run->add_option("--seed", o.seed, "Seed for weights, data order, masks and drop path")
      ->capture_default_str();
  run->add_option("--threads", o.threads, "CPU threads (0 = LibTorch's default)")
      ->capture_default_str();
  run->add_option("--device", o.device, "cpu or cuda[:N]")->capture_default_str();
  run->add_flag("--no-progress", noProgress, "No progress bar on stderr");
  run->add_flag("--eval-only", evalOnly,
                "Evaluate --checkpoint on the test split only (no training) and exit");
  run->add_flag("--eval-ema", evalEma, "With --eval-only: evaluate the checkpoint's EMA weights");
  run->add_option("--kernels", kernels,
                  "With --eval-only: serve the large-kernel layers from this kernel package "
                  "(slak-translate --emit-kernel-package), checked against the checkpoint");

  int nproc = 0, rankFlag = -1, worldFlag = -1, portFlag = -1;
  std::string addrFlag;
  auto *dist = app.add_option_group(
      "Distributed",
      "Data parallel over PyTorch c10d (Gloo on CPU, NCCL on CUDA). Each rank trains on a "
      "disjoint shard of every epoch's shuffled order with --batch-size images per step "
      "(global batch = ranks x --batch-size); gradients are averaged before each step; "
      "BatchNorm uses per-rank batch statistics (DDP without SyncBN); masks stay identical "
      "on all ranks (checked after every update); loss, accuracy, images/s and the test "
      "evaluation are global; rank 0 alone prints, logs and checkpoints. Ranks also come "
      "from torchrun's RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT");
  dist->add_option("--nproc", nproc,
                   "Launch N ranks of this command on this machine over loopback and wait; "
                   "exit code = the first failing rank's, which stops the others (each rank "
                   "uses --threads threads)");
  dist->add_option("--rank", rankFlag, "This process's rank (default $RANK, else 0)");
  dist->add_option("--world-size", worldFlag, "Number of ranks (default $WORLD_SIZE, else 1)");
  dist->add_option("--master-addr", addrFlag,
                   "Rank 0's host for the TCPStore rendezvous (default $MASTER_ADDR, else "
                   "127.0.0.1)");
  dist->add_option("--master-port", portFlag,
                   "Rendezvous port (default $MASTER_PORT, else 29500; --nproc picks a free "
                   "one)");
  dist->add_option("--dist-timeout", o.distributed.timeoutSeconds,
                   "Seconds the rendezvous or a collective may wait before failing")
      ->capture_default_str();
  dist->add_flag("--checkpoint-all-ranks", o.checkpointAllRanks,
                 "Ranks > 0 also write <checkpoint>.rank<r> (to compare ranks)");

  CLI11_PARSE(app, argc, argv);

  try {
    if (listModels) {
      for (const auto &name : models::modelNames())
        std::printf("%s\n", name.c_str());
      return 0;
    }
    o.model = flags.model;
    o.overrides = flags.overrides();
    auto &ov = o.overrides;
    o.synthetic.width = o.synthetic.height;
    o.sparse.init = sparse::parseInit(sparseInit);
    o.sparse.growth = sparse::parseGrowth(growth);
    o.sparse.moments = sparse::parseMomentPolicy(moments);
    o.progress = !noProgress;
    o.evalEachEpoch = !finalEvalOnly;

    if (printParamsOnly)
      return printParams(o.model, ov, o.sparse, o.seed);
    if (evalOnly)
      return evaluateCheckpoint(o, kernels, evalEma);
    if (!kernels.empty() || evalEma)
      throw std::invalid_argument("--kernels and --eval-ema need --eval-only");

    if (nproc > 1)
      return train::launchLocalRanks(argc, argv, nproc, std::max(portFlag, 0));
    o.distributed = train::distributedFromEnvironment(o.distributed);
    if (rankFlag >= 0)
      o.distributed.rank = rankFlag;
    if (worldFlag >= 0)
      o.distributed.worldSize = worldFlag;
    if (!addrFlag.empty())
      o.distributed.masterAddr = addrFlag;
    if (portFlag >= 0)
      o.distributed.masterPort = portFlag;

    train::Trainer trainer(o);
    auto r = trainer.run();
    if (r.rank != 0)
      return 0;
    std::printf("%s: %lld steps, %lld epochs%s, train loss %.4f acc %.2f%%", o.model.c_str(),
                (long long)r.steps, (long long)r.epochsCompleted,
                r.stoppedEarly ? " (stopped at --max-steps)" : "", r.trainLoss,
                100 * r.trainAccuracy);
    if (r.testAccuracy >= 0)
      std::printf(", test acc %.2f%%", 100 * r.testAccuracy);
    else
      std::printf(", no test evaluation (stopped before the end of an epoch)");
    if (r.testAccuracyEma >= 0)
      std::printf(" (EMA %.2f%%)", 100 * r.testAccuracyEma);
    std::printf(", %.1f images/s, %.1f s training, density %.3f\n", r.imagesPerSecond,
                r.trainSeconds, r.density);
    return 0;
  } catch (const std::exception &e) {
    std::string who =
        o.distributed.enabled() ? " (rank " + std::to_string(o.distributed.rank) + ")" : "";
    std::fprintf(stderr, "slak-train%s: error: %s\n", who.c_str(), tools::errorMessage(e).c_str());
    return 1;
  }
}

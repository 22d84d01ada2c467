// slak-infer: classifies the first N test images with a trained model, its
// large-kernel layers served by a kernel package (--kernels) or by the JIT.
//
//   slak-infer --model slak_nano --checkpoint runs/nano/checkpoint.pt --kernels pkg --images 16
#include "models/data/Datasets.h"
#include "models/deploy/Checkpoint.h"
#include "models/deploy/Deploy.h"
#include "tools/common/ModelFlags.h"

#include <torch/torch.h>

#include <CLI/CLI.hpp>

#include <cstdio>

namespace {

const char *const kFashionMnistClasses[] = {"T-shirt/top", "Trouser",   "Pullover", "Dress",
                                            "Coat",        "Sandal",    "Shirt",    "Sneaker",
                                            "Bag",         "Ankle boot"};

std::string className(const std::string &dataset, int64_t k) {
  if (dataset == "fashion-mnist" && k >= 0 && k < 10)
    return kFashionMnistClasses[k];
  return "class " + std::to_string(k);
}

} // namespace

int main(int argc, char **argv) {
  using namespace slak;
  CLI::App app{"slak-infer: classify the first N test images (Fashion-MNIST or synthetic) with a "
               "model, its large-kernel layers served by a kernel package or by the JIT"};
  tools::ModelFlags flags;
  flags.add(app);
  std::string checkpoint, kernels, dataset = "fashion-mnist", dataDir = data::kFashionMnistDir;
  std::string backend = "auto";
  bool ema = false;
  int64_t images = 16, batchSize = 256, syntheticSize = 28;
  uint64_t seed = 0;
  int threads = 0;
  app.add_option("--checkpoint", checkpoint,
                 "slak-train checkpoint (without it: random weights from --seed, for tests)");
  app.add_flag("--ema", ema, "Use the checkpoint's EMA weights");
  app.add_option("--kernels", kernels,
                 "Kernel package (slak-translate --emit-kernel-package) serving the "
                 "large-kernel layers; checked against the model first");
  app.add_option("--kernel-backend", backend,
                 "Package backend: auto, opencl, cpu, reference or cuda")
      ->capture_default_str();
  app.add_option("--images", images, "Classify the first N test images")->capture_default_str();
  app.add_option("--dataset", dataset, "fashion-mnist or synthetic")
      ->check(CLI::IsMember({"fashion-mnist", "synthetic"}))
      ->capture_default_str();
  app.add_option("--data-dir", dataDir, "Fashion-MNIST directory")->capture_default_str();
  app.add_option("--synthetic-size", syntheticSize, "Synthetic image side")->capture_default_str();
  app.add_option("--batch-size", batchSize, "Images per forward pass")->capture_default_str();
  app.add_option("--seed", seed, "Seed (random weights; synthetic data)")->capture_default_str();
  app.add_option("--threads", threads, "CPU threads (0 = LibTorch's default)");
  CLI11_PARSE(app, argc, argv);

  try {
    if (threads > 0)
      torch::set_num_threads(threads);
    data::Dataset test;
    if (dataset == "fashion-mnist") {
      test = data::loadFashionMnist(dataDir, false);
    } else {
      data::SyntheticOptions o;
      o.size = images;
      o.height = o.width = syntheticSize;
      o.seed = seed;
      test = data::makeSynthetic(o, 1);
    }
    if (images <= 0 || images > test.size())
      throw std::invalid_argument("--images " + std::to_string(images) + ": the test split has " +
                                  std::to_string(test.size()) + " images");
    models::ModelOverrides overrides = flags.overrides();
    if (!overrides.inChannels)
      overrides.inChannels = test.channels();
    if (!overrides.numClasses)
      overrides.numClasses = test.numClasses;
    models::ModelConfig config = models::modelConfig(flags.model, overrides);
    models::SourcedModel sourced = models::loadModel(config, checkpoint, ema, seed);
    models::Classifier &model = *sourced.model;
    model.eval();
    std::printf("slak-infer: %s from %s\n", config.name.c_str(), sourced.source.c_str());
    if (!kernels.empty()) {
      models::DeployOptions d;
      d.backend = backend;
      d.imageSize = test.height();
      models::DeployReport report = models::attachKernelPackage(model, kernels, d);
      std::printf("slak-infer: %zu large-kernel layer(s) served by kernel package %s (checked "
                  "against the model)\n",
                  report.layers.size(), kernels.c_str());
    } else {
      std::printf("slak-infer: large-kernel layers run by the JIT (no --kernels)\n");
    }

    torch::NoGradGuard noGrad;
    int64_t correct = 0;
    for (int64_t start = 0; start < images; start += batchSize) {
      const int64_t n = std::min(batchSize, images - start);
      torch::Tensor logits = model.forward(test.images.slice(0, start, start + n));
      torch::Tensor predicted = logits.argmax(1);
      for (int64_t i = 0; i < n; ++i) {
        const int64_t p = predicted[i].item<int64_t>();
        const int64_t label = test.labels[start + i].item<int64_t>();
        correct += p == label;
        std::printf("%6lld  predicted %-12s label %-12s %s\n", (long long)(start + i),
                    className(dataset, p).c_str(), className(dataset, label).c_str(),
                    p == label ? "ok" : "MISS");
      }
    }
    std::printf("accuracy: %lld / %lld = %.2f%%\n", (long long)correct, (long long)images,
                100.0 * static_cast<double>(correct) / static_cast<double>(images));
    return 0;
  } catch (const std::exception &e) {
    std::fprintf(stderr, "slak-infer: error: %s\n", e.what());
    return 1;
  }
}

// slak-infer: classifies the first N test images with a trained model, its
// large-kernel layers served by a kernel package (--kernels) or by the JIT.
// The checkpoint is a slak-train checkpoint or an official SLaK one
// (torch.save of the official code); --input classifies a tensor saved by
// Python's torch.save instead of the test split, --logits-out writes the
// logits for Python's torch.load.
//
//   slak-infer --model slak_nano --checkpoint runs/nano/checkpoint.pt --kernels pkg --images 16
//   slak-infer --model slak_tiny --checkpoint SLaK_tiny.pth --input x.pt --logits-out y.pt
#include "codegen/FileKind.h"
#include "models/data/Datasets.h"
#include "models/deploy/Checkpoint.h"
#include "models/deploy/Deploy.h"
#include "tools/common/HostMemory.h"
#include "tools/common/ErrorMessage.h"
#include "tools/common/ModelFlags.h"
#include "tools/common/ThreadsFlag.h"

#include <torch/torch.h>

#include <CLI/CLI.hpp>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <stdexcept>

#include <unistd.h>

namespace {

const char *const kFashionMnistClasses[] = {"T-shirt/top", "Trouser",   "Pullover", "Dress",
                                            "Coat",        "Sandal",    "Shirt",    "Sneaker",
                                            "Bag",         "Ankle boot"};

std::string className(const std::string &dataset, int64_t k) {
  if (dataset == "fashion-mnist" && k >= 0 && k < 10)
    return kFashionMnistClasses[k];
  return "class " + std::to_string(k);
}

/// An NCHW float tensor saved by Python's torch.save(x, path).
torch::Tensor readInput(const std::string &path) {
  const std::string fix = ": save an NCHW float tensor with torch.save(x, FILE) in Python";
  std::ifstream in(path, std::ios::binary);
  if (!in)
    throw std::runtime_error("--input " + path + ": no such file" + fix);
  // torch.save writes a zip archive: name anything else for what it is.
  if (const std::string kind = slak::codegen::describeFileKind(path);
      !kind.empty() && kind.rfind("a zip archive", 0) != 0)
    throw std::runtime_error("--input " + path + " is " + kind + ", not a tensor file" + fix);
  std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  torch::IValue value;
  try {
    value = torch::pickle_load(bytes);
  } catch (const c10::Error &e) {
    std::string why = e.what_without_backtrace();
    why = why.substr(0, why.find('\n'));
    // miniz appends a paragraph of advice to its one-line reason.
    if (size_t advice = why.find(". This is an internal miniz error"); advice != std::string::npos)
      why.erase(advice);
    throw std::runtime_error("--input " + path + " cannot be read as a tensor (" + why + ")" + fix);
  }
  if (!value.isTensor())
    throw std::runtime_error("--input " + path + " holds a " + value.tagKind() + ", not a tensor" +
                             fix);
  torch::Tensor x = value.toTensor();
  if (x.dim() != 4 || !x.is_floating_point())
    throw std::runtime_error("--input " + path + " holds a " +
                             std::string(c10::toString(x.scalar_type())) + " tensor of shape " +
                             c10::str(x.sizes()) + ", expected 4 dims (N, C, H, W) of floats" +
                             fix);
  if (x.size(0) == 0)
    throw std::runtime_error("--input " + path + " holds no images (shape " + c10::str(x.sizes()) +
                             ")" + fix);
  return x.to(torch::kFloat).contiguous();
}

/// Writes `logits` for Python's torch.load, through a temporary file and a
/// rename so that a reader never sees half a file.
void writeLogits(const std::string &path, const torch::Tensor &logits) {
  const std::vector<char> bytes = torch::pickle_save(logits.contiguous());
  const std::string tmp = path + ".tmp." + std::to_string(::getpid());
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    out.close();
    if (!out) {
      std::filesystem::remove(tmp);
      throw std::runtime_error("--logits-out " + path +
                               ": cannot write it (is its directory there and writable?)");
    }
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) {
    std::filesystem::remove(tmp);
    throw std::runtime_error("--logits-out " + path + ": cannot write it (" + ec.message() + ")");
  }
}

} // namespace

int main(int argc, char **argv) {
  slak::tools::retainFreedHostMemory();
  using namespace slak;
  CLI::App app{"slak-infer: classify the first N test images (Fashion-MNIST or synthetic) with a "
               "model, its large-kernel layers served by a kernel package or by the JIT"};
  tools::ModelFlags flags;
  flags.add(app);
  std::string checkpoint, kernels, dataset = "fashion-mnist", dataDir = data::kFashionMnistDir;
  std::string input, logitsOut;
  std::string backend = "auto";
  bool ema = false;
  int64_t images = 16, batchSize = 256, syntheticSize = 28;
  uint64_t seed = 0;
  tools::ThreadsFlag threads;
  app.add_option("--checkpoint", checkpoint,
                 "slak-train checkpoint or official SLaK checkpoint (torch.save of the official "
                 "code; pass the model flags it was trained with) (without it: random weights "
                 "from --seed, for tests)");
  app.add_flag("--ema", ema, "Use the checkpoint's EMA weights (official: model_ema)");
  app.add_option("--input", input,
                 "Classify the images of this file instead of the test split: an NCHW float "
                 "tensor saved by Python's torch.save(x, FILE); prints the predicted class "
                 "index per image (no labels, no accuracy)");
  app.add_option("--logits-out", logitsOut,
                 "Write the logits [N, classes] here (torch.load reads them in Python)");
  app.add_option("--kernels", kernels,
                 "Kernel package (slak-translate --emit-kernel-package) serving the "
                 "large-kernel layers; checked against the model first");
  app.add_option("--kernel-backend", backend,
                 "Package backend: auto, opencl, cpu, reference or cuda")
      ->check(CLI::IsMember({"auto", "opencl", "cpu", "reference", "cuda"}))
      ->capture_default_str();
  app.add_option("--images", images, "Classify the first N test images (with --input: all)")
      ->check(tools::positive(""))
      ->capture_default_str();
  app.add_option("--dataset", dataset, "fashion-mnist or synthetic")
      ->check(CLI::IsMember({"fashion-mnist", "synthetic"}))
      ->capture_default_str();
  app.add_option("--data-dir", dataDir, "Fashion-MNIST directory")->capture_default_str();
  app.add_option("--synthetic-size", syntheticSize, "Synthetic image side")
      ->check(tools::positive(""))
      ->capture_default_str();
  app.add_option("--batch-size", batchSize, "Images per forward pass")
      ->check(tools::positive(""))
      ->capture_default_str();
  app.add_option("--seed", seed, "Seed (random weights; synthetic data)")->capture_default_str();
  threads.add(app);
  CLI11_PARSE(app, argc, argv);

  try {
    threads.apply();
    data::Dataset test;
    models::ModelOverrides overrides = flags.overrides();
    if (!input.empty()) {
      test.images = readInput(input);
      images = test.images.size(0);
      if (!overrides.inChannels)
        overrides.inChannels = test.images.size(1);
    } else {
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
      if (!overrides.inChannels)
        overrides.inChannels = test.channels();
      if (!overrides.numClasses)
        overrides.numClasses = test.numClasses;
    }
    models::ModelConfig config = models::modelConfig(flags.model, overrides);
    // Where the images come from, for the errors about them.
    const std::string imagesFrom = !input.empty() ? "--input " + input
                                   : dataset == "synthetic"
                                       ? "the synthetic images (--synthetic-size)"
                                       : "the Fashion-MNIST images (--data-dir)";
    if (test.images.size(1) != config.inChannels)
      throw std::invalid_argument(imagesFrom + ": " + std::to_string(test.images.size(1)) +
                                  " channel(s) per image, the model takes " +
                                  std::to_string(config.inChannels) + " (--in-channels)");
    models::SourcedModel sourced = models::loadModel(config, checkpoint, ema, seed);
    models::Classifier &model = *sourced.model;
    model.eval();
    std::printf("slak-infer: %s from %s\n", config.name.c_str(), sourced.source.c_str());
    if (!kernels.empty()) {
      models::DeployOptions d;
      d.backend = backend;
      d.imageSize = test.images.size(2);
      models::DeployReport report = models::attachKernelPackage(model, kernels, d);
      std::printf("slak-infer: %zu large-kernel layer(s) served by kernel package %s (checked "
                  "against the model)\n",
                  report.layers.size(), kernels.c_str());
    } else {
      std::printf("slak-infer: large-kernel layers run by the JIT (no --kernels)\n");
    }

    torch::NoGradGuard noGrad;
    int64_t correct = 0;
    std::vector<torch::Tensor> allLogits;
    for (int64_t start = 0; start < images; start += batchSize) {
      const int64_t n = std::min(batchSize, images - start);
      torch::Tensor logits;
      try {
        logits = model.forward(test.images.slice(0, start, start + n));
      } catch (const c10::Error &e) {
        // LibTorch names a convolution's sizes, not where they came from;
        // slak's own errors ("slak: kernel package ...") name their cause.
        std::string why = e.what_without_backtrace();
        if (why.rfind("slak", 0) == 0)
          throw;
        throw std::runtime_error(imagesFrom + " (shape " + c10::str(test.images.sizes()) +
                                 ") cannot go through " + config.name + " (" +
                                 why.substr(0, why.find('\n')) +
                                 "): use images of the size the model was trained on");
      }
      if (!logitsOut.empty())
        allLogits.push_back(logits.cpu());
      torch::Tensor predicted = logits.argmax(1);
      for (int64_t i = 0; i < n; ++i) {
        const int64_t p = predicted[i].item<int64_t>();
        if (!input.empty()) {
          std::printf("%6lld  predicted %lld\n", (long long)(start + i), (long long)p);
          continue;
        }
        const int64_t label = test.labels[start + i].item<int64_t>();
        correct += p == label;
        std::printf("%6lld  predicted %-12s label %-12s %s\n", (long long)(start + i),
                    className(dataset, p).c_str(), className(dataset, label).c_str(),
                    p == label ? "ok" : "MISS");
      }
    }
    if (input.empty())
      std::printf("accuracy: %lld / %lld = %.2f%%\n", (long long)correct, (long long)images,
                  100.0 * static_cast<double>(correct) / static_cast<double>(images));
    if (!logitsOut.empty()) {
      writeLogits(logitsOut, torch::cat(allLogits));
      std::printf("slak-infer: logits [%lld, %lld] written to %s\n", (long long)images,
                  (long long)config.numClasses, logitsOut.c_str());
    }
    return 0;
  } catch (const std::exception &e) {
    std::fprintf(stderr, "slak-infer: error: %s\n", tools::errorMessage(e).c_str());
    return 1;
  }
}

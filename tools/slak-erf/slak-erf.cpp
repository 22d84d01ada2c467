// slak-erf: the effective receptive field of registry models (random weights)
// or slak-train checkpoints, as in the RepLKNet / SLaK analysis: a PNG heatmap
// (one panel per checkpoint, side by side), the sides of the centred squares
// holding 20/30/50/99% of the normalised map, printed and written to JSON.
#include "models/analysis/CheckpointModel.h"
#include "models/analysis/Erf.h"
#include "models/analysis/ErfReport.h"
#include "models/analysis/Figure.h"
#include "models/analysis/Png.h"
#include "tools/common/HostMemory.h"
#include "tools/common/ErrorMessage.h"
#include "tools/common/ModelFlags.h"
#include "tools/common/ThreadsFlag.h"

#include <CLI/CLI.hpp>
#include <torch/torch.h>

#include <cstdio>
#include <filesystem>
#include <iostream>
#include <unistd.h>

namespace {

using namespace slak;
using json = nlohmann::json;

std::string firstStageKernel(const models::ModelConfig &c) {
  const int m = c.kernelSizes.front(), n = c.smallKernel;
  if (c.family == models::Family::Slak && c.decomposed && m > n)
    return std::to_string(m) + "x" + std::to_string(n) + "+" + std::to_string(n) + "x" +
           std::to_string(m) + "+" + std::to_string(n) + "x" + std::to_string(n);
  if (c.family != models::Family::ConvNeXt && n > 0 && n < m)
    return std::to_string(m) + "x" + std::to_string(m) + "+" + std::to_string(n) + "x" +
           std::to_string(n);
  return std::to_string(m) + "x" + std::to_string(m);
}

} // namespace

int main(int argc, char **argv) {
  slak::tools::retainFreedHostMemory();
  CLI::App app{"slak-erf: effective receptive field (RepLKNet / SLaK analysis) of a registry "
               "model with random weights or of slak-train checkpoints, as a PNG heatmap and "
               "the sides of the centred squares holding 20/30/50/99% of it."};

  std::string output, jsonPath, dataSource = "fashion-mnist", title;
  std::string dataDir = "/usr/share/datasets/fashion-mnist";
  std::vector<std::string> checkpoints, labels;
  bool ema = false;
  int64_t size = 1024, images = 50, batchSize = 1;
  int panelSize = 384;
  tools::ThreadsFlag threads;
  uint64_t seed = 0;
  tools::ModelFlags flags;
  flags.model.clear(); // default: the checkpoint's

  auto *what = flags.add(app, "What to analyse",
                         "Registry model (slak_nano, slak_tiny, ..., convnext_tiny, "
                         "replknet_31b); default: the checkpoint's");
  what->add_option("--checkpoint", checkpoints,
                   "slak-train checkpoint; repeat for side-by-side panels (one per "
                   "checkpoint); none: random weights");
  what->add_option("--label", labels, "Caption of each panel, in --checkpoint order");
  what->add_flag("--ema", ema, "Use the checkpoints' EMA weights");

  auto *input = app.add_option_group("Inputs");
  input->add_option("--size", size, "Input side in pixels (a multiple of the total stride)")
      ->capture_default_str();
  input->add_option("--images", images, "Images averaged")->capture_default_str();
  input
      ->add_option("--data", dataSource,
                   "fashion-mnist (test images, bilinearly upsampled) or random (normal noise)")
      ->check(CLI::IsMember({"fashion-mnist", "random"}))
      ->capture_default_str();
  input->add_option("--data-dir", dataDir, "Fashion-MNIST directory")->capture_default_str();
  input->add_option("--seed", seed, "Seed for the image choice or noise and random weights")
      ->capture_default_str();
  input->add_option("--batch-size", batchSize, "Images per forward/backward")
      ->check(tools::positive(""))
      ->capture_default_str();
  threads.add(*input)->capture_default_str();

  auto *out = app.add_option_group("Output");
  out->add_option("-o,--output", output, "PNG heatmap (panels side by side)")->required();
  out->add_option("--json", jsonPath, "JSON with every panel's numbers (written atomically)");
  out->add_option("--panel-size", panelSize,
                  "Side of each panel in the PNG (maps are area-averaged or enlarged to it)")
      ->capture_default_str();
  out->add_option("--title", title, "Title line above the panels");

  CLI11_PARSE(app, argc, argv);

  const std::string &model = flags.model;
  try {
    threads.apply();
    if (model.empty() && checkpoints.empty())
      throw std::invalid_argument("nothing to analyse: pass --model NAME (random weights) or "
                                  "--checkpoint CKPT");
    if (!labels.empty() && labels.size() != std::max<size_t>(checkpoints.size(), 1))
      throw std::invalid_argument(std::to_string(labels.size()) + " --label given for " +
                                  std::to_string(std::max<size_t>(checkpoints.size(), 1)) +
                                  " panels: give one per --checkpoint, or none");
    if (images <= 0)
      throw std::invalid_argument("--images " + std::to_string(images) + " is not positive");
    if (panelSize < 64 || panelSize > 4096)
      throw std::invalid_argument("--panel-size " + std::to_string(panelSize) +
                                  " is outside [64, 4096]");

    const models::ModelOverrides ov = flags.overrides();

    // Every panel's configuration first, so bad arguments fail before any work.
    std::vector<analysis::ErfPanel> panels;
    const size_t count = std::max<size_t>(checkpoints.size(), 1);
    for (size_t i = 0; i < count; ++i) {
      analysis::ErfPanel p;
      p.ema = ema;
      p.size = size;
      p.data = dataSource;
      p.seed = seed;
      if (checkpoints.empty()) {
        if (ema)
          throw std::invalid_argument("--ema needs a --checkpoint (random weights have no EMA)");
        p.config = models::modelConfig(model, ov);
      } else {
        p.checkpoint = checkpoints[i];
        p.config = analysis::checkpointModelConfig(p.checkpoint, model, ov);
      }
      analysis::checkErfSize(p.config, size);
      if (!labels.empty())
        p.label = labels[i];
      else if (p.checkpoint.empty())
        p.label = p.config.name + " " + firstStageKernel(p.config) + ", random weights";
      else
        p.label = p.config.name + " " + firstStageKernel(p.config) + (ema ? " EMA" : "") + " (" +
                  std::filesystem::path(p.checkpoint).parent_path().filename().string() + ")";
      panels.push_back(std::move(p));
    }

    analysis::ErfInputOptions in;
    in.source = dataSource;
    in.dataDir = dataDir;
    in.count = images;
    in.size = size;
    in.seed = seed;
    const bool tty = isatty(STDERR_FILENO);
    for (size_t i = 0; i < panels.size(); ++i) {
      auto &p = panels[i];
      std::shared_ptr<models::Classifier> net;
      if (p.checkpoint.empty()) {
        torch::manual_seed(seed);
        net = models::createModel(p.config);
      } else {
        net = analysis::loadCheckpointModel(p.checkpoint, p.config, ema);
      }
      p.config = net->config(); // the large-kernel backend the weights loaded into
      in.channels = p.config.inChannels;
      const auto inputs = analysis::erfInputs(in);
      auto progress = [&](int64_t done, int64_t total) {
        const int64_t tenth = std::max<int64_t>(1, total / 10);
        if (!tty && done != total && done % tenth != 0)
          return;
        std::fprintf(stderr, "%s[%zu/%zu] %s: %lld/%lld images%s", tty ? "\r" : "", i + 1,
                     panels.size(), p.label.c_str(), (long long)done, (long long)total,
                     tty && done != total ? "" : "\n");
      };
      p.erf = analysis::computeErf(*net, inputs, batchSize, analysis::kErfFractions, progress);
      std::printf("%s\n", analysis::erfSummary(p).c_str());
      std::fflush(stdout);
    }

    std::vector<analysis::FigurePanel> figurePanels;
    for (const auto &p : panels) {
      analysis::FigurePanel f;
      f.map = p.erf.normalised;
      f.caption = analysis::erfCaption(p);
      const auto rf = analysis::centreReceptiveField(p.config, size);
      f.boxLo = rf.lo;
      f.boxHi = rf.hi;
      figurePanels.push_back(std::move(f));
    }
    analysis::writePng(output,
                       analysis::renderFigure(figurePanels, panelSize, title,
                                              "colour: log10(x+1) / max, dots: theoretical RF"));
    std::printf("wrote %s\n", output.c_str());

    if (!jsonPath.empty()) {
      json doc{{"tool", "slak-erf"},
               {"png", output},
               {"size", size},
               {"images", images},
               {"data", dataSource},
               {"seed", seed},
               {"fractions", analysis::kErfFractions},
               {"definition",
                "per image: relu(d sum(relu(centre pixel of the last feature map)) / d input) "
                "summed over input channels; mean over images; map = log10(mean + 1) / max; "
                "side = smallest odd s whose s x s square centred at (H/2, W/2) holds at least "
                "the fraction of the map's sum (sides: normalised map; sides_raw: mean)"},
               {"panels", json::array()}};
      for (const auto &p : panels)
        doc["panels"].push_back(analysis::erfPanelJson(p));
      analysis::writeFileAtomically(jsonPath, doc.dump(2) + "\n");
      std::printf("wrote %s\n", jsonPath.c_str());
    }
    return 0;
  } catch (const std::exception &e) {
    std::fprintf(stderr, "slak-erf: error: %s\n", tools::errorMessage(e).c_str());
    return 1;
  }
}

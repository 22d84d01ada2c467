// ModelFlags: the model-selection flags of slak-train, slak-export, slak-infer
// and slak-erf (one set of names and meanings), so that a checkpoint is read
// back into the model it was trained as.
#pragma once

#include "models/Models.h"

#include <CLI/CLI.hpp>

#include <string>
#include <vector>

namespace slak::tools {

/// CLI11's PositiveNumber prints its range as 0 to DBL_MAX written out; this
/// says what is wrong in words, and `fix` (in parentheses) what to do.
inline CLI::Validator positive(const std::string &fix = "leave the flag out for the model's "
                                                        "value") {
  return CLI::Validator(
      [fix](std::string &value) -> std::string {
        try {
          if (std::stod(value) > 0)
            return "";
        } catch (const std::exception &) {
        }
        return "'" + value + "' is not a positive number" + (fix.empty() ? "" : " (" + fix + ")");
      },
      "> 0");
}

/// For the model flags whose unset value is -1 (a negative value given by
/// hand would be taken for "unset" and ignored), and counts where 0 means
/// "the default".
inline CLI::Validator nonNegative(const std::string &fix = "leave the flag out for the model's "
                                                           "value") {
  return CLI::Validator(
      [fix](std::string &value) -> std::string {
        try {
          if (std::stod(value) >= 0)
            return "";
        } catch (const std::exception &) {
        }
        return "'" + value + "' is negative or not a number" +
               (fix.empty() ? "" : " (" + fix + ")");
      },
      ">= 0");
}

struct ModelFlags {
  std::string model = "slak_nano";
  double widthFactor = 0, sparsity = -1, dropPath = -1, layerScale = 0;
  int stemKernel = 0, stemStride = 0;
  std::vector<int> kernelSizes;
  int smallKernel = -1;
  int64_t classes = 0, inChannels = 0;
  std::string branchBn, decomposed, lkBackend = "auto";

  /// Adds the flags to a group `title` of `app` and returns the group (for a
  /// tool's own model flags). `modelHelp` replaces the --model text.
  CLI::Option_group *add(CLI::App &app, const std::string &title = "Model (as in slak-train)",
                         const std::string &modelHelp = "") {
    auto *g = app.add_option_group(title);
    auto *m = g->add_option("--model", model,
                            modelHelp.empty()
                                ? "Registry model: slak_tiny, slak_small, slak_base, slak_nano, "
                                  "convnext_tiny, replknet_31b"
                                : modelHelp);
    if (!model.empty())
      m->capture_default_str();
    g->add_option("--width-factor", widthFactor,
                  "Channel multiplier; stage dims are int(d * factor) (SLaK: 1.3)")
        ->check(positive());
    g->add_option("--kernel-sizes", kernelSizes,
                  "Large kernel per stage, e.g. 51,49,47,13 (SLaK's M, RepLKNet's K)")
        ->delimiter(',');
    g->add_option("--small-kernel", smallKernel,
                  "SLaK's N (thin side and small N x N branch); RepLKNet's small kernel")
        ->check(nonNegative());
    g->add_option("--sparsity", sparsity,
                  "Fraction of zero weights in rank-2/4 parameters (SLaK default 0.4; 0 = "
                  "dense)")
        ->check(nonNegative());
    g->add_option("--classes", classes, "Number of classes (default: the data set's)")
        ->check(positive());
    g->add_option("--in-channels", inChannels, "Input channels (default: the data set's)")
        ->check(positive());
    g->add_option("--drop-path", dropPath,
                  "Stochastic-depth rate of the last block (grows linearly from 0; no effect "
                  "in eval mode); default the model's (SLaK-T 0.1, S 0.4, B 0.5)")
        ->check(nonNegative());
    g->add_option("--stem-kernel", stemKernel,
                  "SLaK/ConvNeXt stem conv kernel (default: the model's; 4, slak_nano 2)")
        ->check(positive());
    g->add_option("--stem-stride", stemStride,
                  "SLaK/ConvNeXt stem conv stride; padding is ceil((kernel - stride) / 2) "
                  "(default: the model's; equal to the kernel: patchify)")
        ->check(positive());
    g->add_option("--layer-scale", layerScale,
                  "Initial value of each block's layer scale gamma (default: the model's; "
                  "ConvNeXt/SLaK 1e-6)")
        ->check(positive());
    g->add_option("--branch-bn", branchBn,
                  "true/false: a BatchNorm after each large-kernel branch (SLaK's bn)")
        ->check(CLI::IsMember({"true", "false"}));
    g->add_option("--decomposed", decomposed,
                  "true/false: SLaK's M x N + N x M + N x N (true) or M x M + N x N")
        ->check(CLI::IsMember({"true", "false"}));
    g->add_option("--lk-backend", lkBackend,
                  "Large-kernel layers: runtime (generated kernels), torch (LibTorch conv2d "
                  "branches) or auto (runtime where built and fast: Halide CPU backend or a "
                  "CUDA device); a checkpoint needs the backend it was trained with")
        ->check(CLI::IsMember({"auto", "runtime", "torch"}))
        ->capture_default_str();
    return g;
  }

  models::ModelOverrides overrides() const {
    models::ModelOverrides o;
    if (widthFactor > 0)
      o.widthFactor = widthFactor;
    if (!kernelSizes.empty())
      o.kernelSizes = kernelSizes;
    if (smallKernel >= 0)
      o.smallKernel = smallKernel;
    if (sparsity >= 0)
      o.sparsity = sparsity;
    if (classes > 0)
      o.numClasses = classes;
    if (inChannels > 0)
      o.inChannels = inChannels;
    if (dropPath >= 0)
      o.dropPath = dropPath;
    if (stemKernel > 0)
      o.stemKernel = stemKernel;
    if (stemStride > 0)
      o.stemStride = stemStride;
    if (layerScale > 0)
      o.layerScale = layerScale;
    if (!branchBn.empty())
      o.branchBatchNorm = branchBn == "true";
    if (!decomposed.empty())
      o.decomposed = decomposed == "true";
    o.backend = models::parseLkBackend(lkBackend);
    return o;
  }
};

} // namespace slak::tools

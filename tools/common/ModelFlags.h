// ModelFlags: the model-selection flags shared by slak-export and slak-infer
// (the same names and meaning as slak-train's), so that a checkpoint is read
// back into the model it was trained as.
#pragma once

#include "models/Models.h"

#include <CLI/CLI.hpp>

#include <string>
#include <vector>

namespace slak::tools {

struct ModelFlags {
  std::string model = "slak_nano";
  double widthFactor = 0, sparsity = -1;
  std::vector<int> kernelSizes;
  int smallKernel = -1;
  int64_t classes = 0, inChannels = 0;
  std::string branchBn, decomposed, lkBackend = "auto";

  void add(CLI::App &app) {
    auto *g = app.add_option_group("Model (as in slak-train)");
    g->add_option("--model", model,
                  "Registry model: slak_tiny, slak_small, slak_base, slak_nano, convnext_tiny, "
                  "replknet_31b")
        ->capture_default_str();
    g->add_option("--width-factor", widthFactor, "Channel multiplier (SLaK: 1.3)");
    g->add_option("--kernel-sizes", kernelSizes, "Large kernel per stage, e.g. 51,49,47,13")
        ->delimiter(',');
    g->add_option("--small-kernel", smallKernel, "SLaK's N; RepLKNet's small kernel");
    g->add_option("--sparsity", sparsity, "Sparsity of the model (only its masks' default)");
    g->add_option("--classes", classes, "Number of classes");
    g->add_option("--in-channels", inChannels, "Input channels");
    g->add_option("--branch-bn", branchBn, "true/false: a BatchNorm after each branch")
        ->check(CLI::IsMember({"true", "false"}));
    g->add_option("--decomposed", decomposed, "true/false: M x N + N x M + N x N or M x M + N x N")
        ->check(CLI::IsMember({"true", "false"}));
    g->add_option("--lk-backend", lkBackend,
                  "Large-kernel layers: runtime, torch or auto (as the checkpoint was trained)")
        ->check(CLI::IsMember({"auto", "runtime", "torch"}))
        ->capture_default_str();
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
    if (!branchBn.empty())
      o.branchBatchNorm = branchBn == "true";
    if (!decomposed.empty())
      o.decomposed = decomposed == "true";
    o.backend = models::parseLkBackend(lkBackend);
    return o;
  }
};

} // namespace slak::tools

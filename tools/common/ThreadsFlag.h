// ThreadsFlag: --threads of slak-export, slak-infer and slak-erf, LibTorch's
// CPU threads (0 keeps LibTorch's default).
#pragma once

#include "tools/common/ModelFlags.h"

#include <ATen/Parallel.h>
#include <CLI/CLI.hpp>

namespace slak::tools {

struct ThreadsFlag {
  int threads = 0;

  CLI::Option *add(CLI::App &app) {
    return app.add_option("--threads", threads, "CPU threads (0 = LibTorch's default)")
        ->check(nonNegative("0 = LibTorch's default"));
  }
  /// Sets LibTorch's thread count where --threads was given.
  void apply() const {
    if (threads > 0)
      at::set_num_threads(threads);
  }
};

} // namespace slak::tools

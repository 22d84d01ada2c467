// What the autotune tests share: the SLaK-T stages (training form: sparse
// at density 0.6, one output per branch, batch 8) and fresh database paths.
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <string>
#include <vector>

#include "autotune/Workload.h"

namespace slak::autotune {

inline const std::vector<LayerDescription> &testLayers() {
  static const std::vector<LayerDescription> layers = slakTinyLayers(0.6, true, 8);
  return layers;
}

/// <gtest temp dir>/<prefix>_<pid>_<name>, with no database (nor its
/// -wal/-shm files) there.
inline std::string tempDatabasePath(const std::string &prefix, const std::string &name) {
  const std::string path =
      ::testing::TempDir() + prefix + "_" + std::to_string(getpid()) + "_" + name;
  for (const char *suffix : {"", "-wal", "-shm"})
    std::remove((path + suffix).c_str());
  return path;
}

} // namespace slak::autotune

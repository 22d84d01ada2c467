// Layers the autotune tests share: the SLaK-T stages (training form:
// sparse at density 0.6, one output per branch, batch 8).
#pragma once

#include <vector>

#include "autotune/Workload.h"

namespace slak::autotune {

inline const std::vector<LayerDescription> &testLayers() {
  static const std::vector<LayerDescription> layers = slakTinyLayers(0.6, true, 8);
  return layers;
}

} // namespace slak::autotune

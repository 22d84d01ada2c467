// Figure: ERF heatmaps as pictures. A colour map of our own (dark blue ->
// purple -> red -> orange -> pale yellow, increasing in lightness), one panel
// per map with its caption underneath, panels side by side, and a colour bar.
#pragma once

#include "models/analysis/Png.h"

#include <torch/types.h>

#include <string>
#include <vector>

namespace slak::analysis {

/// Colour of t in [0, 1] (clamped); lightness grows with t.
Rgb heatColour(double t);

/// A [H, W] map with values in [0, 1] as a panelSize x panelSize picture
/// (area-averaged when shrinking, nearest-neighbour when enlarging).
RgbImage heatmapImage(const torch::Tensor &map, int panelSize);

struct FigurePanel {
  torch::Tensor map; // [H, W] in [0, 1]
  std::vector<std::string> caption;
  /// Optional square outline in map pixels (inclusive), e.g. the theoretical
  /// receptive field; drawn when hi >= lo.
  int64_t boxLo = 0, boxHi = -1;
};

/// Panels left to right with captions (wrapped to the panel width), an
/// optional title on top and a colour bar labelled `barLabel` at the bottom.
RgbImage renderFigure(const std::vector<FigurePanel> &panels, int panelSize,
                      const std::string &title, const std::string &barLabel);

} // namespace slak::analysis

// ErfReport: what slak-erf prints and writes for each panel (one model or
// checkpoint): its JSON record, its figure caption and its summary line.
#pragma once

#include "models/analysis/Erf.h"

#include <nlohmann/json.hpp>

#include <string>
#include <vector>

namespace slak::analysis {

struct ErfPanel {
  std::string label;
  std::string checkpoint; // empty: random weights
  bool ema = false;
  models::ModelConfig config;
  int64_t size = 0;
  std::string data; // "fashion-mnist" or "random"
  uint64_t seed = 0;
  ErfMap erf;
};

/// label, model (name, kernels, ...), checkpoint, ema, data, seed, size,
/// images, feature_map, receptive_field {side, lo, hi, clipped_lo,
/// clipped_hi}, sides (normalised map: [{fraction, side, area_ratio}]),
/// sides_raw (the mean gradient map), max_contribution, total_contribution.
nlohmann::json erfPanelJson(const ErfPanel &panel);

/// "label", "20%: s px  30%: ...", "RF side, images, data" lines for the figure.
std::vector<std::string> erfCaption(const ErfPanel &panel);

/// One line: "label: 20% 31 px, 30% 45 px, 50% 77 px, 99% 201 px (RF 248 px, 20 images)".
std::string erfSummary(const ErfPanel &panel);

/// Writes `text` to <path>.tmp and renames it over `path`. Throws
/// std::runtime_error naming the path.
void writeFileAtomically(const std::string &path, const std::string &text);

} // namespace slak::analysis

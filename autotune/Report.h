// Report: the human-readable account of a tuning run that slak-autotune
// prints: the problem, the size of each schedule space, each part's
// candidates ranked by the model (with measurements where there are some),
// the chosen schedule and its times against the default's.
#pragma once

#include <ostream>
#include <string>

#include "autotune/Tuner.h"

namespace slak::autotune {

/// The fields of a schedule text that `part` reads (plus the coupled ones).
std::string partFields(const std::string &schedule, SchedulePart part);

/// Prints `result`; `top` ranked candidates per part.
void printReport(std::ostream &out, const TuningResult &result, int top);

/// How the model's ranking held up against measurements, per tuned kind,
/// over the candidates of a measured result (those measured for that kind).
struct ModelVsMeasured {
  KernelKind kind = KernelKind::Forward;
  int measured = 0;        // candidates with a measurement
  int top = 0;             // of them, the model's best `top` (by this kind's prediction)
  double tauTop = kNoTime; // Kendall tau, predicted vs measured, over the model's top
  double tauAll = kNoTime; // the same over every measured candidate
  double pickMs = kNoTime; // measured time of the model's pick (its rank 1)
  double bestMs = kNoTime; // the measured best
  int bestModelRank = 0;   // the measured best's rank in the model's order (1 = its pick)
  std::string pick, best;  // their schedules (the part's fields)
};
std::vector<ModelVsMeasured> modelVsMeasured(const TuningResult &result, int top = 10);
/// One paragraph per kind: taus, the pick's distance from the best.
void printModelVsMeasured(std::ostream &out, const TuningResult &result, int top = 10);

} // namespace slak::autotune

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

} // namespace slak::autotune

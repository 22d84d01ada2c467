#include "autotune/Report.h"

#include <cmath>
#include <cstdio>
#include <sstream>

namespace slak::autotune {
namespace {

bool isWeightField(const std::string &key) {
  return key.rfind("weight", 0) == 0 || key == "wtaps" || key == "wvec";
}
bool isCoupledField(const std::string &key) {
  return key == "maskedWalk" || key == "vec" || key == "transposeWide" || key == "alignLoads";
}

std::string ms(double v) {
  if (std::isnan(v))
    return "-";
  char buffer[32];
  std::snprintf(buffer, sizeof buffer, v < 1 ? "%.4f" : v < 100 ? "%.3f" : "%.1f", v);
  return buffer;
}

std::string times(const KindTimes &t, const std::vector<KernelKind> &kinds) {
  std::string s;
  for (KernelKind k : kinds)
    s += (s.empty() ? "" : " / ") + ms(t[kindIndex(k)]);
  return s;
}

std::string kindNames(const std::vector<KernelKind> &kinds) {
  std::string s;
  for (KernelKind k : kinds)
    s += (s.empty() ? "" : " / ") + std::string(codegen::kernelKindName(k));
  return s;
}

} // namespace

std::string partFields(const std::string &schedule, SchedulePart part) {
  std::istringstream in(schedule);
  std::string out;
  for (std::string token; in >> token;) {
    const std::string key = token.substr(0, token.find('='));
    const bool keep = part == SchedulePart::Conv ? !isWeightField(key)
                                                 : isWeightField(key) || isCoupledField(key);
    if (keep)
      out += (out.empty() ? "" : " ") + token;
  }
  return out;
}

void printReport(std::ostream &out, const TuningResult &r, int top) {
  const bool measured = r.origin == ScheduleOrigin::Measured;
  out << "layer:    " << r.key.signature << "\n";
  out << "device:   " << r.key.device << " (" << backendName(r.backend) << ", "
      << (measured ? "measured" : "model only") << ")\n";
  out << "compiler: " << r.key.compiler << "\n";
  out << "workload: " << r.workload << "\n";
  const SchedulePart parts[2] = {SchedulePart::Conv, SchedulePart::Weight};
  for (int p = 0; p < 2; ++p) {
    std::vector<KernelKind> kinds;
    for (KernelKind k : r.kinds)
      if (partOf(k) == parts[p])
        kinds.push_back(k);
    if (kinds.empty())
      continue;
    out << "\n"
        << schedulePartName(parts[p]) << " part: " << r.spaceSize[p]
        << " legal schedules; ranked by the model (ms: " << kindNames(kinds) << ")\n";
    out << "  rank  predicted               measured                schedule\n";
    int rank = 0;
    for (const RankedCandidate &c : r.ranked[p]) {
      ++rank;
      const bool shown = rank <= top || c.isDefault || !std::isnan(c.measuredScore);
      if (!shown)
        continue;
      char line[96];
      std::snprintf(line, sizeof line, "  %4d  %-22s  %-22s  ", rank,
                    times(c.predictedMs, kinds).c_str(), times(c.measuredMs, kinds).c_str());
      out << line << partFields(c.schedule, parts[p]) << (c.isDefault ? "  (default)" : "") << "\n";
    }
  }
  out << "\nchosen (" << originName(r.origin) << "): " << r.schedule << "\n";
  out << "default:  " << r.defaultSchedule << "\n";
  for (KernelKind k : r.kinds) {
    const int i = kindIndex(k);
    char line[200];
    const double chosen = measured ? r.measuredMs[i] : r.predictedMs[i];
    const double base = measured ? r.defaultMeasuredMs[i] : r.defaultPredictedMs[i];
    std::snprintf(line, sizeof line, "  %-16s %s ms %s (default %s ms, %.2fx)",
                  codegen::kernelKindName(k), ms(chosen).c_str(),
                  measured ? "measured" : "predicted", ms(base).c_str(), base / chosen);
    out << line;
    if (measured)
      out << "; predicted " << ms(r.predictedMs[i]) << " ms";
    if (!std::isnan(r.kendallTau[i]))
      out << "; model Kendall tau " << ms(r.kendallTau[i]) << " over " << r.tauSamples[i]
          << " schedules";
    out << "\n";
  }
  const double chosenTotal = r.total(measured ? r.measuredMs : r.predictedMs);
  const double baseTotal = r.total(measured ? r.defaultMeasuredMs : r.defaultPredictedMs);
  char line[160];
  std::snprintf(line, sizeof line, "  %-16s %s ms (default %s ms, %.2fx)\n", "total",
                ms(chosenTotal).c_str(), ms(baseTotal).c_str(), baseTotal / chosenTotal);
  out << line;
}

} // namespace slak::autotune

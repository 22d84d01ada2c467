#include "autotune/Report.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <numeric>
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

std::vector<ModelVsMeasured> modelVsMeasured(const TuningResult &r, int top) {
  std::vector<ModelVsMeasured> out;
  for (KernelKind k : r.kinds) {
    const int p = static_cast<int>(partOf(k)), i = kindIndex(k);
    std::vector<const RankedCandidate *> list;
    for (const RankedCandidate &c : r.ranked[p])
      if (!std::isnan(c.measuredMs[i]) && !std::isnan(c.predictedMs[i]))
        list.push_back(&c);
    ModelVsMeasured m;
    m.kind = k;
    m.measured = static_cast<int>(list.size());
    if (list.empty()) {
      out.push_back(m);
      continue;
    }
    std::stable_sort(list.begin(), list.end(),
                     [&](const RankedCandidate *a, const RankedCandidate *b) {
                       return a->predictedMs[i] < b->predictedMs[i];
                     });
    auto tau = [&](size_t n) {
      std::vector<double> predicted, measured;
      for (size_t j = 0; j < n; ++j) {
        predicted.push_back(list[j]->predictedMs[i]);
        measured.push_back(list[j]->measuredMs[i]);
      }
      return n >= 2 ? kendallTau(predicted, measured) : kNoTime;
    };
    m.top = static_cast<int>(std::min<size_t>(list.size(), std::max(top, 1)));
    m.tauTop = tau(m.top);
    m.tauAll = tau(list.size());
    size_t best = 0;
    for (size_t j = 1; j < list.size(); ++j)
      if (list[j]->measuredMs[i] < list[best]->measuredMs[i])
        best = j;
    m.pickMs = list[0]->measuredMs[i];
    m.bestMs = list[best]->measuredMs[i];
    m.bestModelRank = static_cast<int>(best) + 1;
    m.pick = partFields(list[0]->schedule, partOf(k));
    m.best = partFields(list[best]->schedule, partOf(k));
    out.push_back(m);
  }
  return out;
}

void printModelVsMeasured(std::ostream &out, const TuningResult &r, int top) {
  out << "model vs measured on " << r.key.device << " (" << r.workload << "):\n";
  for (const ModelVsMeasured &m : modelVsMeasured(r, top)) {
    char line[320];
    if (m.measured == 0) {
      std::snprintf(line, sizeof line, "  %-16s nothing measured\n",
                    codegen::kernelKindName(m.kind));
      out << line;
      continue;
    }
    std::snprintf(line, sizeof line,
                  "  %-16s Kendall tau %s over the model's top %d, %s over all %d measured; "
                  "model pick %s ms, measured best %s ms (pick is %.2fx the best; the best is "
                  "the model's rank %d)\n",
                  codegen::kernelKindName(m.kind), ms(m.tauTop).c_str(), m.top,
                  ms(m.tauAll).c_str(), m.measured, ms(m.pickMs).c_str(), ms(m.bestMs).c_str(),
                  m.pickMs / m.bestMs, m.bestModelRank);
    out << line << "    pick: " << m.pick << "\n    best: " << m.best << "\n";
  }
}

} // namespace slak::autotune

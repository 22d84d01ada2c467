#include "autotune/Tuner.h"

#include <algorithm>
#include <map>
#include <numeric>
#include <set>
#include <sstream>

#include "autotune/GpuCostModel.h"
#include "autotune/Progress.h"
#include "codegen/DefaultSchedule.h"

#ifndef SLAK_VERSION
#define SLAK_VERSION "0"
#endif
#ifndef SLAK_HALIDE_VERSION
#define SLAK_HALIDE_VERSION "none"
#endif

namespace slak::autotune {
namespace {

bool isNaN(double v) { return std::isnan(v); }

std::vector<KernelKind> kindsOfPart(const std::vector<KernelKind> &kinds, SchedulePart part) {
  std::vector<KernelKind> out;
  for (KernelKind k : kinds)
    if (partOf(k) == part)
      out.push_back(k);
  return out;
}

std::string kindList(const std::vector<KernelKind> &kinds) {
  std::string s;
  for (KernelKind k : kinds)
    s += (s.empty() ? "" : ",") + std::string(codegen::kernelKindName(k));
  return s;
}

/// The emitter's code-generator tag ("lk_conv.v1") from a spec signature.
std::string emitterTag() {
  KernelSpec probe;
  probe.channels = 1;
  probe.branches.push_back(codegen::Branch::same(1, 1));
  const std::string sig = probe.signature();
  return sig.substr(0, sig.find(' '));
}

// ---------------------------------------------------------------------------
// GPU problem

class GpuTuningProblem : public TuningProblem {
public:
  GpuTuningProblem(const KernelSpec &spec, const Workload &workload, const GpuDevice &device,
                   GpuKernelTimer *timer)
      : spec_(spec), workload_(workload), device_(device), timer_(timer) {
    if (std::string err = checkWorkload(spec, workload); !err.empty())
      throw std::invalid_argument("tuneGpu: " + err);
    spec_.schedule = codegen::defaultSchedule(spec, spec.anySparse() ? workload.density : -1.0);
    if (std::string err = spec_.validate(); !err.empty())
      throw std::invalid_argument("tuneGpu: " + err);
    default_ = spec_.schedule;
    // maskedWalk decides the backward-weight kernel only when a branch
    // would otherwise walk its tap table there.
    for (const codegen::Branch &b : spec.branches)
      coupled_ = coupled_ || (!b.dense && !spec.denseWeightGrad);
  }

  KernelFamily backend() const override { return KernelFamily::Cuda; }
  TuningKey key() const override {
    return {problemSignature(spec_), device_.name, compilerVersion(KernelFamily::Cuda)};
  }
  std::string workload() const override { return workload_.str(); }

  size_t enumerate(SchedulePart part, bool needed, const ProgressCallback &progress) override {
    std::vector<GpuCandidate> &out = candidates_[static_cast<int>(part)];
    out.clear();
    KernelSpec spec = spec_;
    spec.schedule = default_;
    // The default comes first even where it does not fit this device (it is
    // then never predicted, measured or chosen).
    out.push_back(describeSchedule(spec));
    defaultFits_[static_cast<int>(part)] = checkFits(out.front(), device_).empty();
    const std::string defaultText = default_.str();
    std::vector<codegen::Schedule> bases = {default_};
    if (coupled_) {
      codegen::Schedule flipped = default_;
      flipped.maskedWalk = !flipped.maskedWalk;
      bases.push_back(flipped);
    }
    for (size_t bi = 0; bi < bases.size(); ++bi) {
      const codegen::Schedule &base = bases[bi];
      if (!needed) {
        if (bi == 0)
          continue;
        spec.schedule = base;
        try {
          GpuCandidate c = describeSchedule(spec);
          if (checkFits(c, device_).empty())
            out.push_back(c);
        } catch (const std::invalid_argument &) {
        }
        continue;
      }
      // Conv candidates already cover both maskedWalk values.
      if (part == SchedulePart::Conv && bi > 0)
        continue;
      // One bar over all bases: base bi of n fills the bi-th n-th of it.
      const size_t rounds = part == SchedulePart::Conv ? 1 : bases.size();
      ProgressCallback scaled;
      if (progress)
        scaled = [&, bi, rounds](size_t done, size_t total) {
          progress(bi * total + done, rounds * total);
        };
      auto space = gpuScheduleSpace(spec_, workload_, device_, part, base, scaled);
      for (GpuCandidate &c : space)
        if (c.schedule.str() != defaultText)
          out.push_back(std::move(c));
    }
    return out.size();
  }

  std::string text(SchedulePart part, size_t i) const override {
    return candidate(part, i).schedule.str();
  }
  std::vector<size_t> anchors(SchedulePart part) const override {
    const auto &list = candidates_[static_cast<int>(part)];
    codegen::Schedule flipped = default_;
    flipped.maskedWalk = !flipped.maskedWalk;
    std::vector<size_t> out = {0};
    for (size_t i = 1; i < list.size(); ++i)
      if (coupled_ && list[i].schedule.str() == flipped.str())
        out.push_back(i);
    return out;
  }
  int coupling(SchedulePart part, size_t i) const override {
    return coupled_ ? static_cast<int>(candidate(part, i).schedule.maskedWalk) : 0;
  }
  double predict(SchedulePart part, size_t i, KernelKind kind) override {
    if (i == 0 && !defaultFits_[static_cast<int>(part)])
      return kNoTime;
    KernelSpec spec = spec_;
    spec.schedule = candidate(part, i).schedule;
    return predictGpu(spec, workload_, device_, kind, candidate(part, i)).ms;
  }
  bool canMeasure() const override { return timer_ != nullptr; }
  Timing measure(SchedulePart part, size_t i, KernelKind kind,
                 const MeasureOptions &options) override {
    if (!timer_)
      throw MeasurementUnavailable("no GPU timer");
    KernelSpec spec = spec_;
    spec.schedule = candidate(part, i).schedule;
    return timer_->time(spec, workload_, kind, options);
  }
  std::string combine(size_t conv, size_t weight) const override {
    return combineParts(candidate(SchedulePart::Conv, conv).schedule,
                        candidate(SchedulePart::Weight, weight).schedule)
        .str();
  }

private:
  const GpuCandidate &candidate(SchedulePart part, size_t i) const {
    return candidates_[static_cast<int>(part)].at(i);
  }

  KernelSpec spec_;
  Workload workload_;
  GpuDevice device_;
  GpuKernelTimer *timer_;
  codegen::Schedule default_;
  bool coupled_ = false;
  std::array<bool, 2> defaultFits_{true, true};
  std::array<std::vector<GpuCandidate>, 2> candidates_;
};

} // namespace

const char *backendName(KernelFamily backend) {
  return backend == KernelFamily::Cuda ? "cuda" : "cpu";
}

std::string compilerVersion(KernelFamily backend) {
  std::string v = std::string("slak ") + SLAK_VERSION + " " + backendName(backend);
  if (backend == KernelFamily::Cpu)
    v += std::string(" halide-") + SLAK_HALIDE_VERSION;
  return v + " " + emitterTag();
}

double TuningResult::total(const KindTimes &times) const {
  double sum = 0;
  for (KernelKind k : kinds)
    sum += times[kindIndex(k)];
  return sum;
}

StoredChoice TuningResult::choice() const {
  StoredChoice c;
  c.key = key;
  c.backend = backendName(backend);
  c.schedule = schedule;
  c.origin = origin;
  c.kinds = kindList(kinds);
  c.workload = workload;
  auto opt = [](double v) { return isNaN(v) ? std::nullopt : std::optional<double>(v); };
  c.predictedMs = opt(total(predictedMs));
  c.measuredMs = opt(total(measuredMs));
  c.defaultPredictedMs = opt(total(defaultPredictedMs));
  c.defaultMeasuredMs = opt(total(defaultMeasuredMs));
  return c;
}

TuningResult search(TuningProblem &problem, const TuneOptions &options) {
  if (options.kinds.empty())
    throw std::invalid_argument("search: no kernel kind to tune");
  TuningResult result;
  result.backend = problem.backend();
  result.key = problem.key();
  result.workload = problem.workload();
  result.kinds = options.kinds;
  std::sort(result.kinds.begin(), result.kinds.end(),
            [](KernelKind a, KernelKind b) { return kindIndex(a) < kindIndex(b); });
  result.kinds.erase(std::unique(result.kinds.begin(), result.kinds.end()), result.kinds.end());

  const SchedulePart parts[2] = {SchedulePart::Conv, SchedulePart::Weight};
  std::array<std::vector<KernelKind>, 2> partKinds;
  std::array<size_t, 2> count{};
  for (int p = 0; p < 2; ++p) {
    partKinds[p] = kindsOfPart(result.kinds, parts[p]);
    const bool needed = !partKinds[p].empty();
    std::unique_ptr<ProgressBar> bar;
    ProgressCallback cb;
    if (needed && options.progress)
      cb = [&](size_t done, size_t total) {
        if (!bar)
          bar = std::make_unique<ProgressBar>(
              options.progress, std::string(schedulePartName(parts[p])) + " space", total);
        bar->update(done);
      };
    count[p] = problem.enumerate(parts[p], needed, cb);
    if (bar)
      bar->finish();
    if (count[p] == 0)
      throw std::runtime_error(std::string("the ") + schedulePartName(parts[p]) +
                               " schedule space of " + result.key.signature + " on " +
                               result.key.device + " is empty: no legal schedule");
  }

  // Predict every candidate.
  std::array<std::vector<RankedCandidate>, 2> all;
  for (int p = 0; p < 2; ++p) {
    all[p].resize(count[p]);
    for (size_t i = 0; i < count[p]; ++i) {
      RankedCandidate &c = all[p][i];
      c.coupling = problem.coupling(parts[p], i);
      c.isDefault = i == 0;
      for (KernelKind k : partKinds[p]) {
        c.predictedMs[kindIndex(k)] = problem.predict(parts[p], i, k);
        c.predictedScore += c.predictedMs[kindIndex(k)];
      }
      if (partKinds[p].empty())
        c.measuredScore = 0;
    }
  }
  std::set<int> couplings;
  for (int p = 0; p < 2; ++p)
    for (const RankedCandidate &c : all[p])
      couplings.insert(c.coupling);

  // Best combination by a per-candidate score; NaN scores are skipped.
  auto pick = [&](bool measured, size_t &bestConv, size_t &bestWeight) {
    double best = kNoTime;
    for (int key : couplings) {
      size_t idx[2] = {SIZE_MAX, SIZE_MAX};
      for (int p = 0; p < 2; ++p) {
        double bestScore = kNoTime;
        for (size_t i = 0; i < count[p]; ++i) {
          const RankedCandidate &c = all[p][i];
          const double s = measured ? c.measuredScore : c.predictedScore;
          if (c.coupling != key || isNaN(s))
            continue;
          if (isNaN(bestScore) || s < bestScore) {
            bestScore = s;
            idx[p] = i;
          }
        }
      }
      if (idx[0] == SIZE_MAX || idx[1] == SIZE_MAX)
        continue;
      const double total =
          (measured ? all[0][idx[0]].measuredScore : all[0][idx[0]].predictedScore) +
          (measured ? all[1][idx[1]].measuredScore : all[1][idx[1]].predictedScore);
      if (isNaN(best) || total < best) {
        best = total;
        bestConv = idx[0];
        bestWeight = idx[1];
      }
    }
    return !isNaN(best);
  };

  // Model ranking per part.
  std::array<std::vector<size_t>, 2> order;
  for (int p = 0; p < 2; ++p) {
    order[p].resize(count[p]);
    std::iota(order[p].begin(), order[p].end(), 0);
    auto key = [&](size_t i) {
      const double s = all[p][i].predictedScore;
      return isNaN(s) ? std::numeric_limits<double>::infinity() : s;
    };
    std::stable_sort(order[p].begin(), order[p].end(),
                     [&](size_t a, size_t b) { return key(a) < key(b); });
    // Drop what cannot run on this device.
    while (!order[p].empty() && isNaN(all[p][order[p].back()].predictedScore))
      order[p].pop_back();
    if (order[p].empty())
      throw std::runtime_error(std::string("the ") + schedulePartName(parts[p]) +
                               " schedule space of " + result.key.signature + " on " +
                               result.key.device +
                               " is empty: no schedule fits the device's limits");
  }

  for (int p = 0; p < 2; ++p)
    result.spaceSize[p] = partKinds[p].empty() ? 0 : order[p].size();

  size_t conv = 0, weight = 0;
  pick(false, conv, weight);
  result.origin = ScheduleOrigin::Model;

  if (options.measure) {
    if (!problem.canMeasure())
      throw MeasurementUnavailable("cannot measure on " + result.key.device +
                                   ": no timer for this device");
    std::array<std::vector<size_t>, 2> chosen, evaluation;
    size_t work = 0;
    for (int p = 0; p < 2; ++p) {
      if (partKinds[p].empty())
        continue;
      std::set<size_t> set;
      if (order[p].size() <= static_cast<size_t>(options.exhaustiveLimit)) {
        set.insert(order[p].begin(), order[p].end());
      } else {
        for (size_t r = 0; r < order[p].size() && r < static_cast<size_t>(options.measureTop); ++r)
          set.insert(order[p][r]);
        for (size_t a : problem.anchors(parts[p]))
          if (a < count[p] && !isNaN(all[p][a].predictedScore))
            set.insert(a);
        for (int key : couplings) {
          int taken = 0;
          for (size_t i : order[p])
            if (all[p][i].coupling == key && taken < 2) {
              set.insert(i);
              ++taken;
            }
        }
      }
      if (options.evaluateModel > 1) {
        const size_t n = order[p].size();
        const size_t e = std::min<size_t>(options.evaluateModel, n);
        for (size_t j = 0; j < e; ++j) {
          const size_t r = e == 1 ? 0 : j * (n - 1) / (e - 1);
          evaluation[p].push_back(order[p][r]);
          set.insert(order[p][r]);
        }
      }
      chosen[p].assign(set.begin(), set.end());
      work += chosen[p].size() * partKinds[p].size();
    }
    ProgressBar bar(options.progress, "measure", work);
    size_t done = 0;
    for (int p = 0; p < 2; ++p) {
      for (size_t i : chosen[p]) {
        RankedCandidate &c = all[p][i];
        double score = 0;
        const std::string text = problem.text(parts[p], i);
        for (KernelKind k : partKinds[p]) {
          bar.update(done, std::string(codegen::kernelKindName(k)) + " " + text);
          MeasurementRecord m;
          m.key = result.key;
          m.backend = backendName(result.backend);
          m.kind = codegen::kernelKindName(k);
          m.schedule = text;
          m.workload = result.workload;
          m.predictedMs = c.predictedMs[kindIndex(k)];
          try {
            const Timing t = problem.measure(parts[p], i, k, options.measureOptions);
            c.measuredMs[kindIndex(k)] = t.medianMs;
            m.measuredMs = t.medianMs;
            m.samplesMs = t.samplesMs;
            score += t.medianMs;
            result.measurements.push_back(std::move(m));
          } catch (const MeasurementUnavailable &) {
            throw;
          } catch (const std::exception &e) {
            bar.message(std::string("skipping ") + text + " (" + codegen::kernelKindName(k) +
                        "): " + e.what());
            score = kNoTime;
          }
          ++done;
        }
        c.measuredScore = score;
      }
    }
    bar.finish();
    size_t mc = 0, mw = 0;
    if (pick(true, mc, mw)) {
      conv = mc;
      weight = mw;
      result.origin = ScheduleOrigin::Measured;
    }
    // Kendall's tau of predicted against measured, per kind.
    for (int p = 0; p < 2; ++p)
      for (KernelKind k : partKinds[p]) {
        std::vector<double> predicted, measured;
        const std::vector<size_t> &set = evaluation[p].empty() ? chosen[p] : evaluation[p];
        for (size_t i : set) {
          const RankedCandidate &c = all[p][i];
          if (!isNaN(c.measuredMs[kindIndex(k)])) {
            predicted.push_back(c.predictedMs[kindIndex(k)]);
            measured.push_back(c.measuredMs[kindIndex(k)]);
          }
        }
        result.tauSamples[kindIndex(k)] = static_cast<int>(predicted.size());
        if (predicted.size() >= 2)
          result.kendallTau[kindIndex(k)] = kendallTau(predicted, measured);
      }
  }

  result.schedule = problem.combine(conv, weight);
  result.defaultSchedule = problem.combine(0, 0);
  for (KernelKind k : result.kinds) {
    const int p = static_cast<int>(partOf(k));
    const size_t chosenIndex = p == 0 ? conv : weight;
    result.predictedMs[kindIndex(k)] = all[p][chosenIndex].predictedMs[kindIndex(k)];
    result.measuredMs[kindIndex(k)] = all[p][chosenIndex].measuredMs[kindIndex(k)];
    result.defaultPredictedMs[kindIndex(k)] = all[p][0].predictedMs[kindIndex(k)];
    result.defaultMeasuredMs[kindIndex(k)] = all[p][0].measuredMs[kindIndex(k)];
  }

  // Ranked lists for reports: the model's best, plus every measured one.
  for (int p = 0; p < 2; ++p) {
    if (partKinds[p].empty())
      continue;
    for (size_t r = 0; r < order[p].size(); ++r) {
      const size_t i = order[p][r];
      const RankedCandidate &c = all[p][i];
      if (r < static_cast<size_t>(options.keepRanked) || c.isDefault || !isNaN(c.measuredScore)) {
        RankedCandidate copy = c;
        copy.schedule = problem.text(parts[p], i);
        result.ranked[p].push_back(std::move(copy));
      }
    }
  }
  // Model-only runs keep the model's top candidates as (unmeasured) records.
  if (!options.measure)
    for (int p = 0; p < 2; ++p)
      for (const RankedCandidate &c : result.ranked[p])
        for (KernelKind k : partKinds[p]) {
          MeasurementRecord m;
          m.key = result.key;
          m.backend = backendName(result.backend);
          m.kind = codegen::kernelKindName(k);
          m.schedule = c.schedule;
          m.workload = result.workload;
          m.predictedMs = c.predictedMs[kindIndex(k)];
          result.measurements.push_back(std::move(m));
        }
  return result;
}

TuningResult tuneGpu(const KernelSpec &spec, const Workload &workload, const GpuDevice &device,
                     const TuneOptions &options, GpuKernelTimer *timer) {
  GpuDevice target = device;
  if (timer)
    target = timer->device();
  GpuTuningProblem problem(spec, workload, target, timer);
  TuneOptions o = options;
  o.measure = timer != nullptr;
  return search(problem, o);
}

bool recordResult(TuningDatabase &db, const TuningResult &result, bool replaceMeasured) {
  return db.record(result.measurements, result.choice(), replaceMeasured);
}

} // namespace slak::autotune

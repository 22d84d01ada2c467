// slak-autotune: chooses schedules for SLaK large-kernel layers and stores
// them in the tuning database that the compiler pass and the runtime read.
//
//   slak-autotune --gpu a100 --layer channels=124,size=56,branches=51x5+5x51+5x5,density=0.6
//   slak-autotune --gpu local --layer ...      measure on this machine's GPU
//   slak-autotune --cpu --layer ...            measure the CPU (Halide) backend
//   slak-autotune --gpu h100 --slak-t          the four SLaK-T stage layers
//   slak-autotune --gpu a100 model.mlir -o tuned.mlir --db tuning.db
//                                              every slak.lk_conv of a model
//
// All logic lives in autotune/ (LayerTuner, Report, TuningDatabase) and, for
// the model form, in ModelFile (an MLIR target behind an MLIR-free header);
// this file only maps flags to them. Progress goes to stderr, reports to
// stdout (stderr when the tuned module goes to stdout).
#include <CLI/CLI.hpp>

#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <memory>
#include <optional>

#include "autotune/Device.h"
#include "autotune/LayerTuner.h"
#include "autotune/Lookup.h"
#include "autotune/Progress.h"
#include "autotune/Report.h"
#include "autotune/TuningDatabase.h"
#include "autotune/Workload.h"
#include "runtime/cuda/CudaKernelTimer.h"

#ifdef SLAK_AUTOTUNE_WITH_MLIR
#include "tools/slak-autotune/ModelFile.h"
#endif

using namespace slak::autotune;

namespace {

void listGpus() {
  std::printf("%-10s %-18s %4s %4s %6s %8s %8s %6s %7s %7s  %s\n", "name", "part", "sm", "SMs",
              "GHz", "FP32 TF", "DRAM GB/s", "L2 MB", "smem/SM", "thr/SM", "sources");
  for (const GpuDevice &d : gpuTable())
    std::printf("%-10s %-18s %4d %4d %6.3f %8.1f %8.0f %6lld %6lldK %7d  %s\n", d.name.c_str(),
                d.marketingName.c_str(), d.computeCapability, d.sms, d.boostClockGHz, d.fp32Tflops,
                d.memoryGBs, static_cast<long long>(d.l2Bytes >> 20),
                static_cast<long long>(d.sharedPerSm >> 10), d.maxThreadsPerSm, d.sources.c_str());
}

#ifndef SLAK_AUTOTUNE_WITH_MLIR
/// Without MLIR the model form cannot read its input; say so and how to
/// get it (or what works without it).
[[noreturn]] void noModelForm(const std::string &model) {
  std::cerr << "slak-autotune: tuning a model file (" << model
            << ") needs MLIR, and this build has none (configured with SLAK_WITH_MLIR=OFF or "
               "without libmlir-22-dev). Reconfigure with -DSLAK_WITH_MLIR=ON (apt-get install "
               "libmlir-22-dev mlir-22-tools llvm-22-dev), or tune layers without a model: "
               "--layer channels=...,size=... or --slak-t\n";
  std::exit(2);
}
#endif

} // namespace

int main(int argc, char **argv) {
  CLI::App app{"slak-autotune: tune the schedules of SLaK large-kernel depthwise layers for a "
               "GPU (cost model, or measured on the local GPU) or for this CPU (measured), and "
               "store them in the tuning database shared with slak-opt and the runtime."};
  app.footer("Examples:\n"
             "  slak-autotune --gpu a100 --layer "
             "channels=124,size=56,branches=51x5+5x51+5x5,density=0.6,batch=8 --db tuning.db\n"
             "  slak-autotune --gpu h100 --slak-t\n"
             "  slak-autotune --cpu --layer channels=124,size=56,density=0.6 --evaluate-model 32\n"
             "Reports go to stdout, progress to stderr. The runtime's JIT reads the same database "
             "($SLAK_TUNING_DB).");

  std::string gpu, layer, kinds, dbPath, model, output, mode = "infer";
  bool cpu = false, slakT = false, noDb = false, modelOnly = false, replace = false;
  bool quiet = false, list = false;
  int top = 10, measureTop = 8, exhaustive = 16, evaluate = 0, threads = 0;
  int repeats = 5, warmup = 1;
  double density = 0.6;
  int64_t batch = 8;

  auto *gpuOpt = app.add_option("--gpu", gpu,
                                "GPU to tune for: one of " + knownGpuNames() +
                                    " (model only: ranks every legal schedule with the "
                                    "analytic cost model), or 'local' to measure on this "
                                    "machine's GPU");
  auto *cpuOpt = app.add_flag("--cpu", cpu,
                              "Tune the CPU (Halide) backend of this machine, measuring the "
                              "model's best candidates for real");
  gpuOpt->excludes(cpuOpt);
  auto *modelOpt = app.add_option(
      "model", model,
      "An MLIR model (slak dialect) to tune: every slak.lk_conv is tuned (forward only with "
      "--mode infer, forward and both backwards with --mode train), the picks stored in the "
      "database; for a GPU they are attached to the ops (#slak.schedule) in the module written "
      "to -o (CPU schedules stay in the database, where the runtime on this host reads them). "
      "slak.dwconv2d / slak.batch_norm ops are fused and specialised first (slak-pipeline "
      "mode=<--mode>)");
  app.add_option("-o,--output", output,
                 "Where the model form writes the tuned module (atomically; '-' = stdout)");
  app.add_option("--mode", mode,
                 "Model form: how unfused models are fused and which kernels are tuned: infer "
                 "(default; BN folded, forward) or train (per-branch BN, all three kernels)")
      ->check(CLI::IsMember({"train", "infer"}));
  bool modelVsMeasured = false;
  app.add_flag("--report-model-vs-measured", modelVsMeasured,
               "With a measuring target (--gpu local, --cpu): measure at least the model's top "
               "10 per part (plus the anchors; --evaluate-model N adds N spread over the "
               "ranking) and print per kernel the model's Kendall tau over its top 10 and over "
               "all measured, and how far its pick is from the measured best");
  auto *layerOpt = app.add_option(
      "--layer", layer,
      "One layer: channels=C[,size=S | height=H,width=W][,branches=51x5+5x51+5x5]"
      "[,density=D][,batch=N][,mode=train|infer][,outputs=sum|branches][,bias=0|1]"
      "[,dtype=f32|f16|bf16][,dynamic=0|1]. density < 1 makes every branch sparse; mode=train "
      "(default) tunes forward, backward-data and backward-weight with one output per branch, "
      "mode=infer the forward with a summed output and bias");
  auto *slakOpt = app.add_flag("--slak-t", slakT,
                               "Tune the four SLaK-T stage layers (C=124/249/499/998 at "
                               "56/28/14/7, M=51/49/47/13, N=5) with --density and --batch");
  layerOpt->excludes(slakOpt);
  modelOpt->excludes(layerOpt);
  modelOpt->excludes(slakOpt);
  app.add_option("--density", density, "Mask density of the --slak-t layers (default 0.6)")
      ->check(CLI::Range(0.01, 1.0));
  app.add_option("--batch", batch, "Batch of the --slak-t layers (default 8)")
      ->check(CLI::PositiveNumber);
  app.add_option("--kinds", kinds,
                 "Kernels to tune: a comma list of forward, backward-data, backward-weight, or "
                 "'all' / 'infer' (default: from the layer's mode)");
  app.add_option("--db", dbPath,
                 "Tuning database (SQLite; created when missing). Default: $SLAK_TUNING_DB, "
                 "else ~/.cache/slak/tuning.db");
  app.add_flag("--no-db", noDb, "Neither read nor write a tuning database");
  app.add_flag("--replace", replace,
               "Let a model-only pick replace a measured schedule already in the database");
  app.add_option("--top", top, "Ranked candidates printed per schedule part (default 10)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--measure-top", measureTop,
                 "Model-ranked candidates measured per part, besides the default, its variants "
                 "in the coupled fields and the two best of each coupling (default 8)")
      ->check(CLI::PositiveNumber);
  app.add_option("--exhaustive-limit", exhaustive,
                 "Measure every candidate of a part with at most this many (default 16)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--evaluate-model", evaluate,
                 "Also measure N candidates spread evenly over the model's ranking and print "
                 "the model's Kendall tau per kernel (0 = off)")
      ->check(CLI::NonNegativeNumber);
  app.add_flag("--model-only", modelOnly,
               "With --cpu: rank with the cost model, measure nothing (the pick is stored for "
               "reference; the runtime uses measured CPU picks only)");
  app.add_option("--repeats", repeats, "Timed runs per measurement; the median counts (default 5)")
      ->check(CLI::PositiveNumber);
  app.add_option("--warmup", warmup, "Untimed runs before each measurement (default 1)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--threads", threads, "CPU worker threads (default: every core)")
      ->check(CLI::NonNegativeNumber);
  std::string clock = "wall";
  app.add_option("--clock", clock,
                 "What a CPU measurement reads: 'wall' (elapsed time, default) or 'cpu' (this "
                 "process's CPU time: steadier on a machine shared with other jobs; use with "
                 "--threads 1)")
      ->check(CLI::IsMember({"wall", "cpu"}));
  int verify = 0;
  app.add_option("--verify", verify,
                 "After a measured tuning, time the default and the chosen schedule "
                 "alternately N more times per kernel and print the medians (a check that "
                 "holds up under load from other jobs)")
      ->check(CLI::NonNegativeNumber);
  std::vector<std::string> compareSchedules;
  app.add_option("--compare", compareSchedules,
                 "Instead of tuning: time the default schedule and each given one (schedule "
                 "text as the reports print it, quoted; repeatable) round-robin --verify N "
                 "times (default 7) per kernel on a measuring target, and print the medians")
      ->take_all();
  app.add_flag("--quiet", quiet, "No progress bar on stderr");
  app.add_flag("--list-gpus", list,
               "Print the GPU table (with the sources of its numbers) and exit");

  CLI11_PARSE(app, argc, argv);
  slak::runtime::registerCudaKernelTimer();
  if (list) {
    listGpus();
    return 0;
  }
  if (gpu.empty() && !cpu) {
    std::cerr << "slak-autotune: say what to tune for: --gpu <" << knownGpuNames()
              << "|local> or --cpu (see --help)\n";
    return 2;
  }
  if (layer.empty() && !slakT && model.empty()) {
    std::cerr << "slak-autotune: say what to tune: a model file (model.mlir -o tuned.mlir), "
                 "--layer channels=...,size=... or --slak-t (see --help)\n";
    return 2;
  }
  if (!model.empty()) {
#ifndef SLAK_AUTOTUNE_WITH_MLIR
    noModelForm(model);
#endif
    if (output.empty()) {
      std::cerr << "slak-autotune: the model form writes the tuned module: add -o tuned.mlir "
                   "(or -o - for stdout)\n";
      return 2;
    }
    if (noDb) {
      std::cerr << "slak-autotune: the model form attaches its picks through the tuning "
                   "database: drop --no-db (and name a file with --db FILE if the default "
                   "should stay untouched)\n";
      return 2;
    }
  } else if (!output.empty()) {
    std::cerr << "slak-autotune: -o is for the model form (a model file to tune); --layer and "
                 "--slak-t store their picks in the database only\n";
    return 2;
  }
  if (modelVsMeasured && !cpu && gpu != "local") {
    std::cerr << "slak-autotune: --report-model-vs-measured compares with measurements: use it "
                 "with --gpu local or --cpu, not the model-only --gpu "
              << gpu << "\n";
    return 2;
  }
  std::ostream &report = output == "-" ? std::cerr : std::cout;

  try {
    std::vector<LayerDescription> layers;
#ifdef SLAK_AUTOTUNE_WITH_MLIR
    std::unique_ptr<ModelFile> modelFile;
    if (!model.empty()) {
      std::string error;
      modelFile = ModelFile::load(model, &error);
      if (!modelFile) {
        std::cerr << "slak-autotune: " << error << "\n";
        return 1;
      }
      if (const int unfused = modelFile->unfusedOps(); unfused > 0) {
        if (!quiet)
          std::cerr << "slak-autotune: " << model << " still holds " << unfused
                    << " slak.dwconv2d / slak.batch_norm op(s): running slak-pipeline mode=" << mode
                    << " (fuse, canonicalise, specialise sparsity) first\n";
        if (!modelFile->prepare(mode, &error)) {
          std::cerr << "slak-autotune: fusing " << model << " failed:\n" << error;
          return 1;
        }
      }
      std::vector<ModelLayer> found;
      if (!modelFile->layers(found, &error)) {
        std::cerr << "slak-autotune: " << error;
        return 1;
      }
      if (found.empty()) {
        std::cerr << "slak-autotune: " << model
                  << " has no slak.lk_conv to tune (and no slak.dwconv2d branches to fuse into "
                     "one)\n";
        return 1;
      }
      for (ModelLayer &m : found) {
        LayerDescription l;
        l.spec = m.spec;
        l.workload = m.workload;
        l.kinds = mode == "train" ? std::vector<KernelKind>(kTunedKinds.begin(), kTunedKinds.end())
                                  : std::vector<KernelKind>{KernelKind::Forward};
        l.text = m.name + " (" + m.description + ")";
        layers.push_back(std::move(l));
      }
    }
#endif
    if (slakT)
      layers = slakTinyLayers(density, true, batch);
    else if (!layer.empty())
      layers.push_back(parseLayer(layer));

    const TuneTarget target =
        cpu ? TuneTarget::cpu(!modelOnly, threads) : TuneTarget::fromGpuName(gpu);
    LayerTuner tuner(target);

    std::unique_ptr<TuningDatabase> db;
    if (!noDb) {
      if (dbPath.empty())
        dbPath = defaultDatabasePath();
      db = std::make_unique<TuningDatabase>(dbPath);
    }

    TuneOptions options;
    options.measureTop = measureTop;
    options.exhaustiveLimit = exhaustive;
    options.evaluateModel = evaluate;
    options.keepRanked = std::max(top, 1);
    if (modelVsMeasured) {
      options.measureTop = std::max(options.measureTop, 10);
      options.keepRanked = std::max(options.keepRanked, 10);
    }
    options.measureOptions.repeats = repeats;
    options.measureOptions.warmup = warmup;
    options.measureOptions.threads = threads;
    options.measureOptions.clock =
        clock == "cpu" ? MeasureOptions::Clock::ProcessCpu : MeasureOptions::Clock::Wall;
    options.progress = quiet ? nullptr : &std::cerr;

    // Several layers: one bar over them (with an ETA) besides each search's own.
    std::unique_ptr<ProgressBar> layerBar;
    if (options.progress && layers.size() > 1)
      layerBar = std::make_unique<ProgressBar>(options.progress, "layers", layers.size());
    for (size_t i = 0; i < layers.size() && !compareSchedules.empty(); ++i) {
      const LayerDescription &l = layers[i];
      const std::vector<KernelKind> ks = kinds.empty() ? l.kinds : parseKernelKinds(kinds);
      std::vector<std::string> texts = {tuner.defaultSchedule(l.spec, l.workload)};
      texts.insert(texts.end(), compareSchedules.begin(), compareSchedules.end());
      const int rounds = verify > 0 ? verify : 7;
      const std::vector<KindTimes> t =
          tuner.compare(l.spec, l.workload, ks, texts, rounds, options.measureOptions);
      report << "compare on " << tuner.device() << ", " << l.text << " (" << rounds
             << " round-robin runs, medians, ms):\n";
      for (size_t s = 0; s < texts.size(); ++s) {
        double total = 0, base = 0;
        report << (s == 0 ? "  default " : "  ") << texts[s] << "\n   ";
        for (KernelKind k : ks) {
          char line[96];
          std::snprintf(line, sizeof line, " %s %.3f (%.2fx)", slak::codegen::kernelKindName(k),
                        t[s][kindIndex(k)], t[0][kindIndex(k)] / t[s][kindIndex(k)]);
          report << line;
          total += t[s][kindIndex(k)];
          base += t[0][kindIndex(k)];
        }
        char line[64];
        std::snprintf(line, sizeof line, "; total %.3f (%.2fx)\n", total, base / total);
        report << line;
      }
    }
    if (!compareSchedules.empty())
      return 0;
    for (size_t i = 0; i < layers.size(); ++i) {
      const LayerDescription &l = layers[i];
      options.kinds = kinds.empty() ? l.kinds : parseKernelKinds(kinds);
      if (layerBar)
        layerBar->update(i, l.text);
      if (options.progress)
        std::cerr << "tuning " << l.text << " for " << tuner.device() << "\n";
      const TuningResult result = tuner.tune(l.spec, l.workload, options);
      if (i > 0)
        report << "\n";
      if (!model.empty())
        report << "op:       " << l.text << "\n";
      printReport(report, result, top);
      if (modelVsMeasured)
        printModelVsMeasured(report, result, 10);
      if (verify > 0 && result.origin == ScheduleOrigin::Measured) {
        const auto v = tuner.verify(l.spec, l.workload, result, verify, options.measureOptions);
        report << "verify (" << v.rounds << " alternating runs, medians):\n";
        for (KernelKind k : result.kinds) {
          const int i = kindIndex(k);
          char line[160];
          std::snprintf(line, sizeof line, "  %-16s default %.3f ms, chosen %.3f ms (%.2fx)\n",
                        slak::codegen::kernelKindName(k), v.defaultMs[i], v.chosenMs[i],
                        v.defaultMs[i] / v.chosenMs[i]);
          report << line;
        }
        report.flush();
      }
      if (db) {
        const bool stored = recordResult(*db, result, replace);
        // Flushed: the line says the layer's rows are committed, even when
        // the process is killed right after.
        report << (stored ? "stored in " : "kept the measured schedule already in ") << db->path()
               << " (" << result.measurements.size() << " records)" << std::endl;
        if (stored && cpu && result.origin == ScheduleOrigin::Model)
          report << "note: the runtime uses measured CPU picks only; this model-only pick is "
                    "kept for reference (run without --model-only to measure)"
                 << std::endl;
      }
    }
    if (layerBar)
      layerBar->finish();

#ifdef SLAK_AUTOTUNE_WITH_MLIR
    if (modelFile) {
      // For a GPU the same pass slak-opt runs attaches what the database now
      // holds. CPU schedules stay in the database: the runtime of the host
      // that runs the model reads them there (they depend on its CPU).
      std::string error;
      db.reset(); // the pass opens the file itself
      if (!cpu && !modelFile->applySchedules(tuner.device(), dbPath, &error)) {
        std::cerr << "slak-autotune: attaching the schedules failed:\n" << error;
        return 1;
      }
      if (!modelFile->write(output, &error)) {
        std::cerr << "slak-autotune: " << error << "\n";
        return 1;
      }
      const std::string written =
          output == "-" ? std::string("the tuned module to stdout") : output;
      if (cpu) {
        report << "\nwrote " << written << ": " << layers.size()
               << " slak.lk_conv op(s); their CPU schedules for " << tuner.device()
               << (noDb ? std::string(" were not stored (--no-db)")
                        : " are in " + dbPath + ", where the runtime on this host reads them")
               << "\n";
      } else {
        const std::vector<std::string> attached = modelFile->attachedSchedules();
        report << "\nwrote " << written << ": " << attached.size()
               << " slak.lk_conv op(s) scheduled for " << tuner.device() << "\n";
        for (size_t i = 0; i < attached.size(); ++i)
          report << "  " << (i < layers.size() ? layers[i].text : "?") << ": " << attached[i]
                 << "\n";
      }
    }
#endif
  } catch (const std::exception &e) {
    std::cerr << "slak-autotune: " << e.what() << "\n";
    return 1;
  }
  return 0;
}

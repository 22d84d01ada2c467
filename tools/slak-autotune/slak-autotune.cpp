// slak-autotune: chooses schedules for SLaK large-kernel layers and stores
// them in the tuning database that the compiler pass and the runtime read.
//
//   slak-autotune --gpu a100 --layer channels=124,size=56,branches=51x5+5x51+5x5,density=0.6
//   slak-autotune --gpu local --layer ...      measure on this machine's GPU
//   slak-autotune --cpu --layer ...            measure the CPU (Halide) backend
//   slak-autotune --gpu h100 --slak-t          the four SLaK-T stage layers
//
// All logic lives in autotune/ (LayerTuner, Report, TuningDatabase); this
// file only maps flags to it. Progress goes to stderr, reports to stdout.
#include <CLI/CLI.hpp>

#include <cstdio>
#include <iostream>
#include <memory>
#include <optional>

#include "autotune/Device.h"
#include "autotune/LayerTuner.h"
#include "autotune/Lookup.h"
#include "autotune/Report.h"
#include "autotune/TuningDatabase.h"
#include "autotune/Workload.h"

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

  std::string gpu, layer, kinds, dbPath;
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
  app.add_flag("--model-only", modelOnly, "With --cpu: rank with the cost model, measure nothing");
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
  app.add_flag("--quiet", quiet, "No progress bar on stderr");
  app.add_flag("--list-gpus", list,
               "Print the GPU table (with the sources of its numbers) and exit");

  CLI11_PARSE(app, argc, argv);
  if (list) {
    listGpus();
    return 0;
  }
  if (gpu.empty() && !cpu) {
    std::cerr << "slak-autotune: say what to tune for: --gpu <" << knownGpuNames()
              << "|local> or --cpu (see --help)\n";
    return 2;
  }
  if (layer.empty() && !slakT) {
    std::cerr << "slak-autotune: say which layer: --layer channels=...,size=... or --slak-t "
                 "(see --help)\n";
    return 2;
  }

  try {
    std::vector<LayerDescription> layers;
    if (slakT)
      layers = slakTinyLayers(density, true, batch);
    else
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
    options.measureOptions.repeats = repeats;
    options.measureOptions.warmup = warmup;
    options.measureOptions.threads = threads;
    options.measureOptions.clock =
        clock == "cpu" ? MeasureOptions::Clock::ProcessCpu : MeasureOptions::Clock::Wall;
    options.progress = quiet ? nullptr : &std::cerr;

    for (size_t i = 0; i < layers.size(); ++i) {
      const LayerDescription &l = layers[i];
      options.kinds = kinds.empty() ? l.kinds : parseKernelKinds(kinds);
      if (options.progress)
        std::cerr << "tuning " << l.text << " for " << tuner.device() << "\n";
      const TuningResult result = tuner.tune(l.spec, l.workload, options);
      if (i > 0)
        std::cout << "\n";
      printReport(std::cout, result, top);
      if (verify > 0 && result.origin == ScheduleOrigin::Measured) {
        const auto v = tuner.verify(l.spec, l.workload, result, verify, options.measureOptions);
        std::cout << "verify (" << v.rounds << " alternating runs, medians):\n";
        for (KernelKind k : result.kinds) {
          const int i = kindIndex(k);
          std::printf("  %-16s default %.3f ms, chosen %.3f ms (%.2fx)\n",
                      slak::codegen::kernelKindName(k), v.defaultMs[i], v.chosenMs[i],
                      v.defaultMs[i] / v.chosenMs[i]);
        }
        std::fflush(stdout);
      }
      if (db) {
        const bool stored = recordResult(*db, result, replace);
        std::cout << (stored ? "stored in " : "kept the measured schedule already in ")
                  << db->path() << " (" << result.measurements.size() << " records)\n";
      }
    }
  } catch (const std::exception &e) {
    std::cerr << "slak-autotune: " << e.what() << "\n";
    return 1;
  }
  return 0;
}

// slak-density-bench: where sparsity starts to pay. For one layer (default:
// SLaK's 51x5 + 5x51 strips at 32 channels on a 56x56 map, batch 2) and a
// sweep of mask densities, it times the generated kernels (the OpenCL text,
// on the OpenCL device at hand: PoCL on the CPU in CI) in three forms:
//   dense   the mask folded into zero weights, every window position walked
//           (what `--slak-specialize-sparsity` emits above its threshold);
//   table   the tap-table walk: only live taps, no register reuse across rows;
//   masked  the window walk over a weight copy with zeros at dead taps
//           (schedule.maskedWalk; FMAs of dead taps skipped, loads not).
// Forward, backward-data and backward-weight are timed separately (median of
// --repeats, the three forms interleaved in every round so that a busy
// machine slows them alike), the fastest form per density is marked and the
// table-vs-dense crossover density is interpolated for each pass. This is the
// measurement behind passes/Passes.h's kDefaultDensityThreshold and
// DefaultSchedule's masked-walk switch.
//
//   slak-density-bench [--channels 32] [--size 56] [--batch 2] [--m 51] [--n 5]
//                      [--densities 0.1,0.2,...] [--repeats 9] [--passes fwd,bwd-data,bwd-weight]
//                      [--markdown FILE] [--json FILE]
#include "bench/BenchArgs.h"
#include "codegen/DefaultSchedule.h"
#include "codegen/KernelEmitter.h"
#include "codegen/TapTable.h"
#include "runtime/opencl/LkConvExecutor.h"
#include "runtime/opencl/OpenCLContext.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <iostream>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace {

using slak::bench::ArgWalker;
using slak::bench::splitCommas;

using slak::codegen::Branch;
using slak::codegen::BranchMask;
using slak::codegen::EmittedKernels;
using slak::codegen::KernelSpec;
using slak::codegen::TapTable;
using slak::runtime::opencl::Context;
using slak::runtime::opencl::LkConvExecutor;
using Clock = std::chrono::steady_clock;

struct Options {
  int channels = 32;
  int size = 56;
  int batch = 2;
  int m = 51;
  int n = 5;
  std::vector<double> densities = {0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0};
  int repeats = 9;
  std::vector<std::string> passes = {"fwd", "bwd-data", "bwd-weight"};
  std::string markdown, json;
};

const char *kUsage =
    "usage: slak-density-bench [--channels C] [--size S] [--batch N] [--m M] [--n N]\n"
    "                          [--densities D1,D2,...] [--repeats R]\n"
    "                          [--passes fwd,bwd-data,bwd-weight] [--markdown FILE] [--json FILE]\n"
    "Times the generated OpenCL kernels of an M x N + N x M depthwise layer with random\n"
    "masks of each density in three forms (dense walk of zeroed weights, tap-table walk,\n"
    "masked window walk) and reports where the table walk stops paying.\n";

[[noreturn]] void usage(const std::string &error) {
  if (!error.empty())
    std::cerr << "slak-density-bench: " << error << "\n";
  std::cerr << kUsage;
  std::exit(error.empty() ? 0 : 2);
}

int parsePositive(const std::string &flag, const std::string &text) {
  char *end = nullptr;
  const long v = std::strtol(text.c_str(), &end, 10);
  if (text.empty() || *end != '\0' || v <= 0 || v > 1 << 20)
    usage(flag + " expects a positive integer, got '" + text + "'");
  return static_cast<int>(v);
}

Options parseOptions(int argc, char **argv) {
  Options o;
  ArgWalker args(argc, argv, [](const std::string &e) { usage(e); });
  while (!args.done()) {
    const std::string arg = args.next();
    if (arg == "--channels") {
      o.channels = parsePositive(arg, args.value());
    } else if (arg == "--size") {
      o.size = parsePositive(arg, args.value());
    } else if (arg == "--batch") {
      o.batch = parsePositive(arg, args.value());
    } else if (arg == "--m") {
      o.m = parsePositive(arg, args.value());
    } else if (arg == "--n") {
      o.n = parsePositive(arg, args.value());
    } else if (arg == "--repeats") {
      o.repeats = parsePositive(arg, args.value());
    } else if (arg == "--densities") {
      const std::string text = args.value();
      o.densities.clear();
      for (const std::string &item : splitCommas(text)) {
        char *end = nullptr;
        const double d = std::strtod(item.c_str(), &end);
        if (item.empty() || *end != '\0' || d <= 0.0 || d > 1.0)
          usage("--densities expects numbers in (0, 1], got '" + text + "'");
        o.densities.push_back(d);
      }
      std::sort(o.densities.begin(), o.densities.end());
    } else if (arg == "--passes") {
      const std::string text = args.value();
      o.passes = splitCommas(text);
      for (const std::string &p : o.passes)
        if (p != "fwd" && p != "bwd-data" && p != "bwd-weight")
          usage("--passes: unknown pass '" + p + "' (known: fwd, bwd-data, bwd-weight)");
    } else if (arg == "--markdown") {
      o.markdown = args.value();
    } else if (arg == "--json") {
      o.json = args.value();
    } else if (arg == "--help" || arg == "-h") {
      usage("");
    } else {
      usage("unknown option " + arg);
    }
  }
  if (o.m <= o.n)
    usage("--m (" + std::to_string(o.m) + ") must be larger than --n (" + std::to_string(o.n) +
          ")");
  return o;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t k = v.size() / 2;
  return v.size() % 2 ? v[k] : 0.5 * (v[k - 1] + v[k]);
}

enum Form { Dense = 0, Table = 1, Masked = 2 };
const char *kFormNames[] = {"dense", "table", "masked"};

/// The layer at one density in the three forms, with shared data.
struct DensityCase {
  double density = 1.0;
  std::vector<BranchMask> masks;
  std::vector<float> weights; // all branches, dead taps zeroed
  std::unique_ptr<LkConvExecutor> exec[3];
  TapTable table[3];
};

KernelSpec layerSpec(const Options &o, bool sparse, bool maskedWalk) {
  KernelSpec spec;
  spec.channels = o.channels;
  spec.height = o.size;
  spec.width = o.size;
  spec.branches = {Branch::same(o.m, o.n, !sparse), Branch::same(o.n, o.m, !sparse)};
  spec.schedule = slak::codegen::defaultSchedule(spec);
  spec.schedule.maskedWalk = maskedWalk;
  if (const std::string error = spec.validate(); !error.empty())
    throw std::invalid_argument("slak-density-bench: layer: " + error);
  return spec;
}

std::string fmt(const char *format, double value) {
  char buffer[64];
  std::snprintf(buffer, sizeof buffer, format, value);
  return buffer;
}

/// Density where table/dense crosses 1 (linear between the measured points),
/// or a note when it does not cross within the sweep.
std::string crossover(const std::vector<double> &densities, const std::vector<double> &ratio) {
  for (size_t k = 1; k < ratio.size(); ++k)
    if (ratio[k - 1] < 1.0 && ratio[k] >= 1.0) {
      const double t = (1.0 - ratio[k - 1]) / (ratio[k] - ratio[k - 1]);
      return fmt("%.2f", densities[k - 1] + t * (densities[k] - densities[k - 1]));
    }
  if (!ratio.empty() && ratio.front() >= 1.0)
    return "below " + fmt("%.2f", densities.front());
  return "above " + fmt("%.2f", densities.back());
}

} // namespace

int main(int argc, char **argv) {
  const Options opt = parseOptions(argc, argv);
  std::shared_ptr<Context> context;
  try {
    context = Context::create();
  } catch (const std::exception &e) {
    std::cerr << "slak-density-bench: no OpenCL device: " << e.what()
              << "\n  (install PoCL: apt-get install pocl-opencl-icd)\n";
    return 1;
  }
  const KernelSpec specs[3] = {layerSpec(opt, false, false), layerSpec(opt, true, false),
                               layerSpec(opt, true, true)};
  std::vector<EmittedKernels> emitted;
  for (const KernelSpec &s : specs)
    emitted.push_back(slak::codegen::emitKernels(s));
  std::cerr << "slak-density-bench: " << context->deviceName() << ", building kernels...\n";
  const auto program = slak::runtime::opencl::buildProgram(context, emitted);

  const int64_t N = opt.batch, C = opt.channels, H = opt.size, W = opt.size;
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> uniform(-1.0f, 1.0f);
  std::vector<float> x(N * C * H * W), dy(N * C * H * W);
  for (float &v : x)
    v = uniform(rng);
  for (float &v : dy)
    v = uniform(rng);

  std::vector<DensityCase> cases(opt.densities.size());
  for (size_t d = 0; d < cases.size(); ++d) {
    DensityCase &dc = cases[d];
    dc.density = opt.densities[d];
    for (const Branch &b : specs[0].branches) {
      const int64_t window = C * b.windowSize();
      BranchMask mask(window);
      // Exactly round(density * window) live taps, as the trainer's masks.
      std::vector<int64_t> order(window);
      for (int64_t k = 0; k < window; ++k)
        order[k] = k;
      std::shuffle(order.begin(), order.end(), rng);
      const auto live = static_cast<int64_t>(std::llround(dc.density * window));
      for (int64_t k = 0; k < live; ++k)
        mask[order[k]] = 1;
      for (int64_t k = 0; k < window; ++k)
        dc.weights.push_back(mask[k] ? uniform(rng) : 0.0f);
      dc.masks.push_back(std::move(mask));
    }
    for (int f = 0; f < 3; ++f) {
      dc.exec[f] = std::make_unique<LkConvExecutor>(program, emitted[f]);
      dc.table[f] = slak::codegen::buildTapTable(
          specs[f], f == Dense ? std::vector<BranchMask>(specs[f].branches.size()) : dc.masks);
    }
  }

  struct Result {
    double density;
    std::string pass;
    double ms[3];
    double maxDiff;
  };
  std::vector<Result> results;
  const std::vector<float> noBias;
  for (const std::string &pass : opt.passes) {
    for (DensityCase &dc : cases) {
      std::cerr << "slak-density-bench: " << pass << " at density " << dc.density << "\n";
      std::vector<float> out[3];
      auto run = [&](int f) {
        LkConvExecutor &e = *dc.exec[f];
        if (pass == "fwd")
          out[f] = e.forward(N, H, W, x, dc.weights, dc.table[f], noBias);
        else if (pass == "bwd-data")
          out[f] = e.backwardData(N, H, W, dy, dc.weights, dc.table[f]);
        else
          out[f] = e.backwardWeight(N, H, W, x, dy, dc.table[f]);
      };
      for (int f = 0; f < 3; ++f)
        run(f); // warm-up (and the kernels' first-launch JIT in PoCL)
      std::vector<double> ms[3];
      for (int r = 0; r < opt.repeats; ++r)
        for (int f = 0; f < 3; ++f) {
          std::this_thread::sleep_for(std::chrono::milliseconds(5));
          const auto start = Clock::now();
          run(f);
          ms[f].push_back(std::chrono::duration<double, std::milli>(Clock::now() - start).count());
        }
      // The three forms compute the same function; backward-weight of the
      // dense form also fills dead taps, so compare live taps only there.
      double maxDiff = 0, scale = 0;
      for (size_t k = 0; k < out[0].size(); ++k) {
        bool live = true;
        if (pass == "bwd-weight") {
          size_t offset = k;
          for (const BranchMask &mask : dc.masks) {
            if (offset < mask.size()) {
              live = mask[offset] != 0;
              break;
            }
            offset -= mask.size();
          }
        }
        if (!live)
          continue;
        scale = std::max(scale, static_cast<double>(std::abs(out[0][k])));
        for (int f = 1; f < 3; ++f)
          maxDiff = std::max(maxDiff, static_cast<double>(std::abs(out[f][k] - out[0][k])));
      }
      results.push_back({dc.density,
                         pass,
                         {median(ms[0]), median(ms[1]), median(ms[2])},
                         maxDiff / std::max(scale, 1e-30)});
    }
  }

  std::ostringstream table;
  table << "Layer " << opt.m << "x" << opt.n << " + " << opt.n << "x" << opt.m << ", C = " << C
        << ", " << H << "x" << W << ", batch " << N << ", fp32, OpenCL on " << context->deviceName()
        << "; median ms of " << opt.repeats
        << " runs (host copies included, same for every form).\n\n";
  table << "| pass | density | dense ms | table ms | masked ms | table/dense | masked/dense | "
           "fastest | max rel diff |\n|---|---|---|---|---|---|---|---|---|\n";
  for (const Result &r : results) {
    const int best = static_cast<int>(std::min_element(r.ms, r.ms + 3) - r.ms);
    char line[256];
    std::snprintf(line, sizeof line,
                  "| %s | %.2f | %.2f | %.2f | %.2f | %.2f | %.2f | %s | %.1e |\n", r.pass.c_str(),
                  r.density, r.ms[0], r.ms[1], r.ms[2], r.ms[1] / r.ms[0], r.ms[2] / r.ms[0],
                  kFormNames[best], r.maxDiff);
    table << line;
  }
  table << "\nTable walk stops paying (table/dense crosses 1) at density:";
  for (const std::string &pass : opt.passes) {
    std::vector<double> ds, ratio;
    for (const Result &r : results)
      if (r.pass == pass) {
        ds.push_back(r.density);
        ratio.push_back(r.ms[1] / r.ms[0]);
      }
    table << " " << pass << " " << crossover(ds, ratio) << ";";
  }
  table << "\n";
  std::cout << table.str();

  bool failed = false;
  for (const Result &r : results)
    if (r.maxDiff > 1e-4) {
      std::cerr << "slak-density-bench: the forms disagree on " << r.pass << " at density "
                << r.density << " (max rel diff " << r.maxDiff << ")\n";
      failed = true;
    }
  auto writeAtomically = [](const std::string &path, const std::string &text) {
    const std::string tmp = path + ".tmp";
    std::ofstream(tmp) << text;
    if (std::rename(tmp.c_str(), path.c_str()) != 0) {
      std::cerr << "slak-density-bench: cannot write " << path << "\n";
      return false;
    }
    return true;
  };
  if (!opt.markdown.empty() && !writeAtomically(opt.markdown, table.str()))
    return 1;
  if (!opt.json.empty()) {
    std::ostringstream js;
    js << "{\n  \"device\": \"" << context->deviceName() << "\",\n  \"channels\": " << C
       << ", \"size\": " << H << ", \"batch\": " << N << ", \"m\": " << opt.m
       << ", \"n\": " << opt.n << ", \"repeats\": " << opt.repeats << ",\n  \"rows\": [\n";
    for (size_t k = 0; k < results.size(); ++k) {
      const Result &r = results[k];
      js << "    {\"pass\": \"" << r.pass << "\", \"density\": " << r.density
         << ", \"dense_ms\": " << r.ms[0] << ", \"table_ms\": " << r.ms[1]
         << ", \"masked_ms\": " << r.ms[2] << ", \"max_rel_diff\": " << r.maxDiff << "}"
         << (k + 1 < results.size() ? "," : "") << "\n";
    }
    js << "  ]\n}\n";
    if (!writeAtomically(opt.json, js.str()))
      return 1;
  }
  return failed ? 1 : 0;
}

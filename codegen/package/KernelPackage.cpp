#include "codegen/package/KernelPackage.h"

#include <nlohmann/json.hpp>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <unistd.h>

namespace slak::codegen {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

/// Writes `bytes` to `path` through a temporary file in the same folder.
void writeAtomically(const fs::path &path, const std::string &bytes) {
  const fs::path tmp = path.string() + ".tmp." + std::to_string(::getpid());
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out)
      throw std::runtime_error("cannot write " + tmp.string() + ": " + std::strerror(errno));
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    out.flush();
    if (!out)
      throw std::runtime_error("cannot write " + tmp.string() + ": " + std::strerror(errno));
  }
  std::error_code ec;
  fs::rename(tmp, path, ec);
  if (ec) {
    fs::remove(tmp);
    throw std::runtime_error("cannot rename " + tmp.string() + " to " + path.string() + ": " +
                             ec.message());
  }
}

/// data.bin: appends little-endian arrays and remembers where they went.
class DataFile {
public:
  template <typename T> json append(const std::vector<T> &values) {
    static_assert(sizeof(T) == 4, "data.bin holds 32-bit elements");
    const size_t offset = bytes.size();
    bytes.resize(offset + values.size() * 4);
    std::memcpy(bytes.data() + offset, values.data(), values.size() * 4);
    return json{{"offset", offset}, {"count", values.size()}};
  }
  std::string bytes;
};

json scheduleJson(const Schedule &s, const std::string &origin) {
  return json{{"tile", {s.tileH, s.tileW}},
              {"block", {s.blockH, s.blockW}},
              {"stage_input", s.stageInput},
              {"stage_taps", s.stageTaps},
              {"weight_split", s.weightSplit},
              {"weight_threads", s.weightThreads},
              {"origin", origin}};
}

json specJson(const KernelSpec &spec) {
  json branches = json::array();
  for (const Branch &b : spec.branches)
    branches.push_back(json{{"kernel", {b.kernelH, b.kernelW}},
                            {"padding", {b.padH, b.padW}},
                            {"form", b.dense ? "dense" : "table"}});
  return json{{"channels", spec.channels},
              {"height", spec.height},
              {"width", spec.width},
              {"element_type", elementTypeName(spec.elementType)},
              {"per_branch_outputs", spec.perBranchOutputs},
              {"has_bias", spec.hasBias},
              {"dense_weight_grad", spec.denseWeightGrad},
              {"branches", branches}};
}

/// Grid size as blocks = base + per_batch * N (exact: the emitter's grids
/// are affine in the batch).
json launchJson(const EmittedKernels &k, KernelKind kind) {
  const KernelSpec &spec = k.spec;
  json launch{{"threads", k.threads[static_cast<int>(kind)]},
              {"shared_bytes", k.sharedBytes[static_cast<int>(kind)]}};
  if (spec.height > 0 && spec.width > 0) {
    const int64_t one = k.geometry(kind, 1, spec.height, spec.width).blocks;
    const int64_t two = k.geometry(kind, 2, spec.height, spec.width).blocks;
    launch["blocks"] = json{{"base", 2 * one - two}, {"per_batch", two - one}};
  }
  return launch;
}

} // namespace

void writeKernelPackage(const std::string &dir, const std::vector<PackagedOp> &ops,
                        const std::string &generator) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec)
    throw std::runtime_error("cannot create the package folder " + dir + ": " + ec.message());

  DataFile data;
  json manifest{{"format", "slak-kernel-package"},
                {"version", kKernelPackageVersion},
                {"generator", generator},
                {"files", {{"cuda", "kernels.cu"}, {"opencl", "kernels.cl"}, {"data", "data.bin"}}},
                {"ops", json::array()}};
  std::vector<EmittedKernels> layers;
  for (const PackagedOp &op : ops) {
    const EmittedKernels &k = op.kernels;
    json entry{{"name", op.name},
               {"signature", k.spec.signature()},
               {"spec", specJson(k.spec)},
               {"schedule", scheduleJson(k.spec.schedule, op.scheduleOrigin)}};
    json entries, launch;
    for (int i = 0; i < kNumKernelKinds; ++i) {
      const auto kind = static_cast<KernelKind>(i);
      entries[kernelKindName(kind)] = k.name(kind);
      launch[kernelKindName(kind)] = launchJson(k, kind);
    }
    entry["entry_points"] = entries;
    entry["launch"] = launch;
    if (op.table)
      entry["tap_table"] =
          json{{"offsets", data.append(op.table->offsets)}, {"taps", data.append(op.table->taps)}};
    else
      entry["tap_table"] = nullptr; // built at run time from live masks
    json weights = json::array();
    for (const std::vector<float> &w : op.weights)
      weights.push_back(w.empty() ? json(nullptr) : data.append(w));
    entry["weights"] = weights;
    entry["bias"] = op.bias.empty() ? json(nullptr) : data.append(op.bias);
    manifest["ops"].push_back(entry);
    layers.push_back(k);
  }

  const fs::path root(dir);
  writeAtomically(root / "kernels.cu", assembleSource(Backend::Cuda, layers));
  writeAtomically(root / "kernels.cl", assembleSource(Backend::OpenCL, layers));
  writeAtomically(root / "data.bin", data.bytes);
  // The manifest last: a package is complete once its manifest is there.
  writeAtomically(root / "manifest.json", manifest.dump(2) + "\n");
}

} // namespace slak::codegen

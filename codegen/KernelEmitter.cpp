#include "codegen/KernelEmitter.h"

#include <cstdio>
#include <set>
#include <stdexcept>

#include "codegen/ConvPassEmitter.h"
#include "codegen/WeightGradEmitter.h"

namespace slak::codegen {

std::string kernelBaseName(const KernelSpec &spec) {
  uint64_t hash = 1469598103934665603ULL; // FNV-1a 64
  for (unsigned char ch : spec.signature()) {
    hash ^= ch;
    hash *= 1099511628211ULL;
  }
  char hex[17];
  std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(hash));
  return std::string(spec.channelsLast() ? "slak_lk_nhwc_" : "slak_lk_") + hex;
}

EmittedKernels emitKernels(const KernelSpec &spec) {
  if (std::string err = spec.validate(); !err.empty())
    throw std::invalid_argument("emitKernels: invalid spec: " + err);
  const KernelPlan plan = planKernels(spec);
  if (std::string err = plan.sharedMemoryError(); !err.empty())
    throw std::invalid_argument("emitKernels: " + err);
  EmittedKernels out;
  out.spec = spec;
  out.threads = plan.threads;
  out.sharedBytes = plan.sharedBytes;
  const std::string base = kernelBaseName(spec);
  for (int k = 0; k < kNumKernelKinds; ++k)
    out.names[k] = entryPointName(base, static_cast<KernelKind>(k));
  Code code;
  code("/* ", spec.signature(), " */");
  emitConvPass(plan, KernelKind::Forward, code);
  emitConvPass(plan, KernelKind::BackwardData, code);
  emitWeightGrad(plan, code);
  out.body = code.str();
  return out;
}

LaunchGeometry EmittedKernels::geometry(KernelKind kind, int64_t n, int64_t h, int64_t w) const {
  const int k = static_cast<int>(kind);
  return {launchBlocks(spec, kind, n, h, w, "EmittedKernels::geometry"), threads[k],
          sharedBytes[k]};
}

std::string assembleSource(GpuLanguage language, const std::vector<EmittedKernels> &layers) {
  std::string source = emitPrelude(language);
  std::set<std::string> seen;
  for (const EmittedKernels &layer : layers)
    if (seen.insert(layer.names[0]).second)
      source += "\n" + layer.body;
  return source;
}

} // namespace slak::codegen

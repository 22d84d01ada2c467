#include "codegen/BufferLayout.h"

namespace slak::codegen {

int64_t weightOffset(const KernelSpec &spec, int branch) {
  int64_t offset = 0;
  for (int b = 0; b < branch; ++b)
    offset += spec.channels * spec.branches[b].windowSize();
  return offset;
}

int64_t weightCount(const KernelSpec &spec) {
  return weightOffset(spec, static_cast<int>(spec.branches.size()));
}

int64_t outputPlaneCount(const KernelSpec &spec, int64_t n, int64_t h, int64_t w) {
  return n * spec.channels * spec.outHeight(h) * spec.outWidth(w);
}

int64_t outputCount(const KernelSpec &spec, int64_t n, int64_t h, int64_t w) {
  const int64_t copies = spec.perBranchOutputs ? static_cast<int64_t>(spec.branches.size()) : 1;
  return copies * outputPlaneCount(spec, n, h, w);
}

int64_t inputCount(const KernelSpec &spec, int64_t n, int64_t h, int64_t w) {
  return n * spec.channels * h * w;
}

ImageStrides imageStrides(const KernelSpec &spec, int64_t h, int64_t w) {
  const int64_t C = spec.channels;
  if (spec.channelsLast())
    return {C * h * w, 1, w * C, C};
  return {C * h * w, h * w, w, 1};
}

int64_t weightWorkspaceCount(const KernelSpec &spec) {
  return static_cast<int64_t>(spec.schedule.weightSplit) * weightCount(spec);
}

} // namespace slak::codegen

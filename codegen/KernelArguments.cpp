#include "codegen/KernelArguments.h"

#include "codegen/EnumNames.h"

#include <algorithm>
#include <limits>
#include <stdexcept>

#include "codegen/BufferLayout.h"

namespace slak::codegen {
namespace {

using Type = KernelParameter::Type;

KernelParameter buffer(const char *name, Type type, KernelBuffer which) {
  KernelParameter p;
  p.name = name;
  p.type = type;
  p.buffer = which;
  return p;
}

KernelParameter scalar(const char *name, KernelScalar which) {
  KernelParameter p;
  p.name = name;
  p.type = Type::Int;
  p.scalar = which;
  return p;
}

std::vector<KernelParameter> parametersOf(KernelKind kind) {
  const KernelParameter offsets = buffer("tapOffsets", Type::ConstInts, KernelBuffer::TapOffsets);
  const KernelParameter taps = buffer("taps", Type::ConstInts, KernelBuffer::Taps);
  const KernelParameter sizes[] = {scalar("batch", KernelScalar::Batch),
                                   scalar("height", KernelScalar::Height),
                                   scalar("width", KernelScalar::Width)};
  std::vector<KernelParameter> params;
  switch (kind) {
  case KernelKind::Forward:
    params = {buffer("x", Type::ConstElements, KernelBuffer::X),
              buffer("wt", Type::ConstElements, KernelBuffer::Weights),
              offsets,
              taps,
              buffer("bias", Type::ConstElements, KernelBuffer::Bias),
              buffer("y", Type::Elements, KernelBuffer::Y)};
    break;
  case KernelKind::BackwardData:
    params = {buffer("dy", Type::ConstElements, KernelBuffer::Dy),
              buffer("wt", Type::ConstElements, KernelBuffer::Weights), offsets, taps,
              buffer("dx", Type::Elements, KernelBuffer::Dx)};
    break;
  case KernelKind::BackwardWeight:
    params = {buffer("x", Type::ConstElements, KernelBuffer::X),
              buffer("dy", Type::ConstElements, KernelBuffer::Dy), offsets, taps,
              buffer("workspace", Type::Floats, KernelBuffer::Workspace)};
    break;
  case KernelKind::BackwardWeightReduce:
    return {buffer("workspace", Type::ConstFloats, KernelBuffer::Workspace),
            buffer("dw", Type::Elements, KernelBuffer::Dw)};
  }
  params.insert(params.end(), std::begin(sizes), std::end(sizes));
  return params;
}

/// Bytes buffer `which` must hold for a batch-n input of h x w.
int64_t bytesOf(const KernelSpec &spec, KernelBuffer which, int64_t n, int64_t h, int64_t w) {
  const int64_t element = elementTypeBytes(spec.elementType);
  switch (which) {
  case KernelBuffer::X:
  case KernelBuffer::Dx:
    return inputCount(spec, n, h, w) * element;
  case KernelBuffer::Y:
  case KernelBuffer::Dy:
    return outputCount(spec, n, h, w) * element;
  case KernelBuffer::Weights:
  case KernelBuffer::Dw:
    return weightCount(spec) * element;
  case KernelBuffer::Bias:
    return spec.hasBias ? spec.channels * element : 0;
  case KernelBuffer::TapOffsets:
    return (static_cast<int64_t>(spec.branches.size()) * spec.channels + 1) * 4;
  case KernelBuffer::Taps:
    return 4;
  case KernelBuffer::Workspace:
    return weightWorkspaceCount(spec) * 4;
  }
  return 0;
}

int32_t sizeArgument(const char *what, int64_t value) {
  if (value > std::numeric_limits<int32_t>::max())
    throw std::invalid_argument(std::string("bindKernel: ") + what + " " + std::to_string(value) +
                                " exceeds the kernels' 32-bit sizes");
  return static_cast<int32_t>(value);
}

} // namespace

namespace {
constexpr Named<KernelBuffer> kBufferNames[] = {{"x", KernelBuffer::X},
                                                {"weights", KernelBuffer::Weights},
                                                {"tap offsets", KernelBuffer::TapOffsets},
                                                {"taps", KernelBuffer::Taps},
                                                {"bias", KernelBuffer::Bias},
                                                {"y", KernelBuffer::Y},
                                                {"dy", KernelBuffer::Dy},
                                                {"dx", KernelBuffer::Dx},
                                                {"workspace", KernelBuffer::Workspace},
                                                {"dw", KernelBuffer::Dw}};
} // namespace

const char *kernelBufferName(KernelBuffer buffer) { return nameOf(kBufferNames, buffer); }

const std::vector<KernelParameter> &kernelParameters(KernelKind kind) {
  static const std::array<std::vector<KernelParameter>, kNumKernelKinds> all = {
      parametersOf(KernelKind::Forward), parametersOf(KernelKind::BackwardData),
      parametersOf(KernelKind::BackwardWeight), parametersOf(KernelKind::BackwardWeightReduce)};
  return all[static_cast<int>(kind)];
}

KernelLaunch bindKernel(const EmittedKernels &kernels, KernelKind kind, int64_t n, int64_t h,
                        int64_t w) {
  KernelLaunch launch;
  launch.kind = kind;
  launch.name = kernels.name(kind);
  launch.geometry = kernels.geometry(kind, n, h, w);
  for (const KernelParameter &p : kernelParameters(kind)) {
    BoundArgument a;
    a.parameter = p;
    if (p.isBuffer()) {
      a.bytes = bytesOf(kernels.spec, p.buffer, n, h, w);
    } else {
      a.bytes = 4;
      a.value = p.scalar == KernelScalar::Batch    ? sizeArgument("batch", n)
                : p.scalar == KernelScalar::Height ? sizeArgument("height", h)
                                                   : sizeArgument("width", w);
    }
    launch.arguments.push_back(a);
  }
  return launch;
}

std::vector<KernelLaunch> bindPass(const EmittedKernels &kernels, KernelKind kind, int64_t n,
                                   int64_t h, int64_t w) {
  if (kind == KernelKind::Forward || kind == KernelKind::BackwardData)
    return {bindKernel(kernels, kind, n, h, w)};
  return {bindKernel(kernels, KernelKind::BackwardWeight, n, h, w),
          bindKernel(kernels, KernelKind::BackwardWeightReduce, n, h, w)};
}

KernelBuffers<int64_t> bufferBytes(const std::vector<KernelLaunch> &launches) {
  KernelBuffers<int64_t> bytes{};
  for (const KernelLaunch &launch : launches)
    for (const BoundArgument &a : launch.arguments)
      if (a.parameter.isBuffer()) {
        int64_t &b = bytes[static_cast<int>(a.parameter.buffer)];
        b = std::max(b, a.bytes);
      }
  return bytes;
}

} // namespace slak::codegen

// CpuTensors: f32 views of the tensors the CPU backends (Halide and the
// reference oracle) compute on. Both compute in f32: f16/bf16 tensors are
// widened on the way in and rounded once on the way out, like the GPU
// kernels' stores.
#pragma once

#include <ATen/ATen.h>

namespace slak::runtime::cpu {

/// `t` as a contiguous f32 CPU tensor (itself when it already is one).
inline at::Tensor asFloat(const at::Tensor &t) { return t.to(at::kFloat).contiguous(); }

/// A f32 tensor to compute `out` into: `out` itself when it is f32.
inline at::Tensor floatTarget(const at::Tensor &out) {
  return out.scalar_type() == at::kFloat ? out
                                         : at::empty(out.sizes(), out.options().dtype(at::kFloat));
}

/// Copies (and rounds) what was computed into `out` unless it was computed
/// there.
inline void finish(at::Tensor &out, const at::Tensor &computed) {
  if (!computed.is_same(out))
    out.copy_(computed);
}

} // namespace slak::runtime::cpu
